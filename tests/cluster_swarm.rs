//! The cluster module against a real multi-node Swarm: the test cluster of
//! tests/cluster/up.sh (three engines in network namespaces of their own,
//! node1 and node2 managers, node3 a worker).
//!
//! These tests check what the channel learns from Swarm, on real engines:
//! a node's identity and the managers its engine lists (a worker too),
//! which manager is the Raft leader and how that changes on `docker node
//! demote`, and the decider lease moving from a manager whose daemon
//! stopped to another within the expiry, with no moment where two hold it.
//! Then the whole daemon on every node: a service on the worker scaled out
//! and in, a service judged by its aggregate over two nodes, and decisions
//! moving to another manager when the deciding daemon dies (lease) and when
//! the Raft leader's engine is demoted (raft), each transition applied once;
//! a daemon whose node changed role ends so that it restarts in the new one.
//!
//! Two managers are enough for the demotion: Swarm first hands Raft
//! leadership to the other manager, then removes the demoted one from a
//! Raft group of two (the remaining one is a quorum of one).
//!
//! Root and a running test cluster are needed (`tests/cluster/up.sh 3`);
//! without one each test prints why it skips. They change the cluster's
//! leadership and services, so they run one at a time, and they leave two
//! managers and a worker and no service behind (either manager may lead).

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

// ---------------------------------------------------------------------------
// The whole daemon on every node (`host --cluster`), against the same
// cluster: each node's daemon runs in that node's network namespace against
// that node's engine, with the eBPF probe and the shipped policies, as the
// global service of deploy/stack.yml would run it. Load comes from this
// process over the bridge to the node's address (10.77.0.K+1), where the
// demo's host-network replicas listen.
// ---------------------------------------------------------------------------

mod daemons {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::HashMap;

    pub const IMAGE: &str = "swarm-autoscaler-demo:local";

    pub fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
    }

    pub fn unix_ms() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }

    /// Why the daemon tests cannot run beside a running cluster, if they cannot.
    pub fn missing_parts() -> Option<String> {
        let image = Command::new("docker").args(["image", "inspect", IMAGE]).output();
        if !image.is_ok_and(|o| o.status.success()) {
            return Some(format!("no {IMAGE} in the main engine (examples/demo/build-image.sh)"));
        }
        for policy in ["threshold", "proportional"] {
            let file = repo().join("policies").join(format!("{policy}.wasm"));
            if !file.is_file() {
                return Some(format!("{} is missing (policies/build.sh)", file.display()));
            }
        }
        None
    }

    /// The docker CLI against node `k`; `None` on failure.
    pub fn docker_on(vars: &HashMap<String, String>, k: u32, args: &[&str]) -> Option<String> {
        let out = Command::new("docker").args(args).env("DOCKER_HOST", &vars[&format!("NODE{k}_DOCKER_HOST")]).output();
        out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The docker CLI against whichever manager answers: node1, else node2
    /// (a test may have demoted either).
    pub fn manager(vars: &HashMap<String, String>, args: &[&str]) -> Option<String> {
        docker_on(vars, 1, args).or_else(|| docker_on(vars, 2, args))
    }

    /// A demo service of the test cluster, removed on drop.
    pub struct Service<'a> {
        pub vars: &'a HashMap<String, String>,
        pub name: String,
        pub port: u16,
    }

    impl<'a> Service<'a> {
        /// Create `name` with `replicas` tasks on the host network of the
        /// nodes `placement` allows, each replica also on `port + 10 + slot`.
        pub fn create(
            vars: &'a HashMap<String, String>,
            name: &str,
            port: u16,
            replicas: u32,
            placement: &[&str],
            labels: &[(&str, &str)],
        ) -> Service<'a> {
            let _ = manager(vars, &["service", "rm", name]);
            let (env, slot_base, replicas) =
                (format!("PORT={port}"), format!("SLOT_PORT_BASE={}", port + 10), replicas.to_string());
            let mut args = vec![
                "service",
                "create",
                "--detach",
                "--quiet",
                "--no-resolve-image",
                "--name",
                name,
                "--network",
                "host",
                "--limit-cpu",
                "0.5",
                "--env",
                &env,
                "--env",
                &slot_base,
                "--env",
                "SLOT={{.Task.Slot}}",
                "--replicas",
                &replicas,
                "--stop-grace-period",
                "2s",
            ];
            args.extend_from_slice(placement);
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for label in &labels {
                args.extend(["--label", label.as_str()]);
            }
            args.push(IMAGE);
            manager(vars, &args).unwrap_or_else(|| panic!("docker service create {name} failed"));
            Service { vars, name: name.to_string(), port }
        }

        /// Replicas in the spec.
        pub fn replicas(&self) -> u32 {
            manager(self.vars, &["service", "inspect", &self.name, "--format", "{{.Spec.Mode.Replicated.Replicas}}"])
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        }

        /// The nodes (hostnames) of the tasks running now.
        pub fn running_on(&self) -> Vec<String> {
            let out = manager(
                self.vars,
                &[
                    "service",
                    "ps",
                    &self.name,
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Node}} {{.CurrentState}}",
                ],
            )
            .unwrap_or_default();
            let mut nodes: Vec<String> = out
                .lines()
                .filter(|l| l.contains(" Running"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            nodes.sort();
            nodes
        }
    }

    impl Drop for Service<'_> {
        fn drop(&mut self) {
            let _ = manager(self.vars, &["service", "rm", &self.name]);
        }
    }

    /// One GET with `Connection: close`; the body, if any.
    pub fn request(addr: &str, port: u16, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect((addr, port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
    }

    /// Closed-loop CPU load on `addr:port`: `threads` clients asking for
    /// `burn_ms` of CPU each, pausing `pause_ms` between requests.
    pub struct Load {
        stop: Arc<AtomicBool>,
        served: Arc<AtomicU64>,
        threads: Vec<JoinHandle<()>>,
    }

    impl Load {
        pub fn start(addr: &str, port: u16, threads: usize, burn_ms: u64, pause_ms: u64) -> Load {
            let stop = Arc::new(AtomicBool::new(false));
            let served = Arc::new(AtomicU64::new(0));
            let threads = (0..threads)
                .map(|_| {
                    let (stop, served, addr) = (stop.clone(), served.clone(), addr.to_string());
                    std::thread::spawn(move || {
                        let path = format!("/burn?ms={burn_ms}");
                        while !stop.load(Ordering::Relaxed) {
                            match request(&addr, port, &path) {
                                Some(_) => {
                                    served.fetch_add(1, Ordering::Relaxed);
                                    std::thread::sleep(Duration::from_millis(pause_ms));
                                }
                                None => std::thread::sleep(Duration::from_millis(50)),
                            }
                        }
                    })
                })
                .collect();
            Load { stop, served, threads }
        }

        pub fn stop(mut self) -> u64 {
            self.halt();
            self.served.load(Ordering::Relaxed)
        }

        fn halt(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    impl Drop for Load {
        fn drop(&mut self) {
            self.halt();
        }
    }

    /// `host --cluster` on node `k`: in the node's network namespace, against
    /// the node's engine. SIGTERM on drop; its log shown if the test failed.
    pub struct NodeDaemon {
        pub k: u32,
        child: Child,
        dir: tempfile::TempDir,
    }

    impl NodeDaemon {
        pub fn start(vars: &HashMap<String, String>, k: u32, token: &Path, extra: &[&str]) -> NodeDaemon {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = std::fs::File::create(dir.path().join("host.log")).expect("log file");
            let child = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/sacl-n{k}"))
                .arg(env!("CARGO_BIN_EXE_host"))
                .current_dir(repo())
                // Metrics on the node's address, so this process can scrape them.
                .args(["--cluster", "--policies", "./policies", "--metrics-addr", "0.0.0.0:9464", "--audit-log"])
                .arg(dir.path().join("audit.jsonl"))
                .arg("--cluster-token-file")
                .arg(token)
                .args(extra)
                .env("DOCKER_HOST", &vars[&format!("NODE{k}_DOCKER_HOST")])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nsenter host");
            NodeDaemon { k, child, dir }
        }

        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
        }

        /// Lines of the log containing `what`.
        pub fn count(&self, what: &str) -> usize {
            self.log().lines().filter(|l| l.contains(what)).count()
        }

        pub fn wait_log(&mut self, what: &str, timeout: Duration) -> Duration {
            let start = Instant::now();
            while !self.log().contains(what) {
                assert!(
                    !matches!(self.child.try_wait(), Ok(Some(_))),
                    "node{} daemon exited waiting for {what:?}:\n{}",
                    self.k,
                    self.log()
                );
                assert!(start.elapsed() < timeout, "node{}: no {what:?} within {timeout:?}:\n{}", self.k, self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
            start.elapsed()
        }

        /// One value of the daemon's metrics endpoint (on the node's address).
        pub fn metric(&self, vars: &HashMap<String, String>, name: &str) -> Option<f64> {
            let addr = &vars[&format!("NODE{}_ADDR", self.k)];
            let mut conn = TcpStream::connect((addr.as_str(), 9464)).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n").ok()?;
            let mut text = String::new();
            conn.read_to_string(&mut text).ok()?;
            text.lines()
                .find(|l| l.split([' ', '{']).next() == Some(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        }

        /// Audit records of `service` with `outcome`.
        pub fn audit(&self, service: &str, outcome: &str) -> Vec<serde_json::Value> {
            let Ok(file) = std::fs::File::open(self.dir.path().join("audit.jsonl")) else { return Vec::new() };
            BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
                .filter(|r| r["service"] == service && r["outcome"] == outcome)
                .collect()
        }

        /// Scale-to-zero records of `service` with `zero` (`frozen`, `woken`...).
        pub fn zero(&self, service: &str, zero: &str) -> Vec<serde_json::Value> {
            let Ok(file) = std::fs::File::open(self.dir.path().join("audit.jsonl")) else { return Vec::new() };
            BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
                .filter(|r| r["service"] == service && r["zero"] == zero)
                .collect()
        }

        /// The daemon's exit status once it ended on its own, within `timeout`.
        pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
            let start = Instant::now();
            while start.elapsed() < timeout {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        }

        pub fn signal(&mut self, signal: libc::c_int) {
            // SAFETY: signalling our own child (nsenter exec'd the daemon).
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for NodeDaemon {
        fn drop(&mut self) {
            if matches!(self.child.try_wait(), Ok(None)) {
                self.signal(libc::SIGTERM);
            }
            if std::thread::panicking() {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- node{} host log (last 40 lines) ---", self.k);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// A fresh token file for one test's daemons.
    pub fn token_file(dir: &Path) -> PathBuf {
        let path = dir.join("token");
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)).expect("urandom");
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&path, hex).expect("token file");
        path
    }

    /// The three daemons, each started and past its first step: managers
    /// follow docker events, the worker's agent runs, every agent is
    /// connected to the decider.
    pub fn start_all(vars: &HashMap<String, String>, token: &Path, extra: &[&str]) -> Vec<NodeDaemon> {
        // Managers first: a worker that finds no decider at its start would
        // (rightly) log an outage.
        let mut all: Vec<NodeDaemon> = (1..=2).map(|k| NodeDaemon::start(vars, k, token, extra)).collect();
        for d in &mut all {
            d.wait_log("cluster channel listening for agents", Duration::from_secs(90));
        }
        all.push(NodeDaemon::start(vars, 3, token, extra));
        for d in &mut all {
            d.wait_log("cluster: connected to the decider", Duration::from_secs(90));
        }
        all
    }

    /// Labels of a threshold service.
    pub fn labels<'a>(
        max: &'a str,
        upper: &'a str,
        cooldown_up: &'a str,
        cooldown_down: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("autoscale.enable", "true"),
            ("autoscale.policy", "threshold"),
            ("autoscale.min", "1"),
            ("autoscale.max", max),
            ("autoscale.cpu.upper", upper),
            ("autoscale.cpu.lower", "0.15"),
            ("autoscale.cooldown.up", cooldown_up),
            ("autoscale.cooldown.down", cooldown_down),
            ("autoscale.warmup", "2s"),
        ]
    }

    /// Every applied record of `service` in every daemon's audit, by time.
    pub fn applied(daemons: &[&NodeDaemon], service: &str) -> Vec<(u32, serde_json::Value)> {
        let mut all: Vec<(u32, serde_json::Value)> =
            daemons.iter().flat_map(|d| d.audit(service, "applied").into_iter().map(|r| (d.k, r))).collect();
        all.sort_by_key(|(_, r)| r["time_unix_ms"].as_u64().unwrap_or(0));
        all
    }
}

/// The cluster plus what the daemon tests need, or why they skip.
macro_rules! require_daemons {
    () => {{
        let vars = require_cluster!();
        if let Some(why) = daemons::missing_parts() {
            eprintln!("SKIP {}: {why}", module_path!());
            return;
        }
        vars
    }};
}

#[test]
fn a_service_on_the_worker_scales_out_when_loaded_and_back_in_when_idle() {
    let _serial = SERIAL.blocking_lock();
    let vars = require_daemons!();
    let work = tempfile::tempdir().expect("tempdir");
    let token = daemons::token_file(work.path());
    let mut nodes = daemons::start_all(&vars, &token, &[]);
    let web = daemons::Service::create(
        &vars,
        "cluster-e2e-worker",
        18201,
        1,
        &["--constraint", "node.hostname==node3"],
        &daemons::labels("3", "0.6", "1s", "3s"),
    );
    daemons::wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let leader = nodes.iter_mut().position(|d| d.log().contains(": deciding")).expect("a deciding manager");
    nodes[leader].wait_log("service cluster-e2e-worker autoscaled", Duration::from_secs(30));
    // The worker's probe found the container under its engine's cgroup parent.
    nodes[2].wait_log("cluster: new tracking set", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3)); // past the warm-up

    let node3 = vars["NODE3_ADDR"].clone();
    let load_start = daemons::unix_ms();
    let load = daemons::Load::start(&node3, web.port, 4, 50, 0);
    daemons::wait_until("a scale-out of the worker's service", Duration::from_secs(90), || web.replicas() >= 2);
    let refs: Vec<&daemons::NodeDaemon> = nodes.iter().collect();
    let ups = daemons::applied(&refs, &web.name);
    let (k, first) = ups.first().expect("an applied scale-out in a manager's audit");
    assert!([1, 2].contains(k), "only a manager writes; node{k} did");
    assert!(first["reason"].as_str().is_some_and(|r| r.contains(">= cpu.upper")), "{first}");
    let spec_ms = first["time_unix_ms"].as_u64().unwrap_or(0).saturating_sub(load_start);
    eprintln!(
        "cluster e2e: service on worker node3, decided on node{k}: load start -> spec updated {spec_ms} ms (kernel event -> spec updated {} us)",
        first["event_to_outcome_us"]
    );
    daemons::wait_until("the new replicas to run on node3", Duration::from_secs(60), || {
        let on = web.running_on();
        on.len() >= 2 && on.iter().all(|n| n == "node3")
    });
    assert!(load.stop() > 0, "the load got no answers");

    let idle = Instant::now();
    daemons::wait_until("a scale-in back to 1 once idle", Duration::from_secs(90), || web.replicas() == 1);
    eprintln!("cluster e2e: back to 1 replica {:.1} s after the load stopped", idle.elapsed().as_secs_f64());
    let all = daemons::applied(&refs, &web.name);
    assert!(all.iter().all(|(k, _)| *k == all[0].0), "one manager decided throughout: {all:?}");
    assert!(all.iter().any(|(_, r)| r["to"].as_u64() < r["from"].as_u64()), "a scale-in was applied: {all:?}");
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 0, "the worker never lost the decider");
}

#[test]
fn a_service_on_two_nodes_loaded_on_one_is_judged_by_its_aggregate() {
    let _serial = SERIAL.blocking_lock();
    let vars = require_daemons!();
    let work = tempfile::tempdir().expect("tempdir");
    let token = daemons::token_file(work.path());
    let nodes = daemons::start_all(&vars, &token, &[]);
    // One replica on node2 (a manager), one on node3 (the worker).
    let web = daemons::Service::create(
        &vars,
        "cluster-e2e-spread",
        18221,
        2,
        &["--constraint", "node.hostname!=node1", "--replicas-max-per-node", "1"],
        // min 2: idle before the load starts, the pair must not scale in.
        &daemons::labels("3", "0.8", "1s", "60s")
            .into_iter()
            .map(|(k, v)| if k == "autoscale.min" { (k, "2") } else { (k, v) })
            .collect::<Vec<_>>(),
    );
    daemons::wait_until("a replica on node2 and one on node3", Duration::from_secs(60), || {
        web.running_on() == ["node2", "node3"]
    });
    // node3's replica saturated (about 1.0 of its 0.5 CPU), node2's lightly
    // loaded (about 0.2): a node-local view of node3 would scale out, the
    // aggregate (mean about 0.6, under 0.8) must not.
    let (node2, node3) = (vars["NODE2_ADDR"].clone(), vars["NODE3_ADDR"].clone());
    // The light load first: node2's replica reports, both are past the
    // warm-up, before node3's crossing asks for a decision.
    let light = daemons::Load::start(&node2, web.port, 1, 10, 90);
    std::thread::sleep(Duration::from_secs(4));
    let heavy = daemons::Load::start(&node3, web.port, 2, 50, 0);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(25) {
        assert_eq!(web.replicas(), 2, "scaled on one node's load while the aggregate is under cpu.upper");
        std::thread::sleep(Duration::from_millis(500));
    }
    let refs: Vec<&daemons::NodeDaemon> = nodes.iter().collect();
    assert!(daemons::applied(&refs, &web.name).is_empty());

    // Both loaded: the aggregate crosses cpu.upper, one scale-out.
    let heavy2 = daemons::Load::start(&node2, web.port, 2, 50, 0);
    daemons::wait_until("a scale-out once both nodes are loaded", Duration::from_secs(60), || web.replicas() >= 3);
    let ups = daemons::applied(&refs, &web.name);
    let reason = ups[0].1["reason"].as_str().unwrap_or_default().to_string();
    eprintln!("cluster e2e: aggregate over node2 and node3: {reason}");
    assert!(reason.starts_with("cpu mean"), "decided on the mean over both nodes: {reason}");
    for load in [heavy, light, heavy2] {
        assert!(load.stop() > 0, "a load got no answers");
    }
}

#[test]
fn decisions_move_when_the_deciding_daemon_dies_and_agents_come_back() {
    let _serial = SERIAL.blocking_lock();
    let vars = require_daemons!();
    let work = tempfile::tempdir().expect("tempdir");
    let token = daemons::token_file(work.path());
    // The lease lives on a service of its own, as the stack's service would hold it.
    let lease = daemons::Service::create(&vars, "cluster-e2e-lease", 18240, 0, &[], &[]);
    let lease_args = ["--cluster-leadership", "lease", "--cluster-service", "cluster-e2e-lease"];
    let mut nodes = daemons::start_all(&vars, &token, &lease_args);
    let web = daemons::Service::create(
        &vars,
        "cluster-e2e-failover",
        18241,
        1,
        &["--constraint", "node.hostname==node3"],
        &daemons::labels("4", "0.6", "2s", "120s"),
    );
    daemons::wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    std::thread::sleep(Duration::from_secs(3)); // tracked and past the warm-up
    let load = daemons::Load::start(&vars["NODE3_ADDR"], web.port, 4, 50, 0);
    daemons::wait_until("a first scale-out", Duration::from_secs(90), || web.replicas() >= 2);
    let first = {
        let refs: Vec<&daemons::NodeDaemon> = nodes.iter().collect();
        daemons::applied(&refs, &web.name)
    };
    let holder = first.first().expect("an applied scale-out").0 as usize - 1;
    let standby = 1 - holder;

    // The deciding daemon dies; its engine, and Raft leadership, stay.
    let killed = Instant::now();
    nodes[holder].signal(libc::SIGKILL);
    let took = nodes[standby].wait_log("cluster: decider lease taken: deciding", Duration::from_secs(20));
    eprintln!(
        "cluster e2e: node{} decides {:.1} s after node{}'s daemon was killed",
        standby + 1,
        took.as_secs_f64(),
        holder + 1
    );
    assert!(took < Duration::from_secs(10), "decisions moved only after {took:?}");
    let before = web.replicas();
    daemons::wait_until("a scale-out decided by the standby", Duration::from_secs(60), || {
        !nodes[standby].audit(&web.name, "applied").is_empty()
    });
    eprintln!(
        "cluster e2e: first decision of node{} {:.1} s after the kill ({} -> {})",
        standby + 1,
        killed.elapsed().as_secs_f64(),
        before,
        web.replicas()
    );

    // No manager left: the worker keeps measuring, says so once, and
    // resumes when a manager's daemon is back.
    nodes[standby].signal(libc::SIGTERM);
    nodes[2].wait_log("no autoscaler decider reachable", Duration::from_secs(10));
    let measured = |d: &daemons::NodeDaemon| d.metric(&vars, "autoscaler_probe_events_total").expect("worker metrics");
    let at_outage = measured(&nodes[2]);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 1, "one line for the outage:\n{}", nodes[2].log());
    assert_eq!(nodes[2].metric(&vars, "autoscaler_cluster_agent_connected"), Some(0.0));
    let during = measured(&nodes[2]) - at_outage;
    assert!(during > 0.0, "the worker's probe kept measuring while no decider answered");
    let mut back = daemons::NodeDaemon::start(&vars, holder as u32 + 1, &token, &lease_args);
    back.wait_log("cluster: decider lease taken: deciding", Duration::from_secs(30));
    nodes[2].wait_log("decider reachable again", Duration::from_secs(20));
    let resumed =
        nodes[2].log().lines().find(|l| l.contains("decider reachable again")).unwrap_or_default().to_string();
    eprintln!("cluster e2e: worker measured {during} events in 6 s without a decider; then: {resumed}");
    daemons::wait_until("a scale-out decided by the restarted daemon", Duration::from_secs(60), || {
        !back.audit(&web.name, "applied").is_empty()
    });
    assert!(load.stop() > 0);

    // Every transition applied once, across the three deciders' audits.
    let refs: Vec<&daemons::NodeDaemon> = nodes.iter().chain(std::iter::once(&back)).collect();
    let all = daemons::applied(&refs, &web.name);
    for pair in all.windows(2) {
        assert_eq!(pair[1].1["from"], pair[0].1["to"], "a decision applied twice or lost: {all:?}");
    }
    assert_eq!(all.last().map(|(_, r)| r["to"].as_u64()), Some(Some(u64::from(web.replicas()))), "{all:?}");
    drop(lease);
}

#[test]
fn decisions_follow_raft_leadership_when_the_leader_is_demoted() {
    let _serial = SERIAL.blocking_lock();
    let vars = require_daemons!();
    let work = tempfile::tempdir().expect("tempdir");
    let token = daemons::token_file(work.path());
    // `--cluster-leadership raft`, the default: decisions follow Swarm's leader.
    let mut nodes = daemons::start_all(&vars, &token, &[]);
    let deciding = "cluster: this manager is the swarm leader: deciding";
    daemons::wait_until("a manager's daemon to follow the raft leader", Duration::from_secs(10), || {
        nodes[..2].iter().any(|d| d.count(deciding) > 0)
    });
    let leader = nodes[..2].iter().position(|d| d.count(deciding) > 0).expect("a deciding manager");
    let standby = 1 - leader;
    let (leader_k, standby_k) = (leader as u32 + 1, standby as u32 + 1);
    let web = daemons::Service::create(
        &vars,
        "cluster-e2e-demote",
        18261,
        1,
        &["--constraint", "node.hostname==node3"],
        // A long cooldown down: between the two loads nothing scales in.
        &daemons::labels("4", "0.6", "1s", "120s"),
    );
    daemons::wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    std::thread::sleep(Duration::from_secs(3)); // tracked and past the warm-up
    let load = daemons::Load::start(&vars["NODE3_ADDR"], web.port, 4, 50, 0);
    daemons::wait_until("a first scale-out", Duration::from_secs(90), || web.replicas() >= 2);
    assert!(load.stop() > 0, "the first load got no answers");
    let refs: Vec<&daemons::NodeDaemon> = nodes.iter().collect();
    let first = daemons::applied(&refs, &web.name);
    assert_eq!(first.first().map(|(k, _)| *k), Some(leader_k), "the raft leader's daemon decided: {first:?}");

    // Demote the leader's engine (from the standby, which stays a manager).
    let leader_id = daemons::docker_on(&vars, leader_k, &["info", "--format", "{{.Swarm.NodeID}}"]).expect("node id");
    let demote_ms = daemons::unix_ms();
    let demoted = Instant::now();
    cli(&vars, standby_k, &["node", "demote", &leader_id]);
    let promote = Promote { vars: &vars, node_id: leader_id, k: leader as usize + 1 };
    // Watch Swarm's leader and both daemons at once, to split the handover
    // into Swarm's part (demote -> raft leader moved) and ours (raft leader
    // moved -> the new leader's daemon decides).
    let is_leader = "{{.ManagerStatus.Leader}}";
    let (mut raft_moved, mut taken, mut released) = (None, None, None);
    while raft_moved.is_none() || taken.is_none() || released.is_none() {
        assert!(
            demoted.elapsed() < Duration::from_secs(120),
            "within 120 s of the demotion: raft moved {raft_moved:?}, node{standby_k} deciding {taken:?}, node{leader_k} stopped {released:?}"
        );
        if raft_moved.is_none()
            && daemons::docker_on(&vars, standby_k, &["node", "inspect", "self", "--format", is_leader]).as_deref()
                == Some("true")
        {
            raft_moved = Some(demoted.elapsed());
        }
        if taken.is_none() && nodes[standby].count(deciding) > 0 {
            taken = Some(demoted.elapsed());
        }
        if released.is_none() && nodes[leader].count("not the swarm leader: not deciding") > 0 {
            released = Some(demoted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (raft_moved, taken, released) =
        (raft_moved.unwrap_or_default(), taken.unwrap_or_default(), released.unwrap_or_default());
    // The CLI's answer takes a few tens of ms: the daemon may see the move first.
    let handover = taken.saturating_sub(raft_moved);
    eprintln!(
        "cluster e2e: `docker node demote` of node{leader_k}: raft leader on node{standby_k} after {:.2} s, its daemon deciding after {:.2} s (handover {:.2} s after swarm moved), node{leader_k}'s daemon stopped deciding after {:.2} s",
        raft_moved.as_secs_f64(),
        taken.as_secs_f64(),
        handover.as_secs_f64(),
        released.as_secs_f64()
    );
    assert!(
        handover < Duration::from_secs(3),
        "the new leader's daemon took {handover:?} after swarm moved leadership"
    );
    // The demoted node's daemon ends, saying why, and (as the stack's restart
    // policy would) starts again as a worker's agent.
    // It ends once its engine stops calling itself a manager, which Swarm
    // does some seconds after leadership moved (6-9 s here).
    let status = nodes[leader].wait_exit(Duration::from_secs(30)).expect("the demoted daemon exits");
    eprintln!(
        "cluster e2e: node{leader_k}'s daemon ended {:.1} s after the demotion: {}",
        demoted.elapsed().as_secs_f64(),
        nodes[leader].log().lines().rfind(|l| l.contains("demoted this node")).unwrap_or_default()
    );
    assert!(!status.success(), "a role change ends the daemon with a failure status: {status}");
    assert_eq!(nodes[leader].count("demoted this node to a worker"), 1, "{}", nodes[leader].log());
    let mut restarted = daemons::NodeDaemon::start(&vars, leader_k, &token, &[]);
    restarted.wait_log("autoscaler agent running (worker", Duration::from_secs(30));
    // Every agent, the restarted node's and the worker's, finds the new leader.
    let new_decider = format!("{}:{}", vars[&format!("NODE{standby_k}_ADDR")], host::cluster::DEFAULT_PORT);
    let connected = |d: &daemons::NodeDaemon| {
        d.log().lines().any(|l| {
            (l.contains("connected to the decider") || l.contains("decider reachable again"))
                && l.contains(&new_decider)
        })
    };
    let joined = daemons::wait_until("every agent connected to the new leader", Duration::from_secs(20), || {
        connected(&nodes[standby]) && connected(&nodes[2]) && connected(&restarted)
    });
    eprintln!("cluster e2e: every agent connected to node{standby_k} {:.2} s later", joined.as_secs_f64());

    // Load again: the new leader decides, from what the worker now sends it.
    let before = web.replicas();
    let again = Instant::now();
    let load = daemons::Load::start(&vars["NODE3_ADDR"], web.port, 4, 50, 0);
    daemons::wait_until("a scale-out decided by the new leader", Duration::from_secs(60), || {
        !nodes[standby].audit(&web.name, "applied").is_empty()
    });
    eprintln!(
        "cluster e2e: node{standby_k} applied its first decision {:.1} s after the load resumed ({before} -> {})",
        again.elapsed().as_secs_f64(),
        web.replicas(),
    );
    assert!(load.stop() > 0, "the second load got no answers");
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 0, "a leadership move is not an outage");

    // The demoted manager applied nothing after the demotion, and every
    // transition was applied once across both managers' audits.
    let refs: Vec<&daemons::NodeDaemon> = nodes.iter().collect();
    let all = daemons::applied(&refs, &web.name);
    let late: Vec<_> =
        all.iter().filter(|(k, r)| *k == leader_k && r["time_unix_ms"].as_u64() > Some(demote_ms)).collect();
    assert!(late.is_empty(), "node{leader_k} applied decisions after its demotion: {late:?}");
    for pair in all.windows(2) {
        assert_eq!(pair[1].1["from"], pair[0].1["to"], "a decision applied twice or lost: {all:?}");
    }
    assert_eq!(all.last().map(|(_, r)| r["to"].as_u64()), Some(Some(u64::from(web.replicas()))), "{all:?}");
    // The demoted daemon's actuator, its reads refused by an engine that is
    // no longer a manager, backs off instead of retrying in a busy loop.
    let refused = nodes[leader].count("cannot read the service");
    assert!(refused < 20, "node{leader_k} logged {refused} refused reads after its demotion");

    // Promoted again (the guard waits until it is a reachable manager), the
    // node's worker daemon ends too, to come back with a decider.
    let promoting = Instant::now();
    drop(promote);
    let status = restarted.wait_exit(Duration::from_secs(30)).expect("the promoted worker's daemon exits");
    assert!(!status.success(), "{status}");
    assert_eq!(restarted.count("promoted this node to a manager"), 1, "{}", restarted.log());
    eprintln!(
        "cluster e2e: node{leader_k} promoted again; its worker daemon ended {:.1} s after `docker node promote`",
        promoting.elapsed().as_secs_f64()
    );
    drop(web);
}

/// Scale to zero on a worker: the leader decides, node3's agent freezes
/// its own replica with its own engine and arms its own probe's wake; a
/// connection to node3 is woken there at once (no round trip to the
/// leader) and answered; the leader audits both; node3's daemon thaws what
/// it froze when it stops.
#[test]
fn a_min_zero_replica_on_the_worker_is_frozen_and_woken_by_its_own_node() {
    let _serial = SERIAL.blocking_lock();
    let vars = require_daemons!();
    let work = tempfile::tempdir().expect("tempdir");
    let token = daemons::token_file(work.path());
    let mut nodes = daemons::start_all(&vars, &token, &[]);
    let mut labels = daemons::labels("2", "0.6", "1s", "1s");
    labels.retain(|(k, _)| *k != "autoscale.min");
    labels.extend([("autoscale.min", "0"), ("autoscale.idle", "3s")]);
    let web = daemons::Service::create(
        &vars,
        "cluster-e2e-zero",
        18251,
        1,
        &["--constraint", "node.hostname==node3", "--no-healthcheck"],
        &labels,
    );
    daemons::wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let filter = format!("label=com.docker.swarm.service.name={}", web.name);
    let container = daemons::docker_on(&vars, 3, &["ps", "-q", "--no-trunc", "--filter", &filter]).unwrap_or_default();
    assert_eq!(container.lines().count(), 1, "one replica on node3: {container:?}");
    let paused = || {
        daemons::docker_on(&vars, 3, &["inspect", "--format", "{{.State.Paused}}", &container]).as_deref()
            == Some("true")
    };
    let leader = nodes.iter().position(|d| d.log().contains(": deciding")).expect("a deciding manager");
    let took = daemons::wait_until("the idle replica on node3 to be frozen", Duration::from_secs(40), paused);
    let frozen = nodes[leader].zero(&web.name, "frozen");
    assert_eq!(frozen.first().map(|r| r["container"].clone()), Some(serde_json::json!(container)), "{frozen:?}");

    let node3 = vars["NODE3_ADDR"].clone();
    let start = Instant::now();
    let body = daemons::request(&node3, web.port, "/");
    let answered = start.elapsed();
    assert!(body.as_deref().is_some_and(|b| b.starts_with("ok")), "the frozen replica answers: {body:?}");
    assert!(!paused(), "woken");
    nodes[2].wait_log("on this node: connection to unpaused in", Duration::from_secs(10));
    daemons::wait_until("the wake in the leader's audit", Duration::from_secs(10), || {
        !nodes[leader].zero(&web.name, "woken").is_empty()
    });
    let woken = nodes[leader].zero(&web.name, "woken");
    let wake_ms = woken[0]["wake_us"].as_u64().expect("wake latency") as f64 / 1000.0;
    eprintln!(
        "cluster e2e zero: replica on node3 frozen {:.1} s after it ran; connect -> answer {answered:?}; kernel connection -> unpaused on node3 {wake_ms:.1} ms",
        took.as_secs_f64()
    );
    assert!(answered < Duration::from_secs(2), "the wake needs no round trip: {answered:?}");

    // Frozen again; node3's daemon stops and thaws what it froze.
    daemons::wait_until("the replica to be frozen again", Duration::from_secs(40), paused);
    nodes[2].signal(libc::SIGTERM);
    assert!(!paused(), "node3's daemon left its replica frozen when it stopped:\n{}", nodes[2].log());
}
