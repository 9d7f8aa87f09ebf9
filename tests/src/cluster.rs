//! The HA cluster `make cluster-up` starts (host/cluster), driven through
//! compose, the `docker` command line and `lb`'s runtime API: what
//! `make test-cluster` and `make bench-cluster` do to it. Reaches the
//! containers only through ports published on 127.0.0.1 and `docker exec`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The compose command of the cluster's project and profile, as the
/// Makefile runs it (`CLUSTER_COMPOSE`), and the project's name.
const COMPOSE_VARIABLE: &str = "CLUSTER_COMPOSE";
const PROJECT: &str = "inlet-cluster";

/// The cluster's services, as `make cluster-up` starts them: `lb`,
pub const LB_SERVICE: &str = "lb";
/// the Inlet hosts (also `lb`'s names for them, haproxy.cfg),
pub const HOST_SERVICES: [&str; 3] = ["inlet1", "inlet2", "inlet3"];
/// the database nodes (also Patroni's member names),
pub const NODE_SERVICES: [&str; 3] = ["pg1", "pg2", "pg3"];
/// and the broker the hosts forward to.
pub const NATS_SERVICE: &str = "nats";

/// Every service of the cluster.
pub fn services() -> impl Iterator<Item = &'static str> {
    std::iter::once(LB_SERVICE)
        .chain(HOST_SERVICES)
        .chain([NATS_SERVICE])
        .chain(NODE_SERVICES)
}

/// `lb` as clients reach it.
pub const LB: &str = "http://127.0.0.1:8000";

/// The loopback bases at which inlet1..3 are published, one each.
pub const HOSTS: [&str; 3] = [
    "http://127.0.0.1:8001",
    "http://127.0.0.1:8002",
    "http://127.0.0.1:8003",
];

/// The broker as clients reach it.
pub const NATS: &str = "127.0.0.1:4222";
/// The stream the hosts forward to, and its subject (`FORWARD_URL` in
/// docker-compose.yml).
pub const STREAM: &str = "INLET";
const SUBJECT: &str = "inlet.messages";

/// Binds the stream forwarding publishes to (as an operator does once; a
/// stream already bound stays as it is), waiting up to `patience` for the
/// broker to answer.
pub fn bind_stream(patience: Duration) -> anyhow::Result<crate::nats::Streams> {
    let streams = crate::nats::Streams::at(NATS);
    let deadline = Instant::now() + patience;
    loop {
        match streams.bind(STREAM, SUBJECT, Duration::from_secs(120)) {
            Ok(()) => return Ok(streams),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// `lb`'s runtime API socket (haproxy.cfg) and its backend of Inlet hosts.
const LB_SOCKET: &str = "/run/haproxy/admin.sock";
const LB_BACKEND: &str = "inlet";

/// The secrets `make cluster-up` keeps for the cluster (host/cluster/secrets.sh).
pub const SECRETS: [&str; 7] = [
    "webhook_secret",
    "api_key",
    "inlet_db_password",
    "postgres_password",
    "replication_password",
    "rewind_password",
    "patroni_api_password",
];

/// The secret `name` (one of `SECRETS`), as its file holds it.
pub fn secret(name: &str) -> anyhow::Result<String> {
    let file = crate::workspace_root().join("target/cluster/secrets").join(name);
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The `X-Signature` of `body` under the cluster's webhook secret.
pub fn sign(body: &str) -> String {
    static KEY: std::sync::OnceLock<inlet_signature::SigningKey> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let secret = secret("webhook_secret").expect("the cluster's webhook secret: run `make cluster-up`");
        inlet_signature::SigningKey::new(secret)
    });
    key.sign(body.as_bytes())
}

/// Inlet's database on the leader, as `lb` publishes it on the loopback,
/// for `role` with `password`.
pub fn database_url_with(role: &str, password: &str) -> String {
    format!("postgres://{role}:{password}@127.0.0.1:15432/inlet")
}

/// Inlet's database on the leader, as Inlet's role with the password `make
/// cluster-up` generated.
pub fn database_url() -> anyhow::Result<String> {
    Ok(database_url_with("inlet", &secret("inlet_db_password")?))
}

/// How `lb` treats a host (HAProxy's administrative states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    /// In rotation (its health checks permitting).
    Ready,
    /// No new requests; those it has finish.
    Drain,
    /// Out of rotation at once.
    Maint,
}

impl HostState {
    fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

/// What `lb` makes of a host: its administrative state and its health
/// checks together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostStatus {
    /// In rotation.
    Up,
    /// Drained: its open requests finish, it gets no new ones.
    Drain,
    /// In maintenance.
    Maint,
    /// Anything else HAProxy reports (`DOWN`, `UP 1/2` while its checks change…).
    Other(String),
}

impl HostStatus {
    fn parse(status: &str) -> Self {
        match status {
            "UP" => Self::Up,
            "DRAIN" => Self::Drain,
            "MAINT" => Self::Maint,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A client whose requests give up after `deadline`; every status is a reply.
pub fn agent(deadline: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(deadline))
        .build()
        .into()
}

/// The running cluster, found by its compose project.
pub struct Cluster {
    compose: Vec<String>,
}

impl Cluster {
    /// The cluster `make test-cluster` or `make bench-cluster` started (its
    /// `CLUSTER_COMPOSE`).
    pub fn from_env() -> anyhow::Result<Self> {
        let compose = std::env::var(COMPOSE_VARIABLE).map_err(|_| {
            anyhow::anyhow!("{COMPOSE_VARIABLE} is not set: run `make test-cluster` or `make bench-cluster`")
        })?;
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
        command.args(options).current_dir(crate::workspace_root());
        run(command, args)
    }

    /// The container of `service`, running or not.
    fn container(&self, service: &str) -> anyhow::Result<String> {
        let id = self.compose(&["ps", "-a", "-q", service])?;
        let id = id.lines().next().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(!id.is_empty(), "no container for {service}");
        Ok(id)
    }

    /// Runs `args` inside `service`'s container; its stdout, or its stderr
    /// as the error.
    pub fn exec(&self, service: &str, args: &[&str]) -> anyhow::Result<String> {
        docker(&[&["exec", &self.container(service)?][..], args].concat())
    }

    /// `service`'s environment as Docker records it (what `docker inspect` shows anyone
    /// who may use Docker).
    pub fn environment(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &self.container(service)?])?;
        Ok(serde_json::from_str(&env)?)
    }

    /// The process id, on this machine, of `service`'s main process.
    pub fn pid(&self, service: &str) -> anyhow::Result<u32> {
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &self.container(service)?])?;
        Ok(pid.trim().parse()?)
    }

    /// `docker kill`: SIGKILL, no shutdown.
    pub fn kill(&self, service: &str) -> anyhow::Result<()> {
        docker(&["kill", &self.container(service)?]).map(drop)
    }

    /// `docker start` of a stopped or killed service.
    pub fn start(&self, service: &str) -> anyhow::Result<()> {
        docker(&["start", &self.container(service)?]).map(drop)
    }

    /// Cuts `service` off the network on which it reaches the database.
    pub fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        let network = format!("{PROJECT}_back");
        docker(&["network", "disconnect", &network, &self.container(service)?]).map(drop)
    }

    /// Joins `service` to the network `disconnect` cut it off.
    pub fn connect(&self, service: &str) -> anyhow::Result<()> {
        let network = format!("{PROJECT}_back");
        docker(&["network", "connect", &network, &self.container(service)?]).map(drop)
    }

    /// `service` stopped, removed and created again from its image, alone
    /// (how a host gets a new Inlet image).
    pub fn recreate(&self, service: &str) -> anyhow::Result<()> {
        self.compose(&["up", "-d", "--no-deps", "--force-recreate", service])
            .map(drop)
    }

    /// A planned switchover of the Patroni leader to `candidate`.
    pub fn switchover(&self, leader: &str, candidate: &str) -> anyhow::Result<()> {
        let switchover = ["switchover", "--leader", leader, "--candidate", candidate, "--force"];
        self.patronictl(leader, &switchover, Duration::from_secs(30)).map(drop)
    }

    /// `patronictl` with `args` on `node`, given up after `patience` (it
    /// can block while etcd or the synchronous standby is down); its output.
    fn patronictl(&self, node: &str, args: &[&str], patience: Duration) -> anyhow::Result<String> {
        let seconds = patience.as_secs().to_string();
        let patronictl = ["timeout", &seconds, "patronictl", "-c", "/etc/patroni/patroni.yml"];
        self.exec(node, &[&patronictl[..], args].concat())
    }

    /// Every container removed and created again from the same images
    /// (what `make cluster-down` and `make cluster-up` do, without building);
    /// the volumes stay.
    pub fn down_and_up(&self) -> anyhow::Result<()> {
        self.compose(&["down"])?;
        let up: Vec<&str> = ["up", "-d"].into_iter().chain(services()).collect();
        self.compose(&up).map(drop)
    }

    /// The members as Patroni lists them, asked of any live node.
    fn members(&self) -> anyhow::Result<Vec<Value>> {
        for node in NODE_SERVICES {
            let listed = self.patronictl(node, &["list", "-f", "json"], Duration::from_secs(5));
            if let Ok(listed) = listed {
                return Ok(serde_json::from_str(&listed)?);
            }
        }
        anyhow::bail!("no node answers")
    }

    /// The Patroni leader's member name (`pg1`…).
    pub fn database_leader(&self) -> anyhow::Result<String> {
        let roles = self.database_roles()?;
        let leader = roles.iter().find(|(_, role)| *role == "Leader");
        leader
            .map(|(member, _)| member.clone())
            .ok_or_else(|| anyhow::anyhow!("no leader among {roles:?}"))
    }

    /// Each member's role as Patroni names it (`Leader`, `Sync Standby`, `Replica`).
    pub fn database_roles(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let members = self.members()?;
        let field = |member: &Value, key: &str| member[key].as_str().unwrap_or_default().to_owned();
        Ok(members.iter().map(|m| (field(m, "Member"), field(m, "Role"))).collect())
    }

    /// Sends only the first `count` of inlet1..3 requests (the others are
    /// put in maintenance, running but out of `lb`'s rotation), and waits
    /// until `lb` has them up.
    pub fn serve_with(&self, count: usize, patience: Duration) -> anyhow::Result<()> {
        for (index, host) in HOST_SERVICES.iter().enumerate() {
            let (state, status) = if index < count {
                (HostState::Ready, HostStatus::Up)
            } else {
                (HostState::Maint, HostStatus::Maint)
            };
            self.set_host_state(host, state)?;
            self.wait_host_status(host, status, patience)?;
        }
        Ok(())
    }

    /// Sets how `lb` treats `host` (one of `HOST_SERVICES`).
    pub fn set_host_state(&self, host: &str, state: HostState) -> anyhow::Result<()> {
        let command = format!("set server {LB_BACKEND}/{host} state {}", state.name());
        // It answers nothing on success, and why not otherwise.
        let answer = self.lb_api(&command)?;
        anyhow::ensure!(answer.trim().is_empty(), "lb refused `{command}`: {}", answer.trim());
        Ok(())
    }

    /// Waits until `lb` reports `status` for `host`.
    pub fn wait_host_status(&self, host: &str, status: HostStatus, patience: Duration) -> anyhow::Result<()> {
        wait(patience, &format!("lb reporting {host} {status:?}"), || {
            self.host_status(host).is_ok_and(|now| now == status)
        })
    }

    /// `lb`'s view of `host` now (the status column of its `show stat`).
    fn host_status(&self, host: &str) -> anyhow::Result<HostStatus> {
        let csv = self.lb_api("show stat")?;
        let status_column = csv
            .lines()
            .next()
            .and_then(|header| header.trim_start_matches("# ").split(',').position(|c| c == "status"))
            .ok_or_else(|| anyhow::anyhow!("no status column in {csv}"))?;
        csv.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&LB_BACKEND) && fields.get(1) == Some(&host))
            .and_then(|fields| fields.get(status_column).map(|status| HostStatus::parse(status)))
            .ok_or_else(|| anyhow::anyhow!("lb lists no {host}"))
    }

    /// One command of `lb`'s runtime API; its answer.
    fn lb_api(&self, command: &str) -> anyhow::Result<String> {
        let talk = format!("echo \"$1\" | socat stdio {LB_SOCKET}");
        self.exec(LB_SERVICE, &["sh", "-c", &talk, "sh", command])
    }

    /// Waits until a node other than `old` leads.
    pub fn wait_new_leader(&self, old: &str, patience: Duration) -> anyhow::Result<()> {
        wait(patience, "a new leader", || {
            self.database_leader().is_ok_and(|leader| leader != old)
        })
    }

    /// Waits until `node` replicates again and some node is the
    /// synchronous standby.
    pub fn wait_replicating(&self, node: &str, patience: Duration) -> anyhow::Result<()> {
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
    pub fn wait_serving(&self, patience: Duration) -> anyhow::Result<()> {
        let agent = agent(Duration::from_secs(5));
        let ready = |base: &str| {
            let reply = agent.get(format!("{base}/health/ready")).call();
            reply.is_ok_and(|reply| reply.status() == 200)
        };
        wait(patience, "every host ready", || {
            ready(LB) && HOSTS.iter().all(|host| ready(host))
        })
    }

    /// Waits until every host is ready with the guest of digest `sha256`.
    pub fn wait_every_host_serving(&self, sha256: &str, patience: Duration) -> anyhow::Result<()> {
        let agent = agent(Duration::from_secs(5));
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
