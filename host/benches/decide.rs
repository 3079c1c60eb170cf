//! `cargo bench -p host --bench decide`: the cost of one `decide` call through
//! the policy runtime (event and service-view conversion, lowering into the
//! component, the policy's own logic, lifting the decision) for each shipped
//! policy, with the state a 3-replica service carries (contract 1.0: the
//! service's id and name, its parsed settings and one aggregate per metric
//! on every call), and the events per second one core sustains.
//!
//! Beside them, in the same run: an empty policy (the boundary alone:
//! `tests/fixtures/out/empty.wasm`) and the threshold rule compiled
//! natively (the same crate, linked into this benchmark), so that the
//! overhead reads as a ratio on any machine.
//!
//! The state above (cpu, memory, connections) is the one the bar is
//! set on. The daemon passes more: every tracked container also reports
//! `queue`, `inflight` and `request-rate` (zeros for a service that serves
//! no requests), and a service answering requests adds three response-time
//! percentiles. So the threshold policy is also measured on those two
//! shapes (`state=daemon-6`, `state=daemon-9`), in the same run.
//!
//! Prints `decide_ns_median=<n> policy=<name>`, `events_per_sec=<n>`, the
//! ratios, and the machine. Needs `policies/build.sh` and
//! `tests/fixtures/build.sh` to have run.
//!
//! `DECIDE_COMPARE=name=file.wasm[,name=file.wasm...]` measures more
//! components in the same run, after these (for example a policy built
//! before a change: `DECIDE_COMPARE=threshold-old=/tmp/threshold.wasm`).
//!
//! Wall-clock figures move with whatever else the machine runs. With
//! `DECIDE_CALLS=N DECIDE_POLICY=<name>` the benchmark makes exactly N calls
//! of that one policy (`threshold-native` for the native rule) and prints
//! nothing (`DECIDE_STATE=daemon-6` or `daemon-9` for those shapes):
//! `host/benches/decide-instructions.sh` runs it so under
//! valgrind and prints instructions per call, which another process on the
//! machine does not change.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use autoscaler_sdk::Policy as _;
use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
use host::model::{Event, Metric, State, Unit};
use host::policy::{Runtime, RuntimeConfig};

const BATCH: usize = 2_000;
const BATCHES: usize = 101;

/// The labels of the benchmark's service (settings for both shipped policies).
const LABELS: [(&str, &str); 4] =
    [("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("cpu.target", "0.5"), ("cooldown.up", "3s")];

/// The state of a busy 3-replica service, as the daemon passes it (its
/// settings are parsed for each policy).
fn service_state() -> State {
    State::replicas(3, 1, 10)
        .of("k3l9x0c2v8b7n6m5", "demo_web")
        .with_cpu(&[0.7, 0.75, 0.4])
        .with_metric(Metric::MEMORY, Unit::Bytes, &[2.0e8, 2.1e8, 1.9e8], 0)
        .with_metric(Metric::CONNECTIONS, Unit::Count, &[12.0, 9.0, 3.0], 1)
}

/// The state the daemon passes for the same service: the three metrics
/// above, the demand metrics every tracked container reports, and with
/// `serving` the response-time percentiles of a service answering requests.
fn daemon_state(serving: bool) -> State {
    let state = service_state()
        .with_metric(Metric::named("queue"), Unit::Count, &[0.0, 1.0, 0.0], 0)
        .with_metric(Metric::named("inflight"), Unit::Count, &[4.0, 3.0, 1.0], 0)
        .with_metric(Metric::named("request-rate"), Unit::PerSecond, &[120.0, 95.0, 40.0], 0);
    if !serving {
        return state;
    }
    state
        .with_metric(Metric::named("response-time-p50"), Unit::Seconds, &[0.012, 0.011, 0.008], 0)
        .with_metric(Metric::named("response-time-p95"), Unit::Seconds, &[0.041, 0.038, 0.02], 0)
        .with_metric(Metric::named("response-time-p99"), Unit::Seconds, &[0.09, 0.07, 0.03], 0)
}

/// Median ns per call over `BATCHES` batches, and calls per second
/// sustained for one second.
fn measure(mut call: impl FnMut(u64)) -> (f64, f64) {
    let mut i = 0u64;
    for _ in 0..BATCH * 5 {
        i += 1;
        call(i);
    }
    let mut per_call = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..BATCH {
            i += 1;
            call(i);
        }
        per_call.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let median = common::percentile(&mut per_call, 50);
    let mut count = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            i += 1;
            call(i);
        }
        count += 1000;
    }
    (median, count as f64 / started.elapsed().as_secs_f64())
}

/// `DECIDE_CALLS` and `DECIDE_POLICY`: count instructions of one policy.
struct Counting {
    calls: u64,
    policy: String,
}

impl Counting {
    fn from_env() -> Option<Counting> {
        let calls = std::env::var("DECIDE_CALLS").ok()?.parse().ok()?;
        Some(Counting { calls, policy: std::env::var("DECIDE_POLICY").unwrap_or_else(|_| "threshold".into()) })
    }
}

fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root");
    let counting = Counting::from_env();
    if counting.is_none() {
        println!("machine: {}", common::machine());
    }
    // A generous time limit: on a busy machine a call descheduled for 10 ms
    // would end the run; the limit does not change what a call costs.
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        time_limit: Duration::from_secs(1),
        ..RuntimeConfig::default()
    })?;
    // `DECIDE_STATE=daemon-6|daemon-9`: every measurement (and the count)
    // on that shape instead.
    let base = match std::env::var("DECIDE_STATE").as_deref() {
        Ok("daemon-6") => daemon_state(false),
        Ok("daemon-9") => daemon_state(true),
        _ => service_state(),
    };
    let mut medians = Vec::new();
    let mut components: Vec<(String, std::path::PathBuf)> = [
        ("threshold", "policies/threshold.wasm"),
        ("proportional", "policies/proportional.wasm"),
        ("empty", "tests/fixtures/out/empty.wasm"),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_string(), repo.join(path)))
    .collect();
    let own = components.len();
    for extra in std::env::var("DECIDE_COMPARE").unwrap_or_default().split(',').filter(|e| !e.is_empty()) {
        let (name, path) =
            extra.split_once('=').ok_or_else(|| anyhow::anyhow!("DECIDE_COMPARE: {extra:?} is not name=file.wasm"))?;
        components.push((name.to_string(), path.into()));
    }
    for (name, file) in &components {
        let name = name.as_str();
        if counting.as_ref().is_some_and(|c| c.policy != name) {
            continue;
        }
        let bytes = std::fs::read(file).map_err(|e| {
            anyhow::anyhow!("{}: {e}; run policies/build.sh and tests/fixtures/build.sh first", file.display())
        })?;
        let compile_started = Instant::now();
        let mut policy = runtime.load(name, &bytes)?;
        let load_ms = compile_started.elapsed().as_secs_f64() * 1e3;
        // A second load hits the compile cache: what remains is validating
        // the world, instantiating and asking for the settings.
        let mut instantiate_us: Vec<f64> = (0..21)
            .map(|_| {
                let started = Instant::now();
                runtime.load(name, &bytes).map(|_| started.elapsed().as_secs_f64() * 1e6)
            })
            .collect::<Result<_, _>>()?;
        let instantiate_us = common::percentile(&mut instantiate_us, 50);
        // The daemon resolves settings once per service and policy version.
        let mut state = base.clone().with_settings(policy.resolve(&LABELS)?);
        // Values sweep through the band so the policy takes every branch.
        let event = |i: u64| {
            Event::cpu((i % 100) as f64 / 100.0).of(
                "4f1c0a7d2b9e4c3aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718",
                "k3l9x0c2v8b7n6m5",
                "demo_web",
            )
        };
        if let Some(counting) = &counting {
            for i in 0..counting.calls {
                state.metrics[0].value.mean = (i % 100) as f64 / 100.0;
                policy.decide(&event(i), &state)?;
            }
            return Ok(());
        }
        let mut failed = None;
        let (median, per_sec) = measure(|i| {
            state.metrics[0].value.mean = (i % 100) as f64 / 100.0;
            if let Err(err) = policy.decide(&event(i), &state) {
                failed = Some(err);
            }
        });
        if let Some(err) = failed {
            anyhow::bail!("{err}");
        }
        println!(
            "policy={name} contract={} compile_ms={load_ms:.1} cached_load_and_instantiate_us_median={instantiate_us:.0} size_bytes={}",
            policy.contract_version(),
            bytes.len()
        );
        println!("decide_ns_median={median:.0} policy={name}");
        println!("events_per_sec={per_sec:.0} policy={name}");
        medians.push((name, median, per_sec));
        if name == "threshold" {
            for (shape, serving) in [("daemon-6", false), ("daemon-9", true)] {
                let mut state = daemon_state(serving).with_settings(policy.resolve(&LABELS)?);
                let (median, _) = measure(|i| {
                    state.metrics[0].value.mean = (i % 100) as f64 / 100.0;
                    if let Err(err) = policy.decide(&event(i), &state) {
                        failed = Some(err);
                    }
                });
                if let Some(err) = failed.take() {
                    anyhow::bail!("{err}");
                }
                println!("decide_ns_median={median:.0} policy={name} state={shape} metrics={}", state.metrics.len());
            }
        }
    }

    // The threshold rule compiled natively: the same crate, called directly
    // on the SDK's types (building the event and cloning the state is
    // counted, as lowering is counted on the wasm side).
    let native_state = StateBuilder::new()
        .replicas(3, 1, 10)
        .cpu(&[0.7, 0.75, 0.4])
        .memory(&[2.0e8, 2.1e8, 1.9e8])
        .connections(&[12.0, 9.0, 3.0])
        .label("cpu.upper", "0.8")
        .label("cpu.lower", "0.2")
        .service("demo_web")
        .build_for::<threshold::Threshold>();
    let native_call = |i: u64| {
        let mut state = native_state.clone();
        if let Some(cpu) = state.metric_mut("cpu") {
            cpu.value.mean = (i % 100) as f64 / 100.0;
        }
        let event = EventBuilder::cpu((i % 100) as f64 / 100.0).container("c1").build();
        std::hint::black_box(threshold::Threshold::decide(event, state));
    };
    if let Some(counting) = &counting {
        (0..counting.calls).for_each(native_call);
        return Ok(());
    }
    let (native, native_per_sec) = measure(native_call);
    println!("decide_ns_median={native:.0} policy=threshold-native");
    println!("events_per_sec={native_per_sec:.0} policy=threshold-native");

    let of = |name: &str| medians.iter().find(|(n, ..)| *n == name).map(|(_, m, _)| *m).unwrap_or(f64::NAN);
    let (threshold, empty) = (of("threshold"), of("empty"));
    println!(
        "ratio threshold/native={:.1} boundary_share={:.0}% (empty {empty:.0} ns of threshold {threshold:.0} ns)",
        threshold / native,
        100.0 * empty / threshold
    );
    for (name, median, per_sec) in &medians {
        // The targets are for the shipped policies.
        if name.starts_with("empty") || components[own..].iter().any(|(extra, _)| extra == name) {
            continue;
        }
        println!(
            "target {name}: under 2000 ns per call ({}), over 300000 events/s ({})",
            if *median < 2000.0 { "met" } else { "MISSED" },
            if *per_sec > 300_000.0 { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
