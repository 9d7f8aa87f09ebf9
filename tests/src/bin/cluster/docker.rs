//! The cluster's containers, through the `docker` command line.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The compose project of the cluster: docker-compose's default, the
/// project folder's name without its other characters.
pub(crate) fn default_project() -> String {
    let root = inlet_e2e::workspace_root();
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

pub(crate) struct Cluster {
    project: String,
}

impl Cluster {
    pub(crate) fn new(project: &str) -> Self {
        Self {
            project: project.to_owned(),
        }
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    fn database_network(&self) -> String {
        format!("{}_back", self.project)
    }

    pub(crate) fn kill(&self, service: &str) -> anyhow::Result<()> {
        docker(&["kill", &self.container(service)]).map(drop)
    }

    pub(crate) fn start(&self, service: &str) -> anyhow::Result<()> {
        docker(&["start", &self.container(service)]).map(drop)
    }

    /// Cuts `service` off the network on which it reaches the database.
    pub(crate) fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        docker(&[
            "network",
            "disconnect",
            &self.database_network(),
            &self.container(service),
        ])
        .map(drop)
    }

    pub(crate) fn connect(&self, service: &str) -> anyhow::Result<()> {
        docker(&["network", "connect", &self.database_network(), &self.container(service)]).map(drop)
    }

    /// The Patroni leader's member name (`pg1`…), as any live node tells it.
    pub(crate) fn database_leader(&self) -> anyhow::Result<String> {
        for node in ["pg1", "pg2", "pg3"] {
            let listed = docker(&[
                "exec",
                &self.container(node),
                "timeout",
                "5",
                "patronictl",
                "-c",
                "/etc/patroni/patroni.yml",
                "list",
                "-f",
                "json",
            ]);
            let Ok(listed) = listed else { continue };
            let members: Vec<Value> = serde_json::from_str(&listed)?;
            if let Some(leader) = members.iter().find(|m| m["Role"] == "Leader") {
                return Ok(leader["Member"].as_str().unwrap_or_default().to_owned());
            }
        }
        anyhow::bail!("no node names a leader")
    }

    /// Waits until a node other than `old` leads.
    pub(crate) fn wait_new_leader(&self, old: &str, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if self.database_leader().is_ok_and(|leader| leader != old) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        anyhow::bail!("no new leader within {patience:?}")
    }

    /// Waits until `lb` answers `/health/ready` with 200.
    pub(crate) fn wait_serving(&self, patience: Duration) -> anyhow::Result<()> {
        let agent = agent();
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let ready = agent.get("http://127.0.0.1:8000/health/ready").call();
            if ready.is_ok_and(|reply| reply.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        anyhow::bail!("the cluster did not serve within {patience:?}")
    }
}

/// The cluster's services, as `make cluster-up` starts them.
const SERVICES: [&str; 7] = ["lb", "inlet1", "inlet2", "inlet3", "pg1", "pg2", "pg3"];

impl Cluster {
    /// Every container removed and started again from the same images;
    /// the volumes stay.
    pub(crate) fn down_and_up(&self) -> anyhow::Result<()> {
        self.compose(&["down"])?;
        self.compose(&[&["up", "-d"][..], &SERVICES[..]].concat())
    }

    /// Runs compose on the cluster's profile and project, in the project's folder.
    fn compose(&self, args: &[&str]) -> anyhow::Result<()> {
        let v2 = Command::new("docker").args(["compose", "version"]).output();
        let mut command = if v2.is_ok_and(|out| out.status.success()) {
            let mut command = Command::new("docker");
            command.arg("compose");
            command
        } else {
            Command::new("docker-compose")
        };
        let status = command
            .args(["--project-name", &self.project, "--profile", "cluster"])
            .args(args)
            .current_dir(inlet_e2e::workspace_root())
            .status()?;
        anyhow::ensure!(status.success(), "compose {}: {status}", args.join(" "));
        Ok(())
    }
}

/// The host ports on which inlet1..3 are published, one each.
const HOST_PORTS: [u16; 3] = [8001, 8002, 8003];

impl Cluster {
    /// Waits until every host is ready with the guest of digest `sha256`.
    pub(crate) fn wait_every_host_serving(&self, sha256: &str, patience: Duration) -> anyhow::Result<()> {
        let agent = agent();
        let deadline = Instant::now() + patience;
        for port in HOST_PORTS {
            loop {
                let ready = agent.get(format!("http://127.0.0.1:{port}/health/ready")).call();
                let digest = ready
                    .ok()
                    .and_then(|mut reply| reply.body_mut().read_json::<Value>().ok())
                    .and_then(|body| body["guest"]["sha256"].as_str().map(str::to_owned));
                if digest.as_deref() == Some(sha256) {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the host on {port} serves {digest:?}, not {sha256}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// Runs `docker` with `args`; its stdout.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
