//! `cargo bench -p host --bench reload`: time from a policy file being
//! renamed into the watched folder to the first decision by the new version.
//!
//! - `reload_ms_p50/p99`: every file is new content (a unique custom section
//!   is appended), so each reload is a real compile.
//! - `cached_reload_ms_p50/p99`: two contents alternate after both were
//!   compiled once; each reload must hit the compile cache (`recompiles=0`).
//! - `unchanged_ms_p50`: identical bytes renamed over the file: the time
//!   until the watcher has checked and skipped them.
//!
//! Needs `policies/build.sh` to have run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use host::model::settings::resolve;
use host::model::{Event, EventKind, Metric, State, Unit};
use host::policy::PolicySet;
use host::policy::{CompilerSettings, Runtime, RuntimeConfig, content_hash};
use host::reload::{self, ReloadSettings};

const RELOADS: usize = 50;

fn main() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root");
    let read = |name: &str| {
        let file = repo.join("policies").join(name);
        std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}; run policies/build.sh first", file.display()))
    };
    let threshold = read("threshold.wasm")?;
    let proportional = read("proportional.wasm")?;
    println!("machine: {}", common::machine());

    let tokio = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    // Compile as the daemon does: in a bounded child process running the
    // `host` binary. RELOAD_BENCH_IN_PROCESS=1 compiles in this process, the
    // way the daemon did before compiles were bounded, for comparison.
    let in_process = std::env::var_os("RELOAD_BENCH_IN_PROCESS").is_some();
    let compiler = (!in_process)
        .then(|| CompilerSettings { exe: env!("CARGO_BIN_EXE_host").into(), ..CompilerSettings::this_binary() });
    println!("compiler={}", if in_process { "in-process" } else { "child process" });
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        compiler,
        ..RuntimeConfig::default()
    })?);
    let set = PolicySet::default();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch =
        tokio.block_on(reload::watch(runtime.clone(), dir.path(), set.clone(), ReloadSettings::default(), tx))?;

    let event = Event {
        metric: Metric::Cpu,
        value: 0.9,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        container_id: "c".into(),
        service_id: "s".into(),
        service_name: "web".into(),
        timestamp_ns: 1,
    };
    let state = State::replicas(2, 1, 9);
    // Parsed for each version, as the daemon parses a service's labels.
    let labels: Vec<(String, String)> = [("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("cpu.target", "0.5")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

    // Rename `bytes` into place as p.wasm and time until a decision comes
    // from exactly that version.
    let reload_once = |bytes: &[u8]| -> anyhow::Result<f64> {
        let want = hex::encode(content_hash(bytes));
        let tmp = dir.path().join(".p.partial");
        std::fs::write(&tmp, bytes)?;
        let started = Instant::now();
        std::fs::rename(&tmp, dir.path().join("p.wasm"))?;
        loop {
            if let Some(slot) = set.get("p").filter(|s| s.sha256() == want) {
                let (_, _, specs) = slot.declaration();
                let settings = resolve(&specs, &labels).map_err(|p| anyhow::anyhow!("labels: {p:?}"))?;
                slot.decide(&event, &State { settings: settings.into(), ..state.clone() })?;
                return Ok(started.elapsed().as_secs_f64() * 1e3);
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "version {want} never answered");
            std::thread::sleep(Duration::from_micros(200));
        }
    };

    let mut fresh = Vec::new();
    for i in 0..RELOADS {
        fresh.push(reload_once(&with_custom_section(&threshold, i as u64))?);
    }

    let a = with_custom_section(&threshold, 1_000_000);
    let b = with_custom_section(&proportional, 1_000_001);
    reload_once(&a)?;
    reload_once(&b)?;
    let compiles_before = runtime.compiles();
    let mut cached = Vec::new();
    for i in 0..RELOADS {
        cached.push(reload_once(if i % 2 == 0 { &a } else { &b })?);
    }
    let recompiles = runtime.compiles() - compiles_before;

    let mut unchanged = Vec::new();
    for _ in 0..RELOADS {
        let before = set.stats().unchanged.load(Ordering::Relaxed);
        let tmp = dir.path().join(".p.partial");
        std::fs::write(&tmp, &b)?;
        let started = Instant::now();
        std::fs::rename(&tmp, dir.path().join("p.wasm"))?;
        while set.stats().unchanged.load(Ordering::Relaxed) == before {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "identical rewrite never noticed");
            std::thread::sleep(Duration::from_micros(200));
        }
        unchanged.push(started.elapsed().as_secs_f64() * 1e3);
    }

    println!(
        "reloads={RELOADS} policy_size_bytes={} debounce_ms={}",
        threshold.len(),
        ReloadSettings::default().debounce.as_millis()
    );
    println!("reload_ms_p50={:.1}", common::percentile(&mut fresh, 50));
    println!("reload_ms_p99={:.1}", common::percentile(&mut fresh, 99));
    println!("cached_reload_ms_p50={:.1}", common::percentile(&mut cached, 50));
    println!("cached_reload_ms_p99={:.1}", common::percentile(&mut cached, 99));
    println!("unchanged_ms_p50={:.1}", common::percentile(&mut unchanged, 50));
    println!("recompiles={recompiles}");
    println!(
        "target: reload p99 under 500 ms ({}), cached reloads never recompile ({})",
        if common::percentile(&mut fresh, 99) < 500.0 { "met" } else { "MISSED" },
        if recompiles == 0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// `bytes` (a component) with a custom section appended that makes its hash unique.
fn with_custom_section(bytes: &[u8], n: u64) -> Vec<u8> {
    let name = b"bench-nonce";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&n.to_le_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(payload.len() as u8); // fits in one LEB128 byte
    out.extend_from_slice(&payload);
    out
}
