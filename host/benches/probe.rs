//! Probe benchmark: `cargo bench -p host --bench probe` (root only; else it
//! says why and exits non-zero).
//!
//! On 50 real idle containers (plus one context-switch-heavy one) it prints:
//! - `probe_latency_us_p50=` / `probe_latency_us_p99=`: kernel timestamp of
//!   an event (`bpf_ktime_get_ns`) to the typed event received from the
//!   probe's channel in userspace;
//! - `sched_switch_ns=`: run time per invocation of the sched_switch
//!   program from `kernel.bpf_stats_enabled`, under a pipe ping-pong load in
//!   a tracked container pinned to one CPU (every switch is from one tracked
//!   thread to the other); `sched_switch_untracked_ns=` the same with the
//!   ping-pong in an untracked container (the path most switches of a host
//!   take); `sched_switch_two_cpus_ns=` / `sched_switch_untracked_two_cpus_ns=`
//!   the same with the threads free to run on both CPUs, so that every
//!   switch goes to or from the idle task on a CPU that was idle (on a VM,
//!   its caches are cold: this figure moves with the host's load); `inet_sock_set_state_ns=` per run of the connection program
//!   under a tracked container that opens and closes loopback connections
//!   back to back; `prog_insns_<program>=` the size of each program after
//!   the verifier (translated instructions); `bpf_stats_floor_ns=` the run
//!   time bpf_stats gives an empty program attached beside it
//!   (`ebpf/baseline.bpf.c`): the cost of the statistics' own clock reads,
//!   included in every figure above;
//! - `crossing_latency_ms_p50=` / `_p95=`: from the start of a saturating
//!   load (the workload's own CLOCK_MONOTONIC stamp) to the upward CPU
//!   crossing's kernel timestamp, over 20 pulses at random phases of the
//!   window, for a container limited to 0.1 CPU with `cpu.upper=0.8` and two
//!   spinning threads; `_1thread` the same with one thread, `_limit0.5` the
//!   evaluation's set-up (0.5 CPU, `cpu.upper=0.6`, two threads). Each line
//!   also says the least load time that proves the crossing
//!   (`upper x limit x window / threads`): no probe can be faster;
//! - `cpu_at_limit_<limit>_*`: for a container spinning at its CPU limit
//!   (0.1, 0.5 and 1 CPU), the spread of its per-window CPU value over about
//!   60 windows (min, p5, p50, p95, max) and how many windows fall within
//!   0.8-1.0 of the limit;
//! - `cgroupfs_cpu_ms_per_s_1s=` / `cgroupfs_cpu_ms_per_s_15s=`: CPU time of
//!   this process per wall second while the cgroupfs probe reads the 50
//!   containers every 1 s / 15 s, beside `ebpf_user_cpu_ms_per_s=` for the
//!   push probe's userspace side on the same containers;
//! - demand (`ebpf/demand.h`, docs/demand.md): `demand_truth ...` lines,
//!   one per sample window, the kernel's response time p50/p99, in-flight,
//!   queue and request rate beside an open-loop client's (scheduled time to
//!   first byte) against `tests/probe/load.c http` (1 ms of CPU per
//!   request) at 10, 300 and 2,000 requests per second, one request per
//!   connection and keep-alive; `demand_ns_<program>=` the run time per
//!   event of each demand program and `demand_runs_per_request_<program>=`,
//!   under an open-loop load of 10,000 requests per second (keep-alive, and
//!   5,000 one per connection) on a tracked server with no work per request,
//!   and the same for an untracked server (what every socket of the host
//!   pays); `demand_cpu_pct_of_a_core_<mode>=` the probe's programs' run
//!   time per second at that rate, the demand programs' beside the rest;
//! - the machine it ran on.
//!
//! `PROBE_BENCH_ONLY=demand` runs only the demand part.

mod common;
use common::process_cpu;

#[path = "../../tests/probe/openloop.rs"]
mod openloop;

#[path = "../../tests/probe/workload.rs"]
mod workload;

#[path = "probe/demand.rs"]
mod demand;

use demand::{demand_cost, demand_truth};

use std::process::ExitCode;
use std::time::{Duration, Instant};

use host::model::{Band, Direction, EventKind, Metric, Thresholds, Tracked, monotonic_ns};
use host::probe::{self, ProbeEvent, ProbeKind, ProbeSettings, Reading};
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
    if std::env::var("PROBE_BENCH_ONLY").is_ok_and(|v| v == "demand") {
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let settings = ProbeSettings { kind: ProbeKind::Ebpf, pin_dir: None, ..ProbeSettings::default() };
        let handle = probe::start(settings, tx).await?;
        anyhow::ensure!(handle.kind() == ProbeKind::Ebpf, "the eBPF probe did not load");
        demand_truth(&handle, &mut rx).await?;
        drop(handle);
        return demand_cost().await;
    }
    eprintln!("starting {CONTAINERS} idle containers ...");
    let idle: Vec<Container> = (0..CONTAINERS).map(|_| Container::start(&[], &["idle"])).collect();
    // The tracked ping-pong, pinned to one CPU (every switch goes from one
    // tracked thread to the other: the program's own work, caches warm), and
    // free to spread over both CPUs (every switch goes to or from the idle
    // task, and the program meets caches the idle CPU left cold).
    let switcher = Container::start(&["--cpuset-cpus", "0"], &["switch", "8"]);
    let spread_switcher = Container::start(&[], &["switch", "8"]);

    // 1. Push probe: latency over every event of 50 tracked containers,
    //    sampled every 100 ms, and its userspace CPU.
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let settings = ProbeSettings {
        kind: ProbeKind::Ebpf,
        window: Duration::from_millis(100),
        sample_interval: Duration::from_millis(100),
        ..ProbeSettings::default()
    };
    let handle = probe::start(settings, tx).await?;
    anyhow::ensure!(handle.kind() == ProbeKind::Ebpf, "the eBPF probe did not load");
    let busy = Thresholds::default().with(&Metric::CPU, Band { upper: Some(0.5), lower: Some(0.05) });
    for c in idle.iter().chain([&switcher, &spread_switcher]) {
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

    // 2. Cost per context switch, with the tracked ping-pong container, and
    //    the empty program beside it for the floor; then 3. the same with
    //    the ping-pong in an untracked container.
    let baseline = attach_baseline()?;
    let tracked = switch_cost(&mut rx, &switcher).await?;
    drop(switcher);
    let tracked_spread = switch_cost(&mut rx, &spread_switcher).await?;
    handle.untrack(&spread_switcher.id);
    drop(spread_switcher);
    let untracked = Container::start(&["--cpuset-cpus", "0"], &["switch", "8"]);
    let untracked_cost = switch_cost(&mut rx, &untracked).await?;
    drop(untracked);
    let untracked = Container::start(&[], &["switch", "8"]);
    let untracked_spread = switch_cost(&mut rx, &untracked).await?;
    drop(baseline);
    drop(untracked);
    for (name, cost, placement) in [
        ("sched_switch", &tracked, "one CPU"),
        ("sched_switch_untracked", &untracked_cost, "one CPU"),
        ("sched_switch_two_cpus", &tracked_spread, "two CPUs, switches to and from idle"),
        ("sched_switch_untracked_two_cpus", &untracked_spread, "two CPUs, switches to and from idle"),
    ] {
        println!(
            "{name}_ns={:.0} {name}_ns_mean={:.0} {name}_runs_per_s={:.0} bpf_stats_floor_ns={:.0} ({placement}; median of {} one-second means; the floor is an empty sched_switch program run beside it)",
            cost.median_ns, cost.mean_ns, cost.runs_per_s, cost.floor_ns, cost.seconds
        );
    }

    // 4. The connection program under a tracked container churning
    //    loopback connections.
    let churn = Container::start(&[], &["churn", "8"]);
    let conns = Thresholds::default().with(&Metric::CONNECTIONS, Band { upper: Some(1.0), lower: None });
    handle.track(Tracked { container_id: churn.id.clone(), thresholds: conns });
    drain_for(&mut rx, Duration::from_secs(1)).await;
    let old = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let before = program_stats("on_inet_sock_set_state");
    let t0 = Instant::now();
    churn.go();
    drain_for(&mut rx, Duration::from_secs(6)).await;
    let after = program_stats("on_inet_sock_set_state");
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old.trim());
    handle.untrack(&churn.id);
    drop(churn);
    let (runs, ns) = (after.1 - before.1, after.0 - before.0);
    anyhow::ensure!(runs > 0, "inet_sock_set_state program did not run (bpf_stats)");
    println!("inet_sock_set_state_runs_per_s={:.0}", runs as f64 / t0.elapsed().as_secs_f64());
    println!("inet_sock_set_state_ns={:.0}", ns as f64 / runs as f64);
    for program in ["on_sched_switch", "on_inet_sock_set_state"] {
        println!("prog_insns_{program}={}", program_insns(program));
    }

    // 5. Crossing latency from the start of a saturating load.
    for (label, cpus, upper, threads) in [("", 0.1, 0.8, 2), ("_1thread", 0.1, 0.8, 1), ("_limit0.5", 0.5, 0.6, 2)] {
        let (mut ms, missed, pulses) = crossing_latencies(&handle, &mut rx, cpus, upper, threads).await?;
        anyhow::ensure!(!ms.is_empty(), "no upward crossing after any of {pulses} load pulses");
        let proof_ms = upper * cpus * 100.0 / threads as f64;
        println!(
            "crossing_latency_ms_p50{label}={:.1} crossing_latency_ms_p95{label}={:.1} (limit {cpus} CPU, cpu.upper={upper}, {threads} spinning thread(s): at least {proof_ms:.0} ms of load prove it; {} of {pulses} pulses, {missed} without a crossing)",
            common::percentile(&mut ms, 50),
            common::percentile(&mut ms, 95),
            ms.len(),
        );
    }

    // 6. The CPU value of a container held at its limit, window by window.
    for (cpus, threads) in [(0.1, 1), (0.5, 1), (1.0, 2)] {
        let mut values = window_values_at_limit(&handle, &mut rx, cpus, threads).await?;
        anyhow::ensure!(!values.is_empty(), "no CPU samples for the container limited to {cpus} CPU");
        let n = values.len();
        let inside = values.iter().filter(|v| (0.8..=1.0).contains(*v)).count();
        let (min, max) =
            (values.iter().copied().fold(f64::INFINITY, f64::min), values.iter().copied().fold(0.0, f64::max));
        println!(
            "cpu_at_limit_{cpus}_min={min:.3} cpu_at_limit_{cpus}_p5={:.3} cpu_at_limit_{cpus}_p50={:.3} cpu_at_limit_{cpus}_p95={:.3} cpu_at_limit_{cpus}_max={max:.3} cpu_at_limit_{cpus}_in_0.8_1.0={inside}/{n} ({threads} spinning thread(s))",
            common::percentile(&mut values, 5),
            common::percentile(&mut values, 50),
            common::percentile(&mut values, 95),
        );
    }

    // 7. Demand: truth against an open-loop client (its cost at the end,
    //    with probes of its own).
    demand_truth(&handle, &mut rx).await?;

    let stats = handle.stats();
    println!("probe_stats_events={} probe_stats_dropped={}", stats.events, stats.dropped);
    drop(handle);
    drain_for(&mut rx, Duration::from_millis(500)).await;
    demand_cost().await?;

    // 7. Pull baseline: the cgroupfs probe on the same 50 containers.
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
        out.push(monotonic_ns().saturating_sub(ev.timestamp_ns()) as f64 / 1e3);
    }
    out
}

/// The kernel keeps the first 15 bytes of a program's name.
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// (run time ns, run count) summed over loaded programs named `name`.
fn program_stats(name: &str) -> (u64, u64) {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some(kernel_name(name)))
        .fold((0, 0), |(t, n), p| (t + p.run_time().as_nanos() as u64, n + p.run_count()))
}

/// What `sched_switch` cost over one ping-pong run.
struct SwitchCost {
    /// Median over one-second intervals of the mean ns per run.
    median_ns: f64,
    /// Mean ns per run over the whole run.
    mean_ns: f64,
    /// Runs per second.
    runs_per_s: f64,
    /// Mean ns per run of the empty program over the same run.
    floor_ns: f64,
    /// Intervals measured.
    seconds: usize,
}

/// Start `switcher`'s ping-pong and read bpf_stats every second for 6 s.
async fn switch_cost(rx: &mut mpsc::Receiver<ProbeEvent>, switcher: &Container) -> anyhow::Result<SwitchCost> {
    let old = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    switcher.go();
    drain_for(rx, Duration::from_millis(300)).await;
    let (first, floor_first) = (program_stats("on_sched_switch"), program_stats("baseline_switch"));
    let t0 = Instant::now();
    let mut last = first;
    let mut per_second = Vec::new();
    for _ in 0..6 {
        drain_for(rx, Duration::from_secs(1)).await;
        let now = program_stats("on_sched_switch");
        if now.1 > last.1 {
            per_second.push((now.0 - last.0) as f64 / (now.1 - last.1) as f64);
        }
        last = now;
    }
    let floor_last = program_stats("baseline_switch");
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old.trim());
    let runs = last.1 - first.1;
    anyhow::ensure!(runs > 0 && !per_second.is_empty(), "sched_switch program did not run (bpf_stats)");
    anyhow::ensure!(floor_last.1 > floor_first.1, "the empty baseline program did not run (bpf_stats)");
    Ok(SwitchCost {
        median_ns: common::percentile(&mut per_second, 50),
        mean_ns: (last.0 - first.0) as f64 / runs as f64,
        runs_per_s: runs as f64 / t0.elapsed().as_secs_f64(),
        floor_ns: (floor_last.0 - floor_first.0) as f64 / (floor_last.1 - floor_first.1) as f64,
        seconds: per_second.len(),
    })
}

/// The empty program of `ebpf/baseline.bpf.c`, built by `build.rs`.
static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline.bpf.o"));

/// Load and attach the empty sched_switch program; detached on drop.
fn attach_baseline() -> anyhow::Result<aya::Ebpf> {
    use anyhow::Context;
    let btf = aya::Btf::from_sys_fs().context("reading kernel BTF")?;
    let mut ebpf = aya::Ebpf::load(BASELINE).context("loading ebpf/baseline.bpf.c")?;
    let prog: &mut aya::programs::BtfTracePoint =
        ebpf.program_mut("baseline_switch").context("baseline_switch program")?.try_into()?;
    prog.load("sched_switch", &btf).context("loading baseline_switch")?;
    prog.attach().context("attaching baseline_switch")?;
    Ok(ebpf)
}

/// Instructions of the loaded program `name` after the verifier's rewrites.
fn program_insns(name: &str) -> u32 {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some(kernel_name(name)))
        .find_map(|p| p.size_translated())
        .map_or(0, |bytes| bytes / 8)
}

/// Track `c` with `thresholds` and wait for its first sample.
async fn track_live(
    handle: &probe::ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    c: &Container,
    thresholds: Thresholds,
) -> anyhow::Result<()> {
    handle.track(Tracked { container_id: c.id.clone(), thresholds });
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        if let ProbeEvent::Reading(ev) = ev
            && ev.container_id == c.id
            && ev.kind == EventKind::Sample
        {
            return Ok(());
        }
    }
    anyhow::bail!("no sample for tracked container {} in 15 s", c.id)
}

/// Pulses of a load that saturates a container limited to `cpus`, each
/// 150 ms, 300-400 ms apart; returns the ms from each pulse's start to the
/// first upward crossing of `upper` after it, the pulses without one, and
/// the number of pulses.
async fn crossing_latencies(
    handle: &probe::ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    cpus: f64,
    upper: f64,
    threads: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    const PULSES: usize = 20;
    let c = Container::start(
        &["--cpus", &cpus.to_string()],
        &["pulse", &PULSES.to_string(), "150", "300", &threads.to_string()],
    );
    let thresholds = Thresholds::default().with(&Metric::CPU, Band { upper: Some(upper), lower: None });
    track_live(handle, rx, &c, thresholds).await?;
    c.go();
    let mut ups = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_millis(PULSES as u64 * 550 + 1000);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        if let ProbeEvent::Reading(ev) = ev
            && ev.container_id == c.id
            && ev.metric == Metric::CPU
            && matches!(ev.kind, EventKind::Crossing(x) if x.direction == Direction::Up)
        {
            ups.push(ev.timestamp_ns);
        }
    }
    handle.untrack(&c.id);
    let starts: Vec<u64> =
        c.logs().lines().filter_map(|l| l.strip_prefix("pulse ")).filter_map(|v| v.trim().parse().ok()).collect();
    let mut latencies = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(u64::MAX);
        if let Some(up) = ups.iter().find(|&&t| t >= *start && t < next) {
            latencies.push((up - start) as f64 / 1e6);
        }
    }
    let missed = starts.len() - latencies.len();
    Ok((latencies, missed, starts.len()))
}

/// CPU values (fraction of the limit) of a container spinning `threads`
/// threads under a limit of `cpus`, one per window for about 6 s.
async fn window_values_at_limit(
    handle: &probe::ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    cpus: f64,
    threads: usize,
) -> anyhow::Result<Vec<f64>> {
    let c = Container::start(&["--cpus", &cpus.to_string()], &["spin", &threads.to_string(), "30"]);
    track_live(handle, rx, &c, Thresholds::default()).await?;
    c.go();
    drain_for(rx, Duration::from_secs(1)).await;
    let throttled0 = cfs_throttling(&c.id);
    let mut values = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        if let ProbeEvent::Reading(Reading { container_id, metric, kind, value, .. }) = ev
            && container_id == c.id
            && metric == Metric::CPU
            && kind == EventKind::Sample
        {
            values.push(value);
        }
    }
    if let (Some((p0, t0)), Some((p1, t1))) = (throttled0, cfs_throttling(&c.id)) {
        // Whether CFS held the container at its limit, or the machine's
        // other load kept it below (then its value is below 0.8, truly).
        println!("cpu_at_limit_{cpus}_throttled_periods={}/{}", t1 - t0, p1 - p0);
    }
    handle.untrack(&c.id);
    Ok(values)
}

/// (nr_periods, nr_throttled) of a container's CFS bandwidth (cpu.stat,
/// v1 cpu controller of a hybrid host, or v2).
fn cfs_throttling(container_id: &str) -> Option<(u64, u64)> {
    let candidates = [
        format!("/sys/fs/cgroup/cpu/docker/{container_id}/cpu.stat"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpu.stat"),
        format!("/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ];
    let text = candidates.iter().find_map(|p| std::fs::read_to_string(p).ok())?;
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
    Some((field("nr_periods ")?, field("nr_throttled ")?))
}
