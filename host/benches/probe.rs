//! Probe benchmark: `cargo bench -p host --bench probe` (root only; else it
//! says why and exits non-zero).
//!
//! On 50 real idle containers (plus one context-switch-heavy one) it prints:
//! - `probe_latency_us_p50=` / `probe_latency_us_p99=`: kernel timestamp of
//!   an event (`bpf_ktime_get_ns`) to the typed event received from the
//!   probe's channel in userspace;
//! - `sched_switch_ns=`: run time per invocation of the sched_switch
//!   program from `kernel.bpf_stats_enabled`, under a pipe ping-pong load;
//! - `cgroupfs_cpu_ms_per_s_1s=` / `cgroupfs_cpu_ms_per_s_15s=`: CPU time of
//!   this process per wall second while the cgroupfs probe reads the 50
//!   containers every 1 s / 15 s, beside `ebpf_user_cpu_ms_per_s=` for the
//!   push probe's userspace side on the same containers;
//! - the machine it ran on.

mod common;

#[path = "../../tests/probe/workload.rs"]
mod workload;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use host::model::{Band, Thresholds, Tracked, monotonic_ns};
use host::probe::{self, ProbeEvent, ProbeKind, ProbeSettings};
use tokio::sync::mpsc;
use workload::Container;

const CONTAINERS: usize = 50;

fn main() -> ExitCode {
    if !workload::root_or_explain("the probe benchmark") {
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("probe bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    println!("machine: {}", common::machine());
    eprintln!("starting {CONTAINERS} idle containers ...");
    let idle: Vec<Container> = (0..CONTAINERS).map(|_| Container::start(&[], &["idle"])).collect();
    let switcher = Container::start(&[], &["switch", "8"]);

    // 1. Push probe: latency over every event of 50 tracked containers,
    //    sampled every 100 ms, and its userspace CPU.
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let settings = ProbeSettings {
        kind: ProbeKind::Ebpf,
        window: Duration::from_millis(100),
        sample_interval: Duration::from_millis(100),
    };
    let handle = probe::start(settings, tx).await?;
    anyhow::ensure!(handle.kind() == ProbeKind::Ebpf, "the eBPF probe did not load");
    let busy = Thresholds { cpu: Band { upper: Some(0.5), lower: Some(0.05) }, ..Default::default() };
    for c in idle.iter().chain([&switcher]) {
        handle.track(Tracked { container_id: c.id.clone(), thresholds: busy });
    }
    // Let tracking settle, then measure.
    drain_for(&mut rx, Duration::from_secs(2)).await;
    let cpu0 = process_cpu();
    let wall0 = Instant::now();
    let mut latencies = latencies_for(&mut rx, Duration::from_secs(10)).await;
    anyhow::ensure!(!latencies.is_empty(), "no events from the probe in 10 s");
    let ebpf_cpu = (process_cpu() - cpu0).as_secs_f64() * 1e3 / wall0.elapsed().as_secs_f64();
    let (p50, p99) = (common::percentile(&mut latencies, 50), common::percentile(&mut latencies, 99));
    println!("probe_events={}", latencies.len());
    println!("probe_latency_us_p50={p50:.1}");
    println!("probe_latency_us_p99={p99:.1}");
    println!("ebpf_user_cpu_ms_per_s={ebpf_cpu:.2}");

    // 2. Cost per context switch, with the tracked ping-pong container.
    let old = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let before = sched_switch_stats();
    let t0 = Instant::now();
    switcher.go();
    latencies_for(&mut rx, Duration::from_secs(6)).await;
    let after = sched_switch_stats();
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old.trim());
    let (runs, ns) = (after.1 - before.1, after.0 - before.0);
    anyhow::ensure!(runs > 0, "sched_switch program did not run (bpf_stats)");
    println!("sched_switch_runs_per_s={:.0}", runs as f64 / t0.elapsed().as_secs_f64());
    println!("sched_switch_ns={:.0}", ns as f64 / runs as f64);
    let stats = handle.stats();
    println!("probe_stats_events={} probe_stats_dropped={}", stats.events, stats.dropped);
    drop(handle);
    drop(switcher);
    drain_for(&mut rx, Duration::from_millis(500)).await;

    // 3. Pull baseline: the cgroupfs probe on the same 50 containers.
    for (interval, window) in
        [(Duration::from_secs(1), Duration::from_secs(15)), (Duration::from_secs(15), Duration::from_secs(30))]
    {
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let settings = ProbeSettings { kind: ProbeKind::Cgroupfs { interval }, ..ProbeSettings::default() };
        let handle = probe::start(settings, tx).await?;
        for c in &idle {
            handle.track(Tracked { container_id: c.id.clone(), thresholds: busy });
        }
        let cpu0 = process_cpu();
        let wall0 = Instant::now();
        let events = drain_for(&mut rx, window).await;
        let ms_per_s = (process_cpu() - cpu0).as_secs_f64() * 1e3 / wall0.elapsed().as_secs_f64();
        let passes = window.as_secs_f64() / interval.as_secs_f64();
        println!(
            "cgroupfs_cpu_ms_per_s_{}s={ms_per_s:.2} cgroupfs_events_{}s={events} (about {passes:.0} passes over {CONTAINERS} containers in {:.0} s)",
            interval.as_secs(),
            interval.as_secs(),
            window.as_secs_f64()
        );
    }
    eprintln!("removing containers ...");
    drop(idle);
    Ok(())
}

/// Receive for `dur`; returns how many events came.
async fn drain_for(rx: &mut mpsc::Receiver<ProbeEvent>, dur: Duration) -> usize {
    let end = tokio::time::Instant::now() + dur;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, rx.recv()).await {
        n += 1;
    }
    n
}

/// Receive for `dur`; returns each event's kernel-to-here latency in us.
async fn latencies_for(rx: &mut mpsc::Receiver<ProbeEvent>, dur: Duration) -> Vec<f64> {
    let end = tokio::time::Instant::now() + dur;
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        out.push(monotonic_ns().saturating_sub(ev.timestamp_ns) as f64 / 1e3);
    }
    out
}

/// (run time ns, run count) summed over loaded programs named on_sched_switch.
fn sched_switch_stats() -> (u64, u64) {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some("on_sched_switch"))
        .fold((0, 0), |(t, n), p| (t + p.run_time().as_nanos() as u64, n + p.run_count()))
}

/// User + system CPU time of this process, all threads.
fn process_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is valid for writes; RUSAGE_SELF always exists.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
