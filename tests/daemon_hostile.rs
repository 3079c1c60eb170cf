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

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use common::service::Containers;
use common::{Daemon, IMAGE, Service, counter, docker, repo, wait_until};

/// The local Swarm for one test (`None`: skipped, said why).
fn setup() -> Option<MutexGuard<'static, ()>> {
    common::local_swarm("hostile-")
}

/// A service running the demo image, using `policy` (a copy of the
/// misbehave fixture) with `autoscale.fault=FAULT` and `more` labels.
fn service(name: &str, policy: &str, fault: &str, max: u32, more: &[(&str, &str)]) -> Service {
    let (policy, fault, max) = (policy.to_string(), fault.to_string(), max.to_string());
    let labels = [
        ("autoscale.enable", "true"),
        ("autoscale.policy", policy.as_str()),
        ("autoscale.min", "1"),
        ("autoscale.max", max.as_str()),
        ("autoscale.fault", fault.as_str()),
        ("autoscale.cooldown.up", "0"),
    ];
    Service::spec(&format!("hostile-{name}")).labels(&labels).labels(more).create()
}

/// The daemon on `policies` with the cgroupfs probe (a steady event stream
/// without load) and `probe` timing flags, its own compile cache; ready.
fn daemon(policies: &Path, probe: &[&str]) -> Daemon {
    Daemon::builder().policies(policies).own_cache().args(&["--probe", "cgroupfs"]).args(probe).start()
}

/// The reason the policy gave in its latest decision for `service`, as
/// `/status` shows it: every call's, where the audit log writes a run of
/// identical skips once.
fn last_reason(daemon: &Daemon, service: &str) -> Option<String> {
    daemon.service(service).and_then(|s| s["last-decision"]["reason"].as_str().map(str::to_string))
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

#[test]
fn sleeping_policy_leaves_metrics_other_services_and_sigterm_working() {
    let Some(_serial) = setup() else { return };
    let folder = policies(&["sleepy", "steady"]);
    let sleepy = service("sleepy", "sleepy", "sleep", 3, &[]);
    let steady = service("steady", "steady", "none", 2, &[]);
    let mut daemon = daemon(folder.path(), &["--interval", "300ms"]);
    // The sleepy policy is called (and cut) every probe interval.
    wait_until("timeouts of the sleepy policy", Duration::from_secs(30), || {
        counter(
            &daemon.get_within("/metrics", Duration::from_secs(2)),
            "autoscaler_policy_failures_total{policy=\"sleepy\",kind=\"timeout\"}",
        ) >= 1.0
    });
    // Meanwhile every scrape answers quickly, and the other service is decided.
    for _ in 0..10 {
        daemon.get_within("/metrics", Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = daemon.get_within("/metrics", Duration::from_secs(1));
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
    let Some(_serial) = setup() else { return };
    let folder = policies(&["verbose"]);
    let service = service("verbose", "verbose", "huge-reason", 2, &[]);
    let mut daemon = daemon(folder.path(), &["--interval", "300ms"]);
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
    let Some(_serial) = setup() else { return };
    let folder = policies(&["good"]);
    let fifo =
        std::ffi::CString::new(folder.path().join("x.wasm").into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let mut daemon = daemon(folder.path(), &["--interval", "300ms"]);
    assert!(daemon.log().contains("not a regular file"), "the FIFO is refused with a reason");
    let metrics = daemon.get_within("/metrics", Duration::from_secs(1));
    assert!(counter(&metrics, "autoscaler_policy_loads_total") >= 1.0, "{metrics}");
    // A second FIFO while running.
    let fifo2 =
        std::ffi::CString::new(folder.path().join("y.wasm").into_os_string().into_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo2.as_ptr(), 0o644) }, 0);
    wait_until("the second FIFO refused", Duration::from_secs(5), || {
        counter(&daemon.scrape(), "autoscaler_policy_failures_total{policy=\"y\"") >= 1.0
    });
    assert!(daemon.log().matches("not a regular file").count() >= 2, "each FIFO is refused with a reason");
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn idle_connections_do_not_take_the_metrics_endpoint_down() {
    let Some(_serial) = setup() else { return };
    let folder = policies(&["good"]);
    let mut daemon = daemon(folder.path(), &["--interval", "300ms"]);
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
    let Some(_serial) = setup() else { return };
    let folder = policies(&["slow", "steady"]);
    // Three busy services on a policy that takes 8 ms per call (legal: the
    // limit is 10 ms), one on a fast policy. Every container reports every
    // 20 ms, so the slow policy is offered far more than it can do.
    let slow: Vec<Service> =
        ["slow-a", "slow-b", "slow-c"].iter().map(|n| service(n, "slow", "slow", 1, &[])).collect();
    let steady = service("fast", "steady", "none", 2, &[]);
    let mut daemon = daemon(folder.path(), &["--interval", "20ms", "--sample-interval", "20ms"]);
    let decisions = |metrics: &str, policy: &str| {
        counter(metrics, &format!("autoscaler_decisions_total{{policy=\"{policy}\","))
            + counter(metrics, &format!("autoscaler_policy_failures_total{{policy=\"{policy}\","))
    };
    wait_until("both policies deciding", Duration::from_secs(30), || {
        let m = daemon.get_within("/metrics", Duration::from_secs(2));
        decisions(&m, "slow") >= 10.0 && decisions(&m, "steady") >= 10.0
    });
    let before = daemon.get_within("/metrics", Duration::from_secs(2));
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let after = daemon.get_within("/metrics", Duration::from_secs(2));
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
    let Some(_serial) = setup() else { return };
    let folder = policies(&["counted"]);
    let service = service("counted", "counted", "report", 3, &[("autoscale.warmup", "0s")]);
    let mut daemon = daemon(folder.path(), &["--interval", "200ms", "--sample-interval", "200ms"]);
    let reasons = |daemon: &Daemon| -> Vec<String> {
        daemon.audit().iter().filter_map(|r| r["reason"].as_str().map(str::to_string)).collect()
    };
    wait_until("the view to count the one replica", Duration::from_secs(30), || {
        last_reason(&daemon, &service.name).is_some_and(|r| r == "reporting 1 warming 0")
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
    let _cleanup = Containers(forged.clone());
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
        seen.extend(last_reason(&daemon, &service.name));
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
