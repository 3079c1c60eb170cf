//! The probe at a node's scale: `cargo bench -p host --bench node_scale`
//! (root only; else it says why and exits non-zero). Run it under the
//! tests lock (`flock /tmp/swarm-autoscaler-tests.lock`).
//!
//! One eBPF probe with the daemon's default settings (100 ms window, a
//! sample a second, 256 KiB ring buffer, demand programs on) tracks 5, then
//! 500 real containers of the static workload (`tests/probe/load.c tick`,
//! `FROM scratch`, 0.05 CPU and 16 MiB each), each waking every
//! `NODE_SCALE_TICK_MS` (default 50) like a service's timers; then the
//! tracked map is filled to its `PROBE_MAX_TRACKED` entries with fake cgroup
//! ids beside the 500, and one more is asked for. For each step it prints,
//! over `NODE_SCALE_SECONDS` (default 10):
//! - `<program>_ns=` / `<program>_runs_per_s=`: run time per run and runs a
//!   second of each of the probe's programs (`kernel.bpf_stats_enabled`;
//!   its own clock reads, about 70 ns on this VM, are included);
//! - `tick_check_ns=` / `tick_close_ns=`: the `bpf_timer` tick, which
//!   bpf_stats does not see, from the probe's `tick_cost` map: a 1 ms tick
//!   that checks the CPUs, and one that also closes every tracked window
//!   (every 100 ms); `tick_cpu_pct=` the tick's share of a core;
//! - `ring_events_per_s=` / `ring_dropped=`: events the ring buffer carried
//!   to userspace, and those lost (ring full, or a full channel);
//! - `user_cpu_pct=` / `rss_mib=`: this process (% of a core), the daemon's
//!   probe side (ring reader, decoder, tracking) and an empty consumer;
//! - the ratio of each figure at 500 to that at 5, and how long starting
//!   and removing the 500 containers took.
//!
//! Every container it starts is named `node-scale-<n>` and labelled
//! `swarm-autoscaler-bench=node-scale`; all are removed at the end, on
//! failure too, and any left by an earlier run that was killed are removed
//! at the start.

#[allow(dead_code)] // `percentile`: nothing here is a distribution.
mod common;
use common::process_cpu;

#[path = "../../tests/probe/workload.rs"]
mod workload;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use host::model::{Thresholds, Tracked};
use host::probe::{self, ProbeEvent, ProbeHandle, ProbeKind, ProbeSettings};
use tokio::sync::mpsc;

const LABEL: &str = "swarm-autoscaler-bench=node-scale";
/// The probe's programs, by the name the kernel keeps (15 bytes).
const PROGRAMS: [&str; 4] = ["on_sched_switch", "on_inet_sock_set_state", "on_tcp_probe", "on_tcp_sendmsg"];
/// `docker run` processes at once.
const PARALLEL: usize = 8;

fn main() -> ExitCode {
    if !workload::root_or_explain("the node-scale probe benchmark") {
        return ExitCode::FAILURE;
    }
    remove_labelled();
    let fleet = Fleet::default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let result = rt.block_on(run(&fleet));
    let t0 = Instant::now();
    let n = fleet.ids.lock().map(|ids| ids.len()).unwrap_or(0);
    drop(fleet);
    println!("removed_containers={n} remove_s={:.1}", t0.elapsed().as_secs_f64());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("node-scale bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn run(fleet: &Fleet) -> anyhow::Result<()> {
    let seconds = env_u64("NODE_SCALE_SECONDS", 10);
    let tick_ms = env_u64("NODE_SCALE_TICK_MS", 50).clamp(1, 999);
    let counts = [5usize, env_u64("NODE_SCALE_CONTAINERS", 500) as usize];
    println!("machine: {}", common::machine());
    println!("load_average_at_start: {}", load_average());
    workload::image();

    let before: HashSet<u32> = aya::programs::loaded_programs().flatten().map(|p| p.id()).collect();
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let settings = ProbeSettings { kind: ProbeKind::Ebpf, pin_dir: None, ..ProbeSettings::default() };
    let handle = probe::start(settings, tx).await?;
    anyhow::ensure!(handle.kind() == ProbeKind::Ebpf, "the eBPF probe did not load");
    // Ours: the programs loaded by this probe, not another daemon's.
    let ours: Vec<u32> = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| {
            !before.contains(&p.id()) && p.name_as_str().is_some_and(|n| PROGRAMS.iter().any(|k| kernel_name(k) == n))
        })
        .map(|p| p.id())
        .collect();
    let old_stats = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let measured = measure_steps(fleet, &handle, &mut rx, &ours, &counts, seconds, tick_ms).await;
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old_stats.trim());
    let steps = measured?;

    // Side by side, and the ratio of the last count to the first.
    let (first, last) = (&steps[0], &steps[1]);
    println!("\n| figure | {} containers | {} containers | ratio |", first.containers, last.containers);
    println!("|---|---|---|---|");
    for (name, a) in &first.figures {
        let b = last.figures.get(name).copied().unwrap_or(f64::NAN);
        let ratio = if *a > 0.0 { format!("{:.2}", b / a) } else { "-".into() };
        println!("| {name} | {a:.2} | {b:.2} | {ratio} |");
    }
    if let Some(full) = steps.get(2) {
        println!(
            "\nthe tracked map full ({} entries: {} real containers, the rest fake cgroup ids):",
            full.containers, last.containers
        );
        for (name, v) in &full.figures {
            println!("full_{name}={v:.2}");
        }
    }
    println!("load_average_at_end: {}", load_average());
    Ok(())
}

/// One measured step.
struct Step {
    containers: usize,
    figures: BTreeMap<String, f64>,
}

async fn measure_steps(
    fleet: &Fleet,
    handle: &ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    ours: &[u32],
    counts: &[usize],
    seconds: u64,
    tick_ms: u64,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &n in counts {
        let have = fleet.len();
        let t0 = Instant::now();
        let started = fleet.start(n.saturating_sub(have), tick_ms)?;
        let start_s = t0.elapsed().as_secs_f64();
        for id in &started {
            handle.track(Tracked { container_id: id.clone(), thresholds: Thresholds::default() });
        }
        println!(
            "containers={n} started={} start_s={start_s:.1} ({PARALLEL} docker run at once) load_average={}",
            started.len(),
            load_average()
        );
        // Tracking settles (cgroup lookups, first windows).
        drain(rx, Duration::from_secs(5)).await;
        let figures = measure(handle, rx, ours, seconds).await;
        print_step(n, &figures);
        steps.push(Step { containers: n, figures });
    }
    // The map full: fake entries beside the real containers, then one more.
    let max = host::probe::abi::PROBE_MAX_TRACKED as usize;
    let real = fleet.len();
    let fakes = max.saturating_sub(real);
    let t0 = Instant::now();
    for i in 0..fakes {
        handle.track_cgroup(&format!("fake-{i}"), u64::MAX - i as u64, Thresholds::default());
    }
    // Tracked in order: the last one's first event says all are in.
    let last = format!("fake-{}", fakes.saturating_sub(1));
    anyhow::ensure!(
        first_event_of(rx, &last, Duration::from_secs(120)).await,
        "no event for the last of {fakes} fake entries within 120 s"
    );
    let fill_s = t0.elapsed().as_secs_f64();
    println!("fake_entries={fakes} tracked_in_s={fill_s:.1} (to the last one's first event)");
    drain(rx, Duration::from_secs(2)).await;
    let refused0 = handle.stats().refused;
    handle.track_cgroup("fake-one-more", u64::MAX - max as u64, Thresholds::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().refused == refused0 && Instant::now() < deadline {
        drain(rx, Duration::from_millis(100)).await;
    }
    let refused = handle.stats().refused - refused0;
    let mut figures = measure(handle, rx, ours, seconds).await;
    figures.insert("refused_past_the_limit".into(), refused as f64);
    print_step(max, &figures);
    steps.push(Step { containers: max, figures });
    Ok(steps)
}

fn print_step(n: usize, figures: &BTreeMap<String, f64>) {
    let line: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v:.2}")).collect();
    println!("tracked={n} {}", line.join(" "));
}

/// Every figure over `seconds`, while receiving every event.
async fn measure(
    handle: &ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    ours: &[u32],
    seconds: u64,
) -> BTreeMap<String, f64> {
    let (progs0, tick0, stats0, cpu0) =
        (program_stats(ours), handle.tick_cost().unwrap_or_default(), handle.stats(), process_cpu());
    let t0 = Instant::now();
    let received = drain(rx, Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (progs1, tick1, stats1, cpu1) =
        (program_stats(ours), handle.tick_cost().unwrap_or_default(), handle.stats(), process_cpu());
    let mut f = BTreeMap::new();
    for program in PROGRAMS {
        let (ns0, runs0) = progs0.get(kernel_name(program)).copied().unwrap_or_default();
        let (ns1, runs1) = progs1.get(kernel_name(program)).copied().unwrap_or_default();
        let runs = runs1.saturating_sub(runs0);
        f.insert(format!("{program}_runs_per_s"), runs as f64 / wall);
        if runs > 0 {
            f.insert(format!("{program}_ns"), (ns1 - ns0) as f64 / runs as f64);
        }
    }
    let check_runs = tick1.check_runs - tick0.check_runs;
    let close_runs = tick1.close_runs - tick0.close_runs;
    let tick_ns = (tick1.check_ns - tick0.check_ns) + (tick1.close_ns - tick0.close_ns);
    if check_runs > 0 {
        f.insert("tick_check_ns".into(), (tick1.check_ns - tick0.check_ns) as f64 / check_runs as f64);
    }
    if close_runs > 0 {
        f.insert("tick_close_ns".into(), (tick1.close_ns - tick0.close_ns) as f64 / close_runs as f64);
    }
    f.insert("tick_runs_per_s".into(), (check_runs + close_runs) as f64 / wall);
    f.insert("tick_cpu_pct".into(), tick_ns as f64 / wall / 1e9 * 100.0);
    f.insert("ring_events_per_s".into(), (stats1.events - stats0.events) as f64 / wall);
    f.insert("received_per_s".into(), received as f64 / wall);
    f.insert("ring_dropped".into(), (stats1.dropped - stats0.dropped) as f64);
    f.insert("user_cpu_pct".into(), (cpu1 - cpu0).as_secs_f64() / wall * 100.0);
    f.insert("rss_mib".into(), rss_mib());
    f
}

/// Receive until an event of `container` comes (true) or `timeout` passes.
async fn first_event_of(rx: &mut mpsc::Receiver<ProbeEvent>, container: &str, timeout: Duration) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        if let ProbeEvent::Reading(r) = ev
            && r.container_id == container
        {
            return true;
        }
    }
    false
}

/// Receive for `dur`; returns how many events came.
async fn drain(rx: &mut mpsc::Receiver<ProbeEvent>, dur: Duration) -> usize {
    let end = tokio::time::Instant::now() + dur;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, rx.recv()).await {
        n += 1;
    }
    n
}

/// The kernel keeps the first 15 bytes of a program's name.
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Kernel name -> (run time ns, run count) of the programs `ours`.
fn program_stats(ours: &[u32]) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for p in aya::programs::loaded_programs().flatten().filter(|p| ours.contains(&p.id())) {
        let entry: &mut (u64, u64) = out.entry(p.name_as_str().unwrap_or("").to_string()).or_default();
        entry.0 += p.run_time().as_nanos() as u64;
        entry.1 += p.run_count();
    }
    out
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(f64::NAN) / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The containers this run started; removed on drop.
#[derive(Default)]
struct Fleet {
    ids: Mutex<Vec<String>>,
}

impl Fleet {
    fn len(&self) -> usize {
        self.ids.lock().map(|ids| ids.len()).unwrap_or(0)
    }

    /// Start `n` more, `PARALLEL` at once; returns their ids.
    fn start(&self, n: usize, tick_ms: u64) -> anyhow::Result<Vec<String>> {
        let base = self.len();
        let next = AtomicUsize::new(0);
        let started = Mutex::new(Vec::new());
        let failed = Mutex::new(Vec::new());
        let image = workload::image();
        std::thread::scope(|s| {
            for _ in 0..PARALLEL.min(n) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let name = format!("node-scale-{}", base + i);
                        let out = Command::new("docker")
                            .args(["run", "-d", "--name", &name, "--label", LABEL, "--network", "none"])
                            .args(["--cpus", "0.05", "--memory", "16m", image, "tick", &tick_ms.to_string()])
                            .stderr(Stdio::piped())
                            .output();
                        match out {
                            Ok(o) if o.status.success() => {
                                let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
                                if let Ok(mut v) = started.lock() {
                                    v.push(id);
                                }
                            }
                            Ok(o) => failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{name}: {}", String::from_utf8_lossy(&o.stderr).trim())),
                            Err(e) => failed.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{name}: {e}")),
                        }
                    }
                });
            }
        });
        let started = started.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut ids) = self.ids.lock() {
            ids.extend(started.iter().cloned());
        }
        let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
        anyhow::ensure!(failed.is_empty(), "{} containers did not start, first: {}", failed.len(), failed[0]);
        Ok(started)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        remove(&ids);
    }
}

/// `docker rm -f` these, a batch at a time.
fn remove(ids: &[String]) {
    for batch in ids.chunks(50) {
        let _ =
            Command::new("docker").args(["rm", "-f"]).args(batch).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Remove containers an earlier, killed run of this benchmark left.
fn remove_labelled() {
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label={LABEL}")]).output();
    let ids: Vec<String> = out
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    if !ids.is_empty() {
        eprintln!("removing {} containers an earlier run left", ids.len());
        remove(&ids);
    }
}
