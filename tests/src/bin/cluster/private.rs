//! The cluster keeps its secrets: no container's recorded environment holds
//! one, every host refuses reads without the operator's API key, the
//! database refuses the passwords it once shipped with, Patroni's
//! REST API refuses a change without its credentials, and etcd answers the
//! nodes alone. Each refusal is paired with the same call made rightly, so a
//! cluster that is merely down cannot pass.

use std::time::Duration;

use inlet_e2e::cluster::{self, Cluster, LB_SERVICE, NODE_SERVICES};
use serde_json::json;

/// The roles the leader lets in over the network (patroni.yml's `pg_hba`;
/// the superuser and `replicator` are refused ordinary connections from
/// anywhere but the node), each with the password it once defaulted to and
/// the file of the one it has now.
const ROLES: [(&str, &str, &str); 2] = [
    ("inlet", "inlet", "inlet_db_password"),
    ("rewinder", "rewinder", "rewind_password"),
];

/// POSTs to a Patroni REST API URL from inside a node and prints the status;
/// with a second argument, with the credentials of the node's secret file.
const PATRONI_POST: &str = r#"
import base64, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"", method="POST")
if len(sys.argv) > 2:
    password = open("/run/secrets/patroni_api_password").readline().strip()
    token = base64.b64encode(f"patroni:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
try:
    print(urllib.request.urlopen(request, timeout=5).status)
except urllib.error.HTTPError as error:
    print(error.code)
"#;

/// Connects to HOST PORT from inside a node; exits non-zero when refused.
const CONNECT: &str = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)";

pub(crate) fn secrets_stay_private(cluster: &Cluster) -> anyhow::Result<()> {
    no_environment_holds_a_secret(cluster)?;
    reads_need_the_operators_key()?;
    database_refuses_well_known_passwords()?;
    patroni_changes_need_credentials(cluster)?;
    etcd_answers_the_nodes_alone(cluster)?;
    println!(
        "{}",
        json!({"scenario": "secrets_stay_private", "secrets": cluster::SECRETS.len()})
    );
    Ok(())
}

fn no_environment_holds_a_secret(cluster: &Cluster) -> anyhow::Result<()> {
    let secrets = cluster::SECRETS
        .iter()
        .map(|name| cluster::secret(name).map(|value| (*name, value)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for service in cluster::services() {
        let environment = cluster.environment(service)?;
        for (name, value) in &secrets {
            anyhow::ensure!(!value.is_empty(), "the secret file {name} is empty");
            anyhow::ensure!(
                !environment.iter().any(|variable| variable.contains(value.as_str())),
                "{service}'s environment holds {name}"
            );
        }
    }
    Ok(())
}

/// Every host, and `lb`, refuses reads without a key and takes the
/// operator's admin key (the hosts share one key file).
fn reads_need_the_operators_key() -> anyhow::Result<()> {
    let key = cluster::secret("api_key")?;
    let agent = cluster::agent(Duration::from_secs(10));
    for base in std::iter::once(cluster::LB).chain(cluster::HOSTS) {
        let status = |authorization: Option<&str>| -> anyhow::Result<u16> {
            let mut request = agent.get(format!("{base}/stats"));
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            Ok(request.call()?.status().as_u16())
        };
        anyhow::ensure!(status(None)? == 401, "{base}/stats answered a read without a key");
        let admitted = status(Some(&format!("Bearer {key}")))?;
        anyhow::ensure!(admitted == 200, "{base}/stats refused the operator's key: {admitted}");
    }
    Ok(())
}

fn database_refuses_well_known_passwords() -> anyhow::Result<()> {
    let select = "SELECT 1";
    for (role, old, file) in ROLES {
        let refused = inlet_pgserver::rows(&cluster::database_url_with(role, old), select).is_err();
        anyhow::ensure!(refused, "the leader let `{role}` in with the password {old:?}");
        let now = cluster::database_url_with(role, &cluster::secret(file)?);
        inlet_pgserver::rows(&now, select).map_err(|e| anyhow::anyhow!("{role} with its password: {e}"))?;
    }
    Ok(())
}

fn patroni_changes_need_credentials(cluster: &Cluster) -> anyhow::Result<()> {
    let (from, url) = (NODE_SERVICES[0], format!("http://{}:8008/reload", NODE_SERVICES[1]));
    let without = cluster.exec(from, &["python3", "-c", PATRONI_POST, &url])?;
    anyhow::ensure!(without.trim() == "401", "POST /reload without credentials: {without}");
    let with = cluster.exec(from, &["python3", "-c", PATRONI_POST, &url, "credentials"])?;
    anyhow::ensure!(with.trim().starts_with('2'), "POST /reload with credentials: {with}");
    Ok(())
}

fn etcd_answers_the_nodes_alone(cluster: &Cluster) -> anyhow::Result<()> {
    let (node, peer) = (NODE_SERVICES[0], NODE_SERVICES[1]);
    let from_lb = |port: &str| {
        let target = format!("TCP:{peer}:{port},connect-timeout=3");
        cluster.exec(LB_SERVICE, &["socat", "-u", "OPEN:/dev/null", &target])
    };
    from_lb("8008").map_err(|e| e.context("lb reaching Patroni's REST API"))?;
    anyhow::ensure!(from_lb("2379").is_err(), "lb reached {peer}'s etcd");
    let peer_dcs = format!("{peer}-dcs");
    cluster
        .exec(node, &["python3", "-c", CONNECT, &peer_dcs, "2379"])
        .map_err(|e| e.context("a node reaching its peer's etcd"))?;
    Ok(())
}
