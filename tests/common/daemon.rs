//! The `host` daemon as a child process, waited on through its own
//! endpoints: `/readyz` (Swarm and the policies folder were read) and
//! `/status` (every service's state, the inventory reads, multi-node
//! mode's role and connection).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::Cluster;
use super::{free_port, http_get, repo, wait_until};

/// How a daemon is started; [`Daemon::builder`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Builder {
    /// The policies folder (`--policies`).
    policies: PathBuf,
    /// More flags.
    args: Vec<OsString>,
    /// Environment set for the daemon.
    env: Vec<(String, String)>,
    /// Run in the network namespace of this test cluster node, against its
    /// engine: (node number, its address, its `DOCKER_HOST`).
    node: Option<(u32, String, String)>,
    /// A compile cache of its own (`--cache-dir` in its temporary folder).
    own_cache: bool,
    /// The audit log, if not `audit.jsonl` in its temporary folder.
    audit: Option<PathBuf>,
}

/// A running daemon; SIGTERM on drop (SIGKILL 10 s later), its log tail
/// shown when the test failed.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The address its metrics endpoint is reached on.
    pub addr: String,
    /// Its metrics endpoint's port.
    pub metrics_port: u16,
    /// For messages: `host`, or `node3 host`.
    pub name: String,
    /// Its audit log.
    pub audit_path: PathBuf,
}

impl Daemon {
    /// The shipped policies (`./policies`), an audit log and a metrics
    /// endpoint of its own, `RUST_LOG=info`, the local engine.
    pub fn builder() -> Builder {
        Builder {
            policies: PathBuf::from("./policies"),
            args: Vec::new(),
            env: Vec::new(),
            node: None,
            own_cache: false,
            audit: None,
        }
    }

    /// [`Daemon::builder`] with `args`, started and ready.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::builder().args(args).start()
    }

    /// The daemon's log so far (plain text: it writes colour codes only to
    /// a terminal).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// Lines of the log containing `what`.
    pub fn count(&self, what: &str) -> usize {
        self.log().lines().filter(|l| l.contains(what)).count()
    }

    /// The lines of the log that say something about `service`'s
    /// autoscaling (`service NAME ...`), fields cut off.
    pub fn lines_about(&self, service: &str) -> Vec<String> {
        let prefix = format!("service {service} ");
        self.log()
            .lines()
            // The text format puts the line's fields after the message.
            .filter_map(|l| {
                l.find(&prefix).map(|at| l[at..].trim_end_matches(&format!(" service={service}")).to_string())
            })
            .collect()
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// `GET path` on the metrics endpoint: status code and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.addr, self.metrics_port, path, Duration::from_secs(5))
    }

    /// `GET path`, which must answer 200 within `within`: the body.
    pub fn get_within(&self, path: &str, within: Duration) -> String {
        let started = Instant::now();
        let (code, body) = http_get(&self.addr, self.metrics_port, path, within)
            .unwrap_or_else(|| panic!("{}: no answer to GET {path} within {within:?}", self.name));
        assert!(started.elapsed() <= within, "GET {path} took {:?}", started.elapsed());
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// One scrape of `/metrics`.
    pub fn scrape(&self) -> String {
        self.get_within("/metrics", Duration::from_secs(5))
    }

    /// One sample of `/metrics` by its exact name (labels ignored), if the
    /// endpoint answers and has it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics")?;
        text.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// `/status`, as JSON; `None` while the endpoint does not answer.
    pub fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// `/status/NAME`: the one service's entry, if the daemon knows it.
    pub fn service(&self, name: &str) -> Option<Value> {
        let (code, body) = self.get(&format!("/status/{name}"))?;
        let report: Value = (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()?;
        report["services"].get(0).cloned()
    }

    /// `/status`'s multi-node block (`role`, `deciding`, `decider`, ...).
    pub fn cluster(&self) -> Option<Value> {
        self.status().map(|s| s["cluster"].clone()).filter(|c| !c.is_null())
    }

    /// Whether this daemon decides now (multi-node mode).
    pub fn deciding(&self) -> bool {
        self.cluster().is_some_and(|c| c["deciding"] == true)
    }

    /// The decider this node's agent is connected to (multi-node mode).
    pub fn decider(&self) -> Option<String> {
        self.cluster().and_then(|c| c["decider"].as_str().map(str::to_string))
    }

    /// Wait until `done` holds of `/status`; the time it took.
    pub fn wait_status(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Value) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if self.status().is_some_and(|s| done(&s)) {
                return start.elapsed();
            }
            assert!(!self.exited(), "{} exited waiting for {what}:\n{}", self.name, self.log());
            assert!(start.elapsed() < timeout, "{}: not within {timeout:?}: {what}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while self.get("/readyz").is_none_or(|(code, _)| code != 200) {
            assert!(!self.exited(), "{} exited at startup:\n{}", self.name, self.log());
            assert!(start.elapsed() < timeout, "{} was not ready within {timeout:?}:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the daemon reports service `name` as autoscaled.
    pub fn wait_autoscaled(&self, name: &str) {
        wait_until(&format!("{} to autoscale {name}", self.name), Duration::from_secs(30), || {
            self.service(name).is_some_and(|s| s["autoscaled"] == true)
        });
    }

    /// `host status [SERVICE]` against this daemon, as its user runs it:
    /// (success, stdout).
    pub fn host_status(&self, service: Option<&str>) -> (bool, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command.args(["status", "--addr", &format!("{}:{}", self.addr, self.metrics_port)]);
        command.args(service);
        let out = command.output().expect("run host status");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every audit record so far.
    pub fn audit(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.audit_path) else { return Vec::new() };
        BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect()
    }

    /// Audit records of `service` with `outcome` (`applied`, `dry-run`...).
    pub fn audit_for(&self, service: &str, outcome: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|r| r["service"] == service && r["outcome"] == outcome).collect()
    }

    /// Scale-to-zero records of `service` with `zero` (`frozen`, `woken`...).
    pub fn zero_records(&self, service: &str, zero: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|r| r["service"] == service && r["zero"] == zero).collect()
    }

    /// The audit log's size in bytes.
    pub fn audit_bytes(&self) -> u64 {
        std::fs::metadata(&self.audit_path).map_or(0, |m| m.len())
    }

    /// Send `signal` and wait up to 10 s for the end (then SIGKILL).
    pub fn signal(&mut self, signal: libc::c_int) {
        let Some(child) = self.child.as_mut() else { return };
        // SAFETY: signalling our own child, by its pid.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, and wait for the end.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGTERM; the time until the process ended (panics after 10 s).
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        self.stop();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{}: SIGTERM not honoured within 10 s:\n{}", self.name, self.log());
        took
    }

    /// The exit status once the daemon ended on its own, within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.exited() {
            self.stop();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} log (last 60 lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Builder {
    /// The policies folder.
    pub fn policies(mut self, folder: &Path) -> Builder {
        self.policies = folder.to_path_buf();
        self
    }

    /// More flags.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: &[S]) -> Builder {
        self.args.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// A compile cache of its own, removed with it.
    pub fn own_cache(mut self) -> Builder {
        self.own_cache = true;
        self
    }

    /// The audit log at `path` (a restarted daemon appends to the same file).
    pub fn audit_log(mut self, path: &Path) -> Builder {
        self.audit = Some(path.to_path_buf());
        self
    }

    /// An environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Builder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Run on node `k` of the test cluster (`--cluster`, in the node's
    /// network namespace, against its engine, metrics on its address).
    pub fn on_node(mut self, cluster: &Cluster, k: u32) -> Builder {
        self.node = Some((k, cluster.addr(k).to_string(), cluster.docker_host(k).to_string()));
        self
    }

    /// Start the daemon; does not wait.
    pub fn spawn(self) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("host.log")).expect("log file");
        let (mut command, addr, metrics_port, name) = match &self.node {
            Some((k, addr, _)) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net=/var/run/netns/sacl-n{k}")).arg(env!("CARGO_BIN_EXE_host"));
                // Metrics on the node's address, so this process reaches them.
                command.args(["--cluster", "--metrics-addr", "0.0.0.0:9464"]);
                (command, addr.clone(), 9464, format!("node{k} host"))
            }
            None => {
                let port = free_port();
                let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
                command.arg("--metrics-addr").arg(format!("127.0.0.1:{port}"));
                (command, "127.0.0.1".to_string(), port, "host".to_string())
            }
        };
        let audit_path = self.audit.clone().unwrap_or_else(|| dir.path().join("audit.jsonl"));
        command
            .current_dir(repo())
            .arg("--policies")
            .arg(&self.policies)
            .arg("--audit-log")
            .arg(&audit_path)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        match &self.node {
            Some((_, _, docker_host)) => command.env("DOCKER_HOST", docker_host),
            None => command.env_remove("DOCKER_HOST"),
        };
        if self.own_cache {
            command.arg("--cache-dir").arg(dir.path().join("cache"));
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start host");
        Daemon { child: Some(child), dir, addr, metrics_port, name, audit_path }
    }

    /// Start the daemon and wait until it is ready (`/readyz`): it read
    /// Swarm and its policies folder (a worker: its probe and agent run).
    pub fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_ready(Duration::from_secs(60));
        daemon
    }
}
