//! `cargo bench -p host --bench languages`: what a policy costs in each
//! language the project documents, through the daemon's own runtime with
//! its default limits: Rust (policies/threshold.wasm), Python
//! (examples/policies/python/burst.wasm), JavaScript
//! (examples/policies/js/headroom.wasm) and C (examples/policies/c/step.wasm).
//!
//! For each, one line with:
//! - `size_kib`: the component file;
//! - `compile_ms`: Cranelift compiling it (a daemon's first load);
//! - `cached_start_ms`: a fresh runtime loading it from the disk compile
//!   cache, instantiating it and asking its settings (a daemon restart);
//! - `decide_us_median` / `_p99`: one `decide` call that returns a
//!   decision, median and 99th percentile over batches.
//!
//! Everything runs under the daemon's default limits (10 ms per call; an
//! instance's start-up gets the larger instantiation budget), so a
//! language that does not fit them fails here as it would in the daemon. A
//! missing component is reported and skipped (build it with its
//! build.sh). Also replays a one-hour synthetic trace with the Rust policy
//! (`replay_hour_ms`), the bound the issue sets (under one second).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use host::model::{Direction, Event, Metric, State, Unit};
use host::policy::{Runtime, RuntimeConfig};
use host::replay::{ReplayOptions, Trace, replay};

const BATCH: usize = 200;
const BATCHES: usize = 51;

/// The labels of the service every case decides for.
const LABELS: [(&str, &str); 3] = [("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("connections.upper", "100")];

struct Case {
    lang: &'static str,
    file: &'static str,
    event: Event,
    state: State,
}

fn cases() -> Vec<Case> {
    // Settings are parsed from LABELS for each policy once it is loaded.
    let hot = State::replicas(2, 1, 10).with_cpu(&[0.9, 0.95]).with_metric(
        Metric::Connections,
        Unit::Count,
        &[80.0, 70.0],
        0,
    );
    vec![
        Case { lang: "rust", file: "policies/threshold.wasm", event: Event::cpu(0.95), state: hot.clone() },
        Case {
            lang: "python",
            file: "examples/policies/python/burst.wasm",
            event: Event::cpu(0.95).crossing(0.8, Direction::Up),
            state: hot.clone(),
        },
        Case {
            lang: "js",
            file: "examples/policies/js/headroom.wasm",
            event: Event::sample(Metric::Connections, 80.0, Unit::Count),
            state: hot.clone(),
        },
        Case { lang: "c", file: "examples/policies/c/step.wasm", event: Event::cpu(0.95), state: hot },
    ]
}

fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf();
    println!("machine: {}", common::machine());
    for case in cases() {
        if let Err(err) = measure(&repo, &case) {
            println!("lang={} failed: {err:#}", case.lang);
        }
    }
    replay_hour(&repo)
}

/// One language's line.
fn measure(repo: &Path, case: &Case) -> anyhow::Result<()> {
    let file = repo.join(case.file);
    let Ok(bytes) = std::fs::read(&file) else {
        println!("lang={} skipped: {} is missing (run its build.sh)", case.lang, file.display());
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    // The daemon's default limits: an interpreter's start-up must fit the
    // instantiation budget, each call the per-call limit.
    let config = || RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..RuntimeConfig::default() };
    // First load: compiles (and fills the disk cache).
    let (inspection, runnable) = Runtime::new(config())?.inspect(case.lang, &bytes)?;
    runnable?;
    let compile_ms = inspection.load_ms;
    // A restart: a fresh runtime, code from the disk cache.
    let runtime = Runtime::new(config())?;
    let started = Instant::now();
    let mut policy = runtime.load(case.lang, &bytes)?;
    let cached_start_ms = started.elapsed().as_secs_f64() * 1e3;
    let state = case.state.clone().with_settings(policy.resolve(&LABELS)?);
    let decision = policy.decide(&case.event, &state)?;
    anyhow::ensure!(decision.is_some(), "{}: the bench state should make a decision", case.lang);
    let mut per_call_us = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(policy.decide(&case.event, &state)?);
        }
        per_call_us.push(started.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
    }
    let median = common::percentile(&mut per_call_us, 50);
    let p99 = common::percentile(&mut per_call_us, 99);
    println!(
        "lang={:<6} size_kib={:<6} compile_ms={compile_ms:<8.0} cached_start_ms={cached_start_ms:<7.1} decide_us_median={median:<7.2} decide_us_p99={p99:.2}",
        case.lang,
        bytes.len() / 1024
    );
    Ok(())
}

/// Read and replay one synthetic hour (`synthetic::hour`: three replicas,
/// CPU, memory and connections from each every second, load in waves) with
/// the Rust threshold policy, as `host replay` does.
fn replay_hour(repo: &Path) -> anyhow::Result<()> {
    let file: PathBuf = repo.join("policies/threshold.wasm");
    let Ok(bytes) = std::fs::read(&file) else {
        println!("replay skipped: {} is missing (run policies/build.sh)", file.display());
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hour.trace");
    let records = host::replay::synthetic::hour(&path)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut policy = runtime.load("threshold", &bytes)?;
    // What `host replay` does: read the trace, then replay it.
    let (mut read_ms, mut replay_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        let trace: Trace = host::replay::trace::read(&path)?;
        let read = started.elapsed().as_secs_f64() * 1e3;
        let run = replay(&trace, &mut policy, &ReplayOptions::default());
        anyhow::ensure!(run.errors == 0, "replay errors: {:?}", run.first_error);
        read_ms.push(read);
        replay_ms.push(run.elapsed_s * 1e3);
        total_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "replay_hour records={records} trace_kib={} read_ms_median={:.0} replay_ms_median={:.0} read_and_replay_ms_median={:.0}",
        std::fs::metadata(&path)?.len() / 1024,
        common::percentile(&mut read_ms, 50),
        common::percentile(&mut replay_ms, 50),
        common::percentile(&mut total_ms, 50)
    );
    Ok(())
}
