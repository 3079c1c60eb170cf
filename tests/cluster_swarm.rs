//! The cluster module against a real multi-node Swarm: the test cluster of
//! tests/cluster/up.sh (three engines in network namespaces of their own,
//! node1 and node2 managers, node3 a worker).
//!
//! These tests check what the channel learns from Swarm, on real engines:
//! a node's identity and the managers its engine lists (a worker too),
//! which manager is the Raft leader and how that changes on `docker node
//! demote`, and the decider lease moving from a manager whose daemon
//! stopped to another within the expiry, with no moment where two hold it.
//!
//! Root and a running test cluster are needed (`tests/cluster/up.sh 3`);
//! without one each test prints why it skips. They change the cluster's
//! leadership and services, so they run one at a time, and they leave
//! node1 leading and no service behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use host::cluster::docker::{EngineManagers, identity, leadership};
use host::cluster::lease::{HOLDER, LeaseTiming, watch_lease};
use host::cluster::{DEFAULT_PORT, ManagerSource};

/// One test at a time: they change the same cluster. (A tokio mutex: the
/// guard is held across awaits.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ENV_FILE: &str = "/var/lib/swarm-autoscaler-cluster/cluster.env";

/// NODEk_* variables of the running test cluster, or why there is none.
fn cluster() -> Result<HashMap<String, String>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
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
    Ok(vars)
}

macro_rules! require_cluster {
    () => {
        match cluster() {
            Ok(vars) => vars,
            Err(why) => {
                eprintln!("SKIP {}: {why}", module_path!());
                return;
            }
        }
    };
}

async fn engine(vars: &HashMap<String, String>, k: u32) -> Docker {
    let host = &vars[&format!("NODE{k}_DOCKER_HOST")];
    Docker::connect_with_host(host).expect("client").negotiate_version().await.expect("engine answers")
}

fn cli(vars: &HashMap<String, String>, k: u32, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &vars[&format!("NODE{k}_DOCKER_HOST")])
        .output()
        .expect("docker cli");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn wait_for(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_node_knows_itself_and_finds_the_managers() {
    let _serial = SERIAL.lock().await;
    let vars = require_cluster!();
    let mut ids = Vec::new();
    for k in 1..=3 {
        let docker = engine(&vars, k).await;
        let me = identity(&docker).await.expect("identity");
        assert_eq!(me.hostname, vars[&format!("NODE{k}_HOSTNAME")]);
        assert_eq!(me.is_manager, k <= 2, "node{k}");
        ids.push(me.node_id);
        // A worker cannot list nodes, but its engine lists the managers.
        let mut managers = EngineManagers { docker, port: DEFAULT_PORT }.managers().await;
        managers.sort();
        let want =
            vec![format!("{}:{DEFAULT_PORT}", vars["NODE1_ADDR"]), format!("{}:{DEFAULT_PORT}", vars["NODE2_ADDR"])];
        assert_eq!(managers, want, "managers seen from node{k}");
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct node ids");
}

/// Promotes a demoted manager again when dropped, even after a failed
/// assertion: the cluster must stay `up.sh 3` for the next test.
struct Promote<'a> {
    vars: &'a HashMap<String, String>,
    node_id: String,
    /// Which NODEk it is: the guard waits until its engine is a manager.
    k: usize,
}

impl Drop for Promote<'_> {
    fn drop(&mut self) {
        // Promoting before the demotion has finished leaves a worker behind:
        // wait until the node's engine no longer acts as a manager.
        let host = &self.vars[&format!("NODE{}_DOCKER_HOST", self.k)];
        for _ in 0..600 {
            let out = std::process::Command::new("docker")
                .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
                .env("DOCKER_HOST", host)
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "false") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for k in 1..=2 {
            let ok = std::process::Command::new("docker")
                .args(["node", "promote", &self.node_id])
                .env("DOCKER_HOST", &self.vars[&format!("NODE{k}_DOCKER_HOST")])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                // Swarm's role manager first finishes the demotion, then
                // promotes (here a round trip took up to ~30 s): wait until
                // the node is a reachable manager again.
                let host = &self.vars[&format!("NODE{}_DOCKER_HOST", self.k)];
                let manager = &self.vars[&format!("NODE{k}_DOCKER_HOST")];
                let query = |host: &str, args: &[&str]| {
                    std::process::Command::new("docker")
                        .args(args)
                        .env("DOCKER_HOST", host)
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                        .unwrap_or_default()
                };
                let format = "{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}{{end}}";
                for _ in 0..1200 {
                    let reachable =
                        query(manager, &["node", "inspect", &self.node_id, "--format", format]) == "reachable";
                    if reachable && query(host, &["info", "--format", "{{.Swarm.ControlAvailable}}"]) == "true" {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!("node{} promoted but not a reachable manager after 120 s", self.k);
                return;
            }
        }
        eprintln!("could not promote {} again: run tests/cluster/down.sh and up.sh 3", self.node_id);
    }
}

#[tokio::test]
async fn leadership_follows_a_demotion_of_the_leader() {
    let _serial = SERIAL.lock().await;
    let vars = require_cluster!();
    let engines = [engine(&vars, 1).await, engine(&vars, 2).await];
    let n3 = engine(&vars, 3).await;
    let mut views = Vec::new();
    for docker in &engines {
        views.push(leadership(docker, DEFAULT_PORT).await.expect("a manager's view"));
    }
    let leaders: Vec<usize> = (0..2).filter(|&i| views[i].is_leader).collect();
    assert_eq!(leaders.len(), 1, "exactly one of the two managers leads: {views:?}");
    let (l, o) = (leaders[0], 1 - leaders[0]);
    let leader_addr = format!("{}:{DEFAULT_PORT}", vars[&format!("NODE{}_ADDR", l + 1)]);
    assert_eq!(views[o].leader_addr.as_deref(), Some(leader_addr.as_str()), "the standby knows where the leader is");
    assert!(!leadership(&n3, DEFAULT_PORT).await.expect("node3").is_leader, "a worker never leads");

    // Demote the leader: the other manager takes over once Swarm has moved
    // Raft leadership, which its role manager does with some delay.
    let leader_id = identity(&engines[l]).await.expect("identity").node_id;
    let demoted = Instant::now();
    cli(&vars, o as u32 + 1, &["node", "demote", &leader_id]);
    let _promote = Promote { vars: &vars, node_id: leader_id, k: l + 1 };
    let standby = &engines[o];
    wait_for(Duration::from_secs(120), "the standby leads", async || {
        leadership(standby, DEFAULT_PORT).await.is_ok_and(|l| l.is_leader)
    })
    .await;
    eprintln!(
        "raft leadership moved to node{} {:.1}s after `docker node demote` of node{}",
        o + 1,
        demoted.elapsed().as_secs_f64(),
        l + 1
    );
    // Mid-demotion the engine may refuse manager calls: that reads as "not
    // the leader" too (watch_leadership treats an error so).
    let old = leadership(&engines[l], DEFAULT_PORT).await;
    assert!(old.as_ref().map_or(true, |l| !l.is_leader), "a demoted leader stops leading: {old:?}");
}

#[tokio::test]
async fn the_lease_moves_when_its_holder_stops_and_is_never_held_twice() {
    let _serial = SERIAL.lock().await;
    let vars = require_cluster!();
    let (n1, n2) = (engine(&vars, 1).await, engine(&vars, 2).await);
    let (id1, id2) = (identity(&n1).await.expect("id").node_id, identity(&n2).await.expect("id").node_id);
    let service = "cluster-lease-test";
    let _ = std::process::Command::new("docker")
        .args(["service", "rm", service])
        .env("DOCKER_HOST", &vars["NODE1_DOCKER_HOST"])
        .output();
    // A service that runs nothing: only its labels matter.
    cli(
        &vars,
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            service,
            "--replicas",
            "0",
            "swarm-autoscaler-demo:local",
        ],
    );

    let timing = LeaseTiming { renew: Duration::from_millis(500), expire: Duration::from_millis(1500) };
    let first = watch_lease(n1.clone(), service.into(), id1.clone(), DEFAULT_PORT, timing);
    wait_for(Duration::from_secs(10), "node1 takes the free lease", async || first.borrow().is_leader).await;
    let second = watch_lease(n2.clone(), service.into(), id2.clone(), DEFAULT_PORT, timing);
    // node2 waits while node1 renews, and knows where the holder listens.
    let mut both = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        both += usize::from(first.borrow().is_leader && second.borrow().is_leader);
    }
    assert_eq!(both, 0, "never two holders");
    assert!(first.borrow().is_leader && !second.borrow().is_leader);
    let holder_addr = format!("{}:{DEFAULT_PORT}", vars["NODE1_ADDR"]);
    assert_eq!(second.borrow().leader_addr.as_deref(), Some(holder_addr.as_str()));

    // node1's daemon stops (its watcher ends with its receiver).
    let stopped = Instant::now();
    drop(first);
    wait_for(Duration::from_secs(10), "node2 takes over", async || second.borrow().is_leader).await;
    let took = stopped.elapsed();
    eprintln!("decider lease moved to node2 {:.2}s after node1's daemon stopped (expiry 1.5 s)", took.as_secs_f64());
    assert!(took >= timing.expire - timing.renew, "not before the expiry: {took:?}");
    let labels = cli(&vars, 1, &["service", "inspect", service, "--format", "{{json .Spec.Labels}}"]);
    assert!(labels.contains(&format!(r#""{HOLDER}":"{id2}""#)), "{labels}");
    drop(second);
    cli(&vars, 1, &["service", "rm", service]);
}
