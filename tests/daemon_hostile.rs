//! Hostile policies and folder contents against the real daemon on the local
//! Swarm (issue 10): the built `host` binary runs as a child with a policies
//! folder of the test's making, the cgroupfs probe (a steady event stream
//! without load), and its own metrics port and audit log.
//!
//! Each test asserts what an operator would check: `/metrics` keeps
//! answering, other services are still decided, replicas stay in
//! [min, max], the audit log stays bounded, and SIGTERM ends the daemon
//! within a few seconds. Root and a Swarm manager are needed (tests/run.sh
//! provides both); elsewhere each test says loudly why it skips.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const IMAGE: &str = "swarm-autoscaler-demo:local";
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn setup(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: geteuid has no preconditions.
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root (needs dockerd and a Swarm manager)".to_string())
    } else {
        let out = Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]).output();
        match out {
            Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "active" => None,
            _ => Some("docker is not a swarm manager; run examples/setup.sh (tests/run.sh does)".to_string()),
        }
    };
    if let Some(reason) = reason {
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED daemon_hostile::{test}: {reason} ***\n");
        return None;
    }
    let image = Command::new("docker").args(["image", "inspect", IMAGE]).output().expect("docker");
    assert!(image.status.success(), "image {IMAGE} is missing: run examples/demo/build-image.sh");
    Some(guard)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A service running the demo image with the misbehave policy under `policy`.
struct Service {
    name: String,
}

impl Service {
    fn create(name: &str, policy: &str, fault: &str, max: u32) -> Service {
        Service::create_with(name, policy, fault, max, &[])
    }

    /// Like [`Service::create`], with more labels.
    fn create_with(name: &str, policy: &str, fault: &str, max: u32, more: &[&str]) -> Service {
        let name = format!("hostile-{name}");
        let _ = Command::new("docker").args(["service", "rm", &name]).output();
        let labels = [
            "autoscale.enable=true".to_string(),
            format!("autoscale.policy={policy}"),
            "autoscale.min=1".to_string(),
            format!("autoscale.max={max}"),
            format!("autoscale.fault={fault}"),
            "autoscale.cooldown.up=0".to_string(),
        ]
        .into_iter()
        .chain(more.iter().map(|l| l.to_string()))
        .collect::<Vec<_>>();
        let mut args = vec!["service", "create", "--detach", "--quiet", "--name", &name];
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        args.push(IMAGE);
        docker(&args);
        let service = Service { name };
        wait_until(&format!("{} to run", service.name), Duration::from_secs(60), || {
            docker(&[
                "service",
                "ps",
                &service.name,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ])
            .lines()
            .any(|l| l.starts_with("Running"))
        });
        service
    }

    /// The service's id.
    fn id(&self) -> String {
        docker(&["service", "inspect", &self.name, "--format", "{{.ID}}"])
    }

    /// The labels of the running container of one of its tasks.
    fn task_labels(&self) -> Vec<(String, String)> {
        let container =
            docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={}", self.name)]);
        let container = container.lines().next().expect("a running task container").to_string();
        let json = docker(&["inspect", &container, "--format", "{{json .Config.Labels}}"]);
        let labels: std::collections::BTreeMap<String, String> = serde_json::from_str(&json).expect("labels");
        labels.into_iter().filter(|(k, _)| k.starts_with("com.docker.swarm.")).collect()
    }

    fn replicas(&self) -> u32 {
        docker(&["service", "inspect", &self.name, "--format", "{{.Spec.Mode.Replicated.Replicas}}"])
            .parse()
            .expect("replicas")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["service", "rm", &self.name]).output();
    }
}

struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    metrics_port: u16,
}

impl Daemon {
    /// Start the daemon on `policies` with the cgroupfs probe every 300 ms;
    /// waits until it follows Docker.
    fn start(policies: &Path) -> Daemon {
        Daemon::start_with(policies, &["--interval", "300ms"])
    }

    /// Start the daemon on `policies` with the cgroupfs probe and `probe`
    /// timing flags; waits until it follows Docker.
    fn start_with(policies: &Path, probe: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("host.log")).expect("log file");
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(env!("CARGO_BIN_EXE_host"))
            .arg("--policies")
            .arg(policies)
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--probe", "cgroupfs"])
            .args(probe)
            .env("RUST_LOG", "info")
            .env_remove("DOCKER_HOST")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start host");
        let mut daemon = Daemon { child: Some(child), dir, metrics_port };
        let start = Instant::now();
        while !daemon.log().contains("following docker events") {
            assert!(!daemon.exited(), "host exited at startup:\n{}", daemon.log());
            assert!(start.elapsed() < Duration::from_secs(60), "host did not start:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// One scrape; panics unless answered 200 within `within`.
    fn scrape(&self, within: Duration) -> String {
        self.get("/metrics", within)
    }

    /// `GET path` on the metrics endpoint; panics unless answered 200
    /// within `within`. The whole response, head included.
    fn get(&self, path: &str, within: Duration) -> String {
        let started = Instant::now();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("connect");
        conn.set_read_timeout(Some(within)).expect("timeout");
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        conn.read_to_string(&mut response).expect("a response in time");
        assert!(started.elapsed() <= within, "GET {path} took {:?}", started.elapsed());
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// The reason the policy gave in its latest decision for `service`, as
    /// `/status` shows it: every call's, where the audit log writes a run
    /// of identical skips once.
    fn last_reason(&self, service: &str) -> Option<String> {
        let response = self.get(&format!("/status/{service}"), Duration::from_secs(5));
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let status: serde_json::Value = serde_json::from_str(body).ok()?;
        status["services"][0]["last-decision"]["reason"].as_str().map(str::to_string)
    }

    fn audit_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("audit.jsonl")).map_or(0, |m| m.len())
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// SIGTERM; the time until the process ended (panics after 10 s).
    fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("SIGTERM not honoured within 10 s:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            eprintln!("--- host log (last 40 lines) ---");
            for line in log.lines().rev().take(40).collect::<Vec<_>>().iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn policies(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let misbehave = repo().join("tests/fixtures/out/misbehave.wasm");
    let bytes = std::fs::read(&misbehave)
        .unwrap_or_else(|e| panic!("{}: {e}; run tests/fixtures/build.sh", misbehave.display()));
    for name in names {
        std::fs::write(dir.path().join(format!("{name}.wasm")), &bytes).expect("write policy");
    }
    dir
}

fn counter(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[test]
fn sleeping_policy_leaves_metrics_other_services_and_sigterm_working() {
    let Some(_serial) = setup("sleeping_policy_leaves_metrics_other_services_and_sigterm_working") else { return };
    let folder = policies(&["sleepy", "steady"]);
    let sleepy = Service::create("sleepy", "sleepy", "sleep", 3);
    let steady = Service::create("steady", "steady", "none", 2);
    let mut daemon = Daemon::start(folder.path());
    // The sleepy policy is called (and cut) every probe interval.
    wait_until("timeouts of the sleepy policy", Duration::from_secs(30), || {
        counter(
            &daemon.scrape(Duration::from_secs(2)),
            "autoscaler_policy_failures_total{policy=\"sleepy\",kind=\"timeout\"}",
        ) >= 1.0
    });
    // Meanwhile every scrape answers quickly, and the other service is decided.
    for _ in 0..10 {
        daemon.scrape(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = daemon.scrape(Duration::from_secs(1));
    assert!(
        counter(&metrics, "autoscaler_decisions_total{policy=\"steady\",outcome=\"decision\"}") >= 1.0,
        "{metrics}"
    );
    wait_until("the steady service to reach its max", Duration::from_secs(30), || steady.replicas() == 2);
    assert_eq!(sleepy.replicas(), 1, "a policy that only fails changes nothing");
    assert!(daemon.log().contains("sleep or poll"), "the failure names its cause");
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn huge_reasons_keep_the_audit_log_bounded() {
    let Some(_serial) = setup("huge_reasons_keep_the_audit_log_bounded") else { return };
    let folder = policies(&["verbose"]);
    let service = Service::create("verbose", "verbose", "huge-reason", 2);
    let mut daemon = Daemon::start(folder.path());
    wait_until("audit records", Duration::from_secs(30), || !daemon.audit().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let records = daemon.audit();
    let bytes = daemon.audit_bytes();
    assert!(bytes / records.len() as u64 <= 4096, "{bytes} bytes for {} records", records.len());
    for record in &records {
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(reason.len() <= 1024 && reason.ends_with("(cut)"), "reason of {} bytes", reason.len());
    }
    let replicas = service.replicas();
    assert!((1..=2).contains(&replicas), "replicas {replicas} outside [1, 2]");
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn fifo_in_the_folder_neither_blocks_start_nor_shutdown() {
    let Some(_serial) = setup("fifo_in_the_folder_neither_blocks_start_nor_shutdown") else { return };
    let folder = policies(&["good"]);
    let fifo =
        std::ffi::CString::new(folder.path().join("x.wasm").into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let mut daemon = Daemon::start(folder.path());
    assert!(daemon.log().contains("not a regular file"), "the FIFO is refused with a reason");
    let metrics = daemon.scrape(Duration::from_secs(1));
    assert!(counter(&metrics, "autoscaler_policy_loads_total") >= 1.0, "{metrics}");
    // A second FIFO while running.
    let fifo2 =
        std::ffi::CString::new(folder.path().join("y.wasm").into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo2.as_ptr(), 0o644) }, 0);
    wait_until("the second FIFO refused", Duration::from_secs(5), || {
        daemon.log().matches("not a regular file").count() >= 2
    });
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn idle_connections_do_not_take_the_metrics_endpoint_down() {
    let Some(_serial) = setup("idle_connections_do_not_take_the_metrics_endpoint_down") else { return };
    let folder = policies(&["good"]);
    let mut daemon = Daemon::start(folder.path());
    let idle: Vec<std::net::TcpStream> =
        (0..200).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", daemon.metrics_port)).ok()).collect();
    assert!(idle.len() >= 100, "only {} connections", idle.len());
    // Within the request timeout the idle ones are cut and scrapes succeed.
    let started = Instant::now();
    wait_until("a successful scrape", Duration::from_secs(8), || {
        let mut conn = match std::net::TcpStream::connect(("127.0.0.1", daemon.metrics_port)) {
            Ok(conn) => conn,
            Err(_) => return false,
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    });
    println!("scrape answered {:?} after 200 idle connections", started.elapsed());
    drop(idle);
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn slow_policy_delays_only_its_own_services() {
    let Some(_serial) = setup("slow_policy_delays_only_its_own_services") else { return };
    let folder = policies(&["slow", "steady"]);
    // Three busy services on a policy that takes 8 ms per call (legal: the
    // limit is 10 ms), one on a fast policy. Every container reports every
    // 20 ms, so the slow policy is offered far more than it can do.
    let slow: Vec<Service> =
        ["slow-a", "slow-b", "slow-c"].iter().map(|n| Service::create(n, "slow", "slow", 1)).collect();
    let steady = Service::create("fast", "steady", "none", 2);
    let mut daemon = Daemon::start_with(folder.path(), &["--interval", "20ms", "--sample-interval", "20ms"]);
    let decisions = |metrics: &str, policy: &str| {
        counter(metrics, &format!("autoscaler_decisions_total{{policy=\"{policy}\","))
            + counter(metrics, &format!("autoscaler_policy_failures_total{{policy=\"{policy}\","))
    };
    wait_until("both policies deciding", Duration::from_secs(30), || {
        let m = daemon.scrape(Duration::from_secs(2));
        decisions(&m, "slow") >= 10.0 && decisions(&m, "steady") >= 10.0
    });
    let before = daemon.scrape(Duration::from_secs(2));
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let after = daemon.scrape(Duration::from_secs(2));
    let slow_calls = decisions(&after, "slow") - decisions(&before, "slow");
    let steady_calls = decisions(&after, "steady") - decisions(&before, "steady");
    let coalesced = counter(&after, "autoscaler_events_coalesced_total");
    println!(
        "in {window:?}: slow policy {slow_calls} calls, steady policy {steady_calls} calls, coalesced {coalesced}"
    );
    // The slow policy is busy: its services' stale events were replaced by
    // newer ones instead of queueing.
    assert!(coalesced >= 1.0, "no event coalesced:\n{after}");
    assert!(slow_calls <= window.as_secs_f64() * 1000.0 / 8.0 * 1.1, "the slow policy ran {slow_calls} calls");
    // The fast policy kept up with its one service (one sample every 20 ms,
    // cpu and memory each), whatever the slow one did: at least a sample
    // every 100 ms on a loaded machine.
    assert!(
        steady_calls >= window.as_secs_f64() * 10.0,
        "the fast policy was starved: {steady_calls} calls in {window:?}\n{after}"
    );
    wait_until("the fast service to reach its max", Duration::from_secs(30), || steady.replicas() == 2);
    for service in &slow {
        assert_eq!(service.replicas(), 1, "{} left [1, 1]", service.name);
    }
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn forged_task_labels_are_not_counted() {
    let Some(_serial) = setup("forged_task_labels_are_not_counted") else { return };
    let folder = policies(&["counted"]);
    let service = Service::create_with("counted", "counted", "report", 3, &["autoscale.warmup=0s"]);
    let mut daemon = Daemon::start_with(folder.path(), &["--interval", "200ms", "--sample-interval", "200ms"]);
    let reasons = |daemon: &Daemon| -> Vec<String> {
        daemon.audit().iter().filter_map(|r| r["reason"].as_str().map(str::to_string)).collect()
    };
    wait_until("the view to count the one replica", Duration::from_secs(30), || {
        daemon.last_reason(&service.name).is_some_and(|r| r == "reporting 1 warming 0")
    });
    // Two containers started outside Swarm that claim to be the service's:
    // one copies the real task's labels, one names a task that does not exist.
    let mut forged = Vec::new();
    let mut labels = service.task_labels();
    assert!(labels.iter().any(|(k, v)| k == "com.docker.swarm.service.id" && *v == service.id()), "{labels:?}");
    for variant in ["copy", "made-up"] {
        if variant == "made-up" {
            for (key, value) in labels.iter_mut() {
                if key == "com.docker.swarm.task.id" {
                    *value = "0123456789abcdefghijklmno".to_string();
                }
            }
        }
        let mut args =
            vec!["run".to_string(), "-d".to_string(), "--name".to_string(), format!("hostile-forged-{variant}")];
        let _ = Command::new("docker").args(["rm", "-f", &format!("hostile-forged-{variant}")]).output();
        for (key, value) in &labels {
            args.extend(["--label".to_string(), format!("{key}={value}")]);
        }
        args.extend(["-e".to_string(), "PORT=18099".to_string(), IMAGE.to_string()]);
        forged.push(docker(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    let _cleanup = Forged(forged.clone());
    for id in &forged {
        wait_until("the forgery to be refused by name", Duration::from_secs(15), || {
            daemon.log().contains(&format!("container {id} carries the labels of service"))
        });
    }
    // For three view windows (3 x 3 samples) the view keeps counting one:
    // what the policy saw at each of its calls, sampled every 50 ms.
    let mut seen = Vec::new();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        seen.extend(daemon.last_reason(&service.name));
        std::thread::sleep(Duration::from_millis(50));
    }
    let latest: Vec<&String> = seen.iter().rev().take(5).collect();
    assert!(latest.len() == 5 && latest.iter().all(|r| *r == "reporting 1 warming 0"), "{latest:?}");
    assert!(!seen.iter().any(|r| r.starts_with("reporting 2") || r.starts_with("reporting 3")), "{seen:?}");
    // The audit log says the same (it writes each kind of skip once).
    let audited = reasons(&daemon);
    assert!(!audited.iter().any(|r| r.starts_with("reporting 2") || r.starts_with("reporting 3")), "{audited:?}");
    assert_eq!(service.replicas(), 1);
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

/// Removes the forged containers however the test ends.
struct Forged(Vec<String>);

impl Drop for Forged {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}
