//! The test kit: what every integration test binary shares, written once
//! (each one declares `mod common;`).
//!
//! - [`daemon`]: the built `host` binary as a child process (in a test
//!   cluster node's network namespace, if asked), waited on through its own
//!   `/readyz` and `/status`, never by reading its log; stopped by pid; its
//!   log, audit log and metrics read back, its log shown when a test fails.
//! - [`service`]: a Swarm service of the demo image, created with labels,
//!   waited on until its replicas run, removed on drop.
//! - [`load`]: closed-loop HTTP load on the demo workload.
//! - [`cluster`]: the 3-node test swarm of `tests/cluster/up.sh`.
//! - [`policy`]: built components and the test compile cache, for tests
//!   that call the policy runtime directly.
//!
//! A test that cannot run here (no root, no dockerd, no Swarm, no test
//! cluster) says so through [`skip`], the same loud line in every binary;
//! missing build outputs (the demo image, the policies) fail instead: the
//! test command builds them.

#![allow(dead_code, unused_imports, reason = "each test binary uses its own part of the kit")]

pub mod cluster;
pub mod daemon;
pub mod load;
pub mod policy;
pub mod service;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use daemon::Daemon;
pub use load::Load;
pub use service::Service;

/// The demo workload's image (examples/demo/build-image.sh).
pub const IMAGE: &str = "swarm-autoscaler-demo:local";

/// One test at a time within a binary: the tests share the Swarm, dockerd
/// and two CPU cores. (Binaries take turns through the lock tests/run.sh
/// holds.)
static SERIAL: Mutex<()> = Mutex::new(());

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

/// The `host` binary Cargo built for these tests.
pub fn host_exe() -> &'static str {
    env!("CARGO_BIN_EXE_host")
}

/// A Cargo target folder for Rust policy projects that survives runs
/// (tests/scaffold.rs and tests/policy_snippets.rs: the SDK and wit-bindgen
/// compile once), apart from the one `cargo test` itself locks.
pub fn rust_target() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("scaffold"),
        None => repo().join("target/scaffold"),
    }
}

/// This test's name as libtest gives it (the thread's name), else the
/// binary's.
pub fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" => format!("{}::{name}", env!("CARGO_CRATE_NAME")),
        _ => env!("CARGO_CRATE_NAME").to_string(),
    }
}

/// Say loudly that this test cannot run here, and why. Straight to the
/// process's stderr: libtest captures the output of passing tests, and a
/// skip must be seen.
pub fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {}: {reason} ***\n", test_name());
}

/// Whether this process runs as root; if not, says loudly that this test
/// skips because it loads eBPF programs and runs containers (CI runs it as
/// root).
pub fn root_or_skip() -> bool {
    let root = is_root();
    if !root {
        skip("it loads eBPF programs and runs containers, which needs root (CI runs it as root)");
    }
    root
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Why this machine cannot run tests against the local Swarm, if it cannot.
pub fn local_swarm_missing() -> Option<String> {
    if !is_root() {
        return Some("not running as root (needs dockerd, a Swarm manager and eBPF rights)".into());
    }
    match Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])
        .output()
    {
        Err(err) => Some(format!("no docker client: {err}")),
        Ok(out) if !out.status.success() => {
            Some("no docker engine answers; run examples/setup.sh as root (tests/run.sh does)".into())
        }
        Ok(out) => {
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (state != "active true")
                .then(|| format!("docker is not a swarm manager (swarm: {state}); run examples/setup.sh"))
        }
    }
}

/// The machine for one test against the local Swarm: the binary's lock
/// taken, root and a Swarm manager checked (`None`: skipped, said why),
/// the demo image present, and the services a killed run left (names
/// starting with `prefix`) removed.
pub fn local_swarm(prefix: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reason) = local_swarm_missing() {
        skip(&reason);
        return None;
    }
    let image = Command::new("docker").args(["image", "inspect", IMAGE]).output().expect("docker");
    assert!(
        image.status.success(),
        "image {IMAGE} is missing: build it with examples/demo/build-image.sh (tests/run.sh does)"
    );
    // Leftovers of an interrupted run would be scaled by our daemons too.
    let out = docker(&["service", "ls", "--filter", &format!("name={prefix}"), "--format", "{{.Name}}"]);
    for name in out.lines().filter(|n| n.starts_with(prefix)) {
        let _ = Command::new("docker").args(["service", "rm", name]).output();
    }
    Some(guard)
}

/// The shipped policies, checked to be built.
pub fn shipped_policies() -> PathBuf {
    for policy in ["threshold", "proportional"] {
        let file = repo().join("policies").join(format!("{policy}.wasm"));
        assert!(file.is_file(), "{} is missing: run policies/build.sh (tests/run.sh does)", file.display());
    }
    repo().join("policies")
}

/// Run the docker CLI against the local engine; panics with its stderr on
/// failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).env_remove("DOCKER_HOST").output().expect("run docker");
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run the docker CLI against `host` (a `DOCKER_HOST`; `None`: the local
/// engine); `None` on failure.
pub fn docker_at(host: Option<&str>, args: &[&str]) -> Option<String> {
    let mut command = Command::new("docker");
    command.args(args);
    match host {
        Some(host) => command.env("DOCKER_HOST", host),
        None => command.env_remove("DOCKER_HOST"),
    };
    let out = command.output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Poll `done` every 100 ms until it holds; panics after `timeout`. How
/// long it took.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Time since the Unix epoch.
pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970")
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    unix_now().as_millis() as u64
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One `GET path` on `addr:port` with `Connection: close`, waiting at most
/// `timeout` for the answer: its status code and body.
pub fn http_get(addr: &str, port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((addr, port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// One GET on 127.0.0.1:port; the body, if any.
pub fn request(port: u16, path: &str) -> Option<String> {
    http_get("127.0.0.1", port, path, Duration::from_secs(15)).map(|(_, body)| body)
}

/// The sum of every Prometheus sample in `metrics` whose line starts with
/// `prefix` (a name, or a name with some of its labels).
pub fn counter(metrics: &str, prefix: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// The value of the first sample in `metrics` whose line starts with
/// `prefix`, if there is one.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}
