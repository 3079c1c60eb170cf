//! `cargo bench -p host --bench decide`: the cost of one `decide` call through
//! the policy runtime (event conversion, lowering into the component, the
//! policy's own logic, lifting the decision) for each shipped policy, and the
//! events per second one core sustains.
//!
//! Prints `decide_ns_median=<n>` and `events_per_sec=<n>` lines per policy,
//! plus the machine it ran on. Needs `policies/build.sh` to have run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use host::model::{Event, EventKind, Metric, State, Unit};
use host::policy::{Runtime, RuntimeConfig};

const BATCH: usize = 2_000;
const BATCHES: usize = 101;

fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root");
    println!("machine: {}", common::machine());
    let runtime = Runtime::new(RuntimeConfig { cache_dir: None, ..RuntimeConfig::default() })?;
    let state = State {
        current_replicas: 3,
        min_replicas: 1,
        max_replicas: 10,
        settings: vec![
            ("cpu.upper".into(), "0.8".into()),
            ("cpu.lower".into(), "0.2".into()),
            ("cpu.target".into(), "0.5".into()),
            ("cooldown.up".into(), "3s".into()),
        ],
        ..State::default()
    };
    for name in ["threshold", "proportional"] {
        let file = repo.join("policies").join(format!("{name}.wasm"));
        let bytes = std::fs::read(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}; run policies/build.sh first", file.display()))?;
        let compile_started = Instant::now();
        let mut policy = runtime.load(name, &bytes)?;
        let load_ms = compile_started.elapsed().as_secs_f64() * 1e3;
        // A second load hits the compile cache: what remains is validating
        // the world and instantiating.
        let mut instantiate_us: Vec<f64> = (0..21)
            .map(|_| {
                let started = Instant::now();
                runtime.load(name, &bytes).map(|_| started.elapsed().as_secs_f64() * 1e6)
            })
            .collect::<Result<_, _>>()?;
        let instantiate_us = common::percentile(&mut instantiate_us, 50);

        // Values sweep through the band so the policy takes every branch.
        let mut i = 0u64;
        let mut next_event = || {
            i += 1;
            Event {
                metric: Metric::Cpu,
                value: (i % 100) as f64 / 100.0,
                unit: Unit::FractionOfLimit,
                kind: EventKind::Sample,
                container_id: "4f1c0a7d2b9e4c3aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718".into(),
                service_id: "k3l9x0c2v8b7n6m5".into(),
                service_name: "demo_web".into(),
                timestamp_ns: i,
            }
        };
        for _ in 0..BATCH * 5 {
            policy.decide(&next_event(), &state)?;
        }
        let mut per_call = Vec::with_capacity(BATCHES);
        for _ in 0..BATCHES {
            let events: Vec<Event> = (0..BATCH).map(|_| next_event()).collect();
            let started = Instant::now();
            for event in &events {
                std::hint::black_box(policy.decide(event, &state)?);
            }
            per_call.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
        }
        per_call.sort_by(f64::total_cmp);
        let median = per_call[BATCHES / 2];
        let p99 = per_call[BATCHES * 99 / 100];

        // Sustained: one second of back-to-back calls, building each event.
        let mut count = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(1) {
            for _ in 0..1000 {
                std::hint::black_box(policy.decide(&next_event(), &state)?);
            }
            count += 1000;
        }
        let per_sec = count as f64 / started.elapsed().as_secs_f64();
        println!(
            "policy={name} compile_ms={load_ms:.1} cached_load_and_instantiate_us_median={instantiate_us:.0} size_bytes={}",
            bytes.len()
        );
        println!("decide_ns_median={median:.0} policy={name} p99_of_batch_medians_ns={p99:.0}");
        println!("events_per_sec={per_sec:.0} policy={name}");
        println!(
            "target: under 2000 ns per call ({}), over 300000 events/s ({})",
            if median < 2000.0 { "met" } else { "MISSED" },
            if per_sec > 300_000.0 { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
