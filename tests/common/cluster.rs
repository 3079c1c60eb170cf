//! The 3-node test swarm of `tests/cluster/up.sh 3` (three engines in
//! network namespaces of their own: node1 and node2 managers, node3 a
//! worker), and a daemon on each node.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{Daemon, IMAGE, docker_at, repo, skip};

/// Where up.sh writes the cluster's `NODEk_*` variables.
const ENV_FILE: &str = "/var/lib/swarm-autoscaler-cluster/cluster.env";

/// One test at a time: they change the same cluster. (A tokio mutex: the
/// async tests hold the guard across awaits.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The running test cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    vars: HashMap<String, String>,
}

/// The lock of the cluster tests.
pub type Guard = tokio::sync::MutexGuard<'static, ()>;

impl Cluster {
    /// The running test cluster, or why there is none.
    pub fn find() -> Result<Cluster, String> {
        if !super::is_root() {
            return Err("not root (the test cluster's sockets are root's)".into());
        }
        let text = std::fs::read_to_string(ENV_FILE)
            .map_err(|e| format!("no test cluster ({ENV_FILE}: {e}); run tests/cluster/up.sh 3"))?;
        let vars: HashMap<String, String> =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let roles = (vars.get("NODE1_ROLE"), vars.get("NODE2_ROLE"), vars.get("NODE3_ROLE"));
        if roles != (Some(&"manager".to_string()), Some(&"manager".to_string()), Some(&"worker".to_string())) {
            return Err(format!("the test cluster is not `up.sh 3` (roles {roles:?})"));
        }
        Ok(Cluster { vars })
    }

    /// The cluster for one test, its lock taken (`None`: skipped, said why).
    pub fn take() -> Option<(Guard, Cluster)> {
        let guard = SERIAL.blocking_lock();
        Cluster::checked().map(|cluster| (guard, cluster))
    }

    /// [`Cluster::take`] from an async test.
    pub async fn take_async() -> Option<(Guard, Cluster)> {
        let guard = SERIAL.lock().await;
        Cluster::checked().map(|cluster| (guard, cluster))
    }

    fn checked() -> Option<Cluster> {
        match Cluster::find() {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    /// [`Cluster::take`], plus what the daemon tests need: the demo image
    /// and the shipped policies (`None`: skipped, said why).
    pub fn take_for_daemons() -> Option<(Guard, Cluster)> {
        let taken = Cluster::take()?;
        let image = docker_at(None, &["image", "inspect", IMAGE]);
        if image.is_none() {
            skip(&format!("no {IMAGE} in the main engine (examples/demo/build-image.sh)"));
            return None;
        }
        for policy in ["threshold", "proportional"] {
            let file = repo().join("policies").join(format!("{policy}.wasm"));
            if !file.is_file() {
                skip(&format!("{} is missing (policies/build.sh)", file.display()));
                return None;
            }
        }
        Some(taken)
    }

    /// A `NODEk_*` variable.
    pub fn var(&self, k: u32, name: &str) -> &str {
        &self.vars[&format!("NODE{k}_{name}")]
    }

    /// Node `k`'s address on the cluster's bridge.
    pub fn addr(&self, k: u32) -> &str {
        self.var(k, "ADDR")
    }

    /// Node `k`'s engine, as a `DOCKER_HOST`.
    pub fn docker_host(&self, k: u32) -> &str {
        self.var(k, "DOCKER_HOST")
    }

    /// The docker CLI against node `k`; `None` on failure.
    pub fn docker_on(&self, k: u32, args: &[&str]) -> Option<String> {
        docker_at(Some(self.docker_host(k)), args)
    }

    /// The docker CLI against node `k`; panics on failure.
    pub fn cli(&self, k: u32, args: &[&str]) -> String {
        self.docker_on(k, args).unwrap_or_else(|| panic!("docker {args:?} on node{k} failed"))
    }

    /// A daemon on node `k` with `extra` flags and the cluster `token`; not
    /// waited on.
    pub fn spawn_daemon(&self, k: u32, token: &Path, extra: &[&str]) -> Daemon {
        self.spawn_daemon_with(k, token, extra, Daemon::builder())
    }

    /// [`Cluster::spawn_daemon`] from `builder` (an audit log of its own...).
    pub fn spawn_daemon_with(&self, k: u32, token: &Path, extra: &[&str], builder: super::daemon::Builder) -> Daemon {
        builder
            .on_node(self, k)
            .args(&["--cluster-token-file"])
            .args(&[token])
            .args(&["--cluster-cert-dir"])
            .args(&[self.cert_dir(k)])
            .args(extra)
            .spawn()
    }

    /// Node `k`'s swarm certificates (its engine's data root is
    /// `$SACL_STATE/nK/data`): the daemons authenticate with them.
    pub fn cert_dir(&self, k: u32) -> PathBuf {
        Path::new(ENV_FILE).with_file_name(format!("n{k}")).join("data/swarm/certificates")
    }

    /// [`Cluster::spawn_daemon`], waited on until ready and its agent is
    /// connected to a decider.
    pub fn start_daemon(&self, k: u32, token: &Path, extra: &[&str]) -> Daemon {
        let mut daemon = self.spawn_daemon(k, token, extra);
        daemon.wait_ready(Duration::from_secs(90));
        daemon.wait_status("its agent to connect to a decider", Duration::from_secs(90), connected);
        daemon
    }

    /// The three daemons, each ready and its agent connected to the
    /// decider: managers first (a worker that finds no decider at its
    /// start would, rightly, log an outage).
    pub fn start_all(&self, token: &Path, extra: &[&str]) -> Vec<Daemon> {
        let mut all: Vec<Daemon> = (1..=2).map(|k| self.spawn_daemon(k, token, extra)).collect();
        for daemon in &mut all {
            daemon.wait_ready(Duration::from_secs(90));
        }
        all.push(self.spawn_daemon(3, token, extra));
        all[2].wait_ready(Duration::from_secs(90));
        for daemon in &mut all {
            daemon.wait_status("its agent to connect to the decider", Duration::from_secs(90), connected);
        }
        all
    }
}

/// Whether a `/status` says this node's agent has a decider session.
pub fn connected(status: &Value) -> bool {
    status["cluster"]["decider"].is_string()
}

/// A fresh token file for one test's daemons, in `dir`.
pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)).expect("urandom");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, hex).expect("token file");
    path
}

/// Every applied record of `service` in the audit logs of `daemons` (each
/// with its node number), by time.
pub fn applied(daemons: &[(u32, &Daemon)], service: &str) -> Vec<(u32, Value)> {
    let mut all: Vec<(u32, Value)> =
        daemons.iter().flat_map(|(k, d)| d.audit_for(service, "applied").into_iter().map(|r| (*k, r))).collect();
    all.sort_by_key(|(_, r)| r["time_unix_ms"].as_u64().unwrap_or(0));
    all
}
