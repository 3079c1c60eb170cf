//! Demand on the real Swarm: one step of load, from an idle replica to five
//! times what one replica should hold, and what each shipped policy does
//! about it (docs/demand.md).
//!
//! The service is the demo workload (examples/demo, one replica, host
//! network, half a CPU); the load is closed-loop clients each asking for
//! `/burn?ms=200`, one connection per request, no pause: `CLIENTS`
//! requests are in flight from the step on. One replica should hold
//! `TARGET` of them (the concurrency policy's `inflight.target`), so the
//! load needs `CLIENTS / TARGET` = 5 replicas.
//!
//! - `concurrency`: its first applied decision must be within one replica
//!   of 5 (asserted); the kernel's in-flight count says how much is asked,
//!   however far past saturation.
//! - `threshold` (`cpu.upper=0.6`) and `proportional` (`cpu.target=0.6`) on
//!   the same step: every replica sits at its CPU limit whatever the load,
//!   so they climb in rounds, one cooldown (the default 10 s) apart. The
//!   rounds and times until 4 and 5 replicas are printed (`demand_step ...`
//!   lines), not asserted: they are the comparison.
//!
//! Root, a Swarm manager and the demo image are needed; elsewhere it says
//! why it skips. It shares the machine's one Swarm and kernel: run it under
//! `flock /tmp/swarm-autoscaler-tests.lock`.

mod common;

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use common::{Daemon, Load, Service, unix_ms};
use serde_json::Value;

/// Requests in flight one replica should hold (`inflight.target`).
const TARGET: u32 = 2;
/// Replicas the step needs.
const NEEDED: u32 = 5;
/// Closed-loop clients of the step.
const CLIENTS: u32 = NEEDED * TARGET;
/// Wall time each request spins, ms.
const BURN_MS: u64 = 200;
/// Longest a CPU policy is watched climbing.
const CLIMB: Duration = Duration::from_secs(75);

fn setup() -> Option<MutexGuard<'static, ()>> {
    let guard = common::local_swarm("demand-")?;
    common::shipped_policies();
    for policy in ["concurrency", "latency"] {
        let file = common::repo().join("policies").join(format!("{policy}.wasm"));
        assert!(file.is_file(), "{} is missing: run policies/build.sh (tests/run.sh does)", file.display());
    }
    Some(guard)
}

/// A scale the daemon applied: replicas from, to, and seconds after the step.
#[derive(Debug, Clone)]
struct Applied {
    from: u64,
    to: u64,
    after_s: f64,
    reason: String,
}

/// Create `demand-<name>` with `labels`, start a daemon, wait until it
/// autoscales the service and has seen it idle for a while, then start the
/// step and watch until `done` says so (given the replicas in the spec and
/// the time since the step) or `limit` passes. Returns the scales applied
/// after the step.
fn step(name: &str, port: u16, labels: &[(&str, &str)], limit: Duration, done: impl Fn(u32) -> bool) -> Vec<Applied> {
    let web = Service::spec(&format!("demand-{name}")).port(port).labels(labels).create();
    let daemon = Daemon::builder().env("AUTOSCALER_BPF_PIN_DIR", "").start();
    daemon.wait_autoscaled(&web.name);
    // Idle samples first: the step must come on top of a quiet service.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(web.replicas(), 1, "{} scaled before the step", web.name);
    let step_ms = unix_ms();
    let started = Instant::now();
    let load = Load::on("127.0.0.1", web.port, CLIENTS as usize, BURN_MS, 0);
    while started.elapsed() < limit && !done(web.replicas()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = load.stop();
    assert!(served > 0, "{}: the load got no answers", web.name);
    daemon
        .audit_for(&web.name, "applied")
        .iter()
        .filter(|r| r["time_unix_ms"].as_u64().is_some_and(|t| t >= step_ms))
        .map(|r: &Value| Applied {
            from: r["from"].as_u64().unwrap_or(0),
            to: r["to"].as_u64().unwrap_or(0),
            after_s: (r["time_unix_ms"].as_u64().unwrap_or(step_ms) - step_ms) as f64 / 1e3,
            reason: r["reason"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// `demand_step` line: each applied scale, and the rounds (applied scales)
/// and seconds until the service had `NEEDED - 1` and `NEEDED` replicas.
fn describe(policy: &str, applied: &[Applied]) -> String {
    let reach = |n: u64| {
        applied
            .iter()
            .position(|a| a.to >= n)
            .map_or("not within the run".to_string(), |i| format!("{} round(s), {:.1} s", i + 1, applied[i].after_s))
    };
    let path: Vec<String> = applied.iter().map(|a| format!("{}->{} at {:.1} s", a.from, a.to, a.after_s)).collect();
    format!(
        "demand_step policy={policy} clients={CLIENTS} needed={NEEDED}: to {} replicas {}; to {NEEDED} {}; scales [{}]",
        NEEDED - 1,
        reach(u64::from(NEEDED - 1)),
        reach(u64::from(NEEDED)),
        path.join(", ")
    )
}

fn base_labels(policy: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("autoscale.enable", "true"), ("autoscale.policy", policy), ("autoscale.min", "1"), ("autoscale.max", "10")]
}

#[test]
fn a_step_to_five_times_a_replica_is_answered_in_one_decision_where_cpu_rules_climb() {
    let Some(_serial) = setup() else { return };

    let mut labels = base_labels("concurrency");
    labels.push(("autoscale.inflight.target", "2"));
    let concurrency = step("concurrency", 18151, &labels, Duration::from_secs(20), |replicas| replicas > 1);
    let report = describe("concurrency", &concurrency);
    eprintln!("{report}");
    let first = concurrency.first().unwrap_or_else(|| panic!("no scale applied within 20 s of the step: {report}"));
    eprintln!("demand_step concurrency first decision: {} ({:.1} s after the step)", first.reason, first.after_s);
    assert!(
        first.to.abs_diff(u64::from(NEEDED)) <= 1,
        "the first applied decision asked for {} replicas, the load needs {NEEDED}: {first:?}",
        first.to
    );

    let mut labels = base_labels("threshold");
    labels.extend([("autoscale.cpu.upper", "0.6"), ("autoscale.cpu.lower", "0.15")]);
    let threshold = step("threshold", 18161, &labels, CLIMB, |replicas| replicas >= NEEDED);
    eprintln!("{}", describe("threshold", &threshold));

    let mut labels = base_labels("proportional");
    labels.push(("autoscale.cpu.target", "0.6"));
    let proportional = step("proportional", 18171, &labels, CLIMB, |replicas| replicas >= NEEDED);
    eprintln!("{}", describe("proportional", &proportional));
    assert!(!threshold.is_empty() && !proportional.is_empty(), "a CPU rule never scaled under the step");
}
