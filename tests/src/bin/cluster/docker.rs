//! The cluster's containers, through compose and the `docker` command line.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load;

/// The compose command of the cluster's project and profile, as the
/// Makefile runs it (`CLUSTER_COMPOSE`), and the project's name.
const COMPOSE_VARIABLE: &str = "CLUSTER_COMPOSE";
const PROJECT: &str = "inlet-cluster";

/// The cluster's services, as `make cluster-up` starts them.
const SERVICES: [&str; 7] = ["lb", "inlet1", "inlet2", "inlet3", "pg1", "pg2", "pg3"];

/// The loopback bases at which inlet1..3 are published, one each.
pub(crate) const HOSTS: [&str; 3] = [
    "http://127.0.0.1:8001",
    "http://127.0.0.1:8002",
    "http://127.0.0.1:8003",
];

pub(crate) struct Cluster {
    compose: Vec<String>,
}

impl Cluster {
    /// The cluster `make test-cluster` started (its `CLUSTER_COMPOSE`).
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let compose = std::env::var(COMPOSE_VARIABLE)
            .map_err(|_| anyhow::anyhow!("{COMPOSE_VARIABLE} is not set: run `make test-cluster`"))?;
        anyhow::ensure!(
            compose.contains(PROJECT),
            "{COMPOSE_VARIABLE} names another project: {compose}"
        );
        Ok(Self {
            compose: compose.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// Runs the compose command with `args` in the project's folder; its stdout.
    fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let (program, options) = self.compose.split_first().expect("a compose command");
        let mut command = Command::new(program);
        command.args(options).current_dir(inlet_e2e::workspace_root());
        run(command, args)
    }

    /// The container of `service`, running or not.
    fn container(&self, service: &str) -> anyhow::Result<String> {
        let id = self.compose(&["ps", "-a", "-q", service])?;
        let id = id.lines().next().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(!id.is_empty(), "no container for {service}");
        Ok(id)
    }

    pub(crate) fn kill(&self, service: &str) -> anyhow::Result<()> {
        docker(&["kill", &self.container(service)?]).map(drop)
    }

    pub(crate) fn start(&self, service: &str) -> anyhow::Result<()> {
        docker(&["start", &self.container(service)?]).map(drop)
    }

    /// Cuts `service` off the network on which it reaches the database.
    pub(crate) fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        let network = format!("{PROJECT}_back");
        docker(&["network", "disconnect", &network, &self.container(service)?]).map(drop)
    }

    pub(crate) fn connect(&self, service: &str) -> anyhow::Result<()> {
        let network = format!("{PROJECT}_back");
        docker(&["network", "connect", &network, &self.container(service)?]).map(drop)
    }

    /// Every container removed and created again from the same images
    /// (what `make cluster-down` and `make cluster-up` do, without building);
    /// the volumes stay.
    pub(crate) fn down_and_up(&self) -> anyhow::Result<()> {
        self.compose(&["down"])?;
        self.compose(&[&["up", "-d"][..], &SERVICES[..]].concat()).map(drop)
    }

    /// The members as Patroni lists them, asked of any live node.
    fn members(&self) -> anyhow::Result<Vec<Value>> {
        for node in ["pg1", "pg2", "pg3"] {
            let Ok(container) = self.container(node) else { continue };
            let listed = docker(&[
                "exec",
                &container,
                "timeout",
                "5",
                "patronictl",
                "-c",
                "/etc/patroni/patroni.yml",
                "list",
                "-f",
                "json",
            ]);
            if let Ok(listed) = listed {
                return Ok(serde_json::from_str(&listed)?);
            }
        }
        anyhow::bail!("no node answers")
    }

    /// The Patroni leader's member name (`pg1`…).
    pub(crate) fn database_leader(&self) -> anyhow::Result<String> {
        let members = self.members()?;
        let leader = members.iter().find(|m| m["Role"] == "Leader");
        leader
            .and_then(|m| m["Member"].as_str().map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("no leader among {members:?}"))
    }

    /// Waits until a node other than `old` leads.
    pub(crate) fn wait_new_leader(&self, old: &str, patience: Duration) -> anyhow::Result<()> {
        wait(patience, "a new leader", || {
            self.database_leader().is_ok_and(|leader| leader != old)
        })
    }

    /// Waits until `node` replicates again and some node is the
    /// synchronous standby.
    pub(crate) fn wait_replicating(&self, node: &str, patience: Duration) -> anyhow::Result<()> {
        wait(
            patience,
            &format!("{node} back as a replica beside a sync standby"),
            || {
                self.members().is_ok_and(|members| {
                    let back = members.iter().any(|m| {
                        m["Member"] == node
                            && m["Role"] != "Leader"
                            && matches!(m["State"].as_str(), Some("running" | "streaming"))
                    });
                    back && members.iter().any(|m| m["Role"] == "Sync Standby")
                })
            },
        )
    }

    /// Waits until `lb` and every host answer `/health/ready` with 200.
    pub(crate) fn wait_serving(&self, patience: Duration) -> anyhow::Result<()> {
        let agent = load::agent(Duration::from_secs(5));
        let ready = |base: &str| {
            let reply = agent.get(format!("{base}/health/ready")).call();
            reply.is_ok_and(|reply| reply.status() == 200)
        };
        wait(patience, "every host ready", || {
            ready(load::LB) && HOSTS.iter().all(|host| ready(host))
        })
    }

    /// Waits until every host is ready with the guest of digest `sha256`.
    pub(crate) fn wait_every_host_serving(&self, sha256: &str, patience: Duration) -> anyhow::Result<()> {
        let agent = load::agent(Duration::from_secs(5));
        let digest = |base: &str| {
            let reply = agent.get(format!("{base}/health/ready")).call().ok();
            reply
                .and_then(|mut reply| reply.body_mut().read_json::<Value>().ok())
                .and_then(|body| body["guest"]["sha256"].as_str().map(str::to_owned))
        };
        wait(patience, &format!("every host on guest {sha256}"), || {
            HOSTS.iter().all(|host| digest(host).as_deref() == Some(sha256))
        })
    }
}

/// Polls `done` until it holds, for at most `patience`.
fn wait(patience: Duration, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "no {what} within {patience:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// Runs `docker` with `args`; its stdout.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("docker"), args)
}

/// Runs `command` with `args`; its stdout, or its stderr as the error.
fn run(mut command: Command, args: &[&str]) -> anyhow::Result<String> {
    let output = command.args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{:?} {}: {}",
        command.get_program(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
