//! The demand part of the probe benchmark (`ebpf/demand.h`,
//! docs/demand.md): truth against an open-loop client and cost against the
//! probe without its demand programs (see `probe.rs`'s doc).

use std::time::{Duration, Instant};

use host::model::{Thresholds, Tracked};
use host::probe::{self, ProbeEvent, ProbeKind, ProbeSettings};
use tokio::sync::mpsc;

use super::workload::Container;
use super::{BASELINE, common, drain_for, kernel_name, openloop, program_insns, program_stats};

/// The probe's programs: those before the demand metrics, and the demand ones.
const TODAY: [&str; 2] = ["on_sched_switch", "on_inet_sock_set_state"];
const DEMAND: [&str; 2] = ["on_tcp_probe", "on_tcp_sendmsg"];
/// Empty programs on the demand programs' tracepoints (`ebpf/baseline.bpf.c`).
const DEMAND_FLOOR: [&str; 2] = ["baseline_tcp_probe", "baseline_tcp_sendmsg"];

/// Demand truth (see the module's doc).
pub async fn demand_truth(handle: &probe::ProbeHandle, rx: &mut mpsc::Receiver<ProbeEvent>) -> anyhow::Result<()> {
    openloop::raise_nofile();
    let port = free_port();
    let server = Container::start_on("host", &[], &["http", &port.to_string(), "1000"]);
    wait_listening(port).await?;
    handle.track(Tracked { container_id: server.id.clone(), thresholds: Thresholds::default() });
    drain_for(rx, Duration::from_millis(2500)).await;
    for (keep_alive, rate, secs) in [
        (false, 10.0, 4.0),
        (false, 300.0, 4.0),
        (false, 2000.0, 2.5),
        (true, 10.0, 4.0),
        (true, 300.0, 4.0),
        (true, 2000.0, 2.5),
    ] {
        let label = format!("demand_truth {}@{rate}/s", if keep_alive { "keep-alive" } else { "close" });
        let (outcomes, mut seen) = load_and_collect(rx, port, rate, secs, keep_alive).await;
        drain_into(rx, &mut seen, Duration::from_millis(1200)).await;
        let rows = openloop::compare(&outcomes, &openloop::kernel_samples(&seen, &server.id));
        println!("{}", openloop::describe(&label, &rows));
    }
    handle.untrack(&server.id);
    drop(server);
    Ok(())
}

/// Rounds of the demand cost comparison (medians over them are printed).
const COST_ROUNDS: usize = 3;

/// Demand cost (see the module's doc): in each round, the probe without its
/// demand programs and then with them, each loaded alone, under the same
/// open-loop loads on a tracked server that does no work per request (and,
/// with them, an untracked one); medians over the rounds.
pub async fn demand_cost() -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    openloop::raise_nofile();
    let old = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let _floor = attach_demand_baseline()?;
    let names: Vec<&str> = TODAY.iter().chain(DEMAND.iter()).chain(DEMAND_FLOOR.iter()).copied().collect();
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut insns = [0u32; DEMAND.len()];
    for round in 0..COST_ROUNDS {
        for with_demand in [false, true] {
            wait_unloaded().await?;
            let (tx, mut rx) = mpsc::channel(1 << 16);
            let settings =
                ProbeSettings { kind: ProbeKind::Ebpf, pin_dir: None, demand: with_demand, ..ProbeSettings::default() };
            let handle = probe::start(settings, tx).await?;
            anyhow::ensure!(handle.kind() == ProbeKind::Ebpf, "the eBPF probe did not load");
            let trackings: &[bool] = if with_demand { &[true, false] } else { &[true] };
            for &tracked in trackings {
                for (keep_alive, rate) in [(true, 10_000.0), (false, 5_000.0)] {
                    let port = free_port();
                    let server = Container::start_on("host", &[], &["http", &port.to_string(), "0"]);
                    wait_listening(port).await?;
                    if tracked {
                        handle.track(Tracked { container_id: server.id.clone(), thresholds: Thresholds::default() });
                    }
                    drain_for(&mut rx, Duration::from_millis(1500)).await;
                    let before: Vec<(u64, u64)> = names.iter().map(|n| program_stats(n)).collect();
                    let t0 = Instant::now();
                    let (outcomes, _) = load_and_collect(&mut rx, port, rate, 4.0, keep_alive).await;
                    let wall = t0.elapsed().as_secs_f64();
                    let after: Vec<(u64, u64)> = names.iter().map(|n| program_stats(n)).collect();
                    let answered = outcomes.iter().filter(|o| o.first_byte_ns > 0).count().max(1) as f64;
                    let mode = format!(
                        "{}_{}",
                        if tracked { "tracked" } else { "untracked" },
                        if keep_alive { "keepalive" } else { "close" }
                    );
                    let mut probe_ns = 0u64;
                    let mut put = |key: String, value: f64| figures.entry(key).or_default().push(value);
                    for ((name, b), a) in names.iter().zip(&before).zip(&after) {
                        let (ns, runs) = (a.0 - b.0, a.1 - b.1);
                        if !DEMAND_FLOOR.contains(name) {
                            probe_ns += ns;
                        }
                        if with_demand && !TODAY.contains(name) {
                            put(format!("demand_ns_{name}_{mode}"), ns as f64 / runs.max(1) as f64);
                            put(format!("demand_runs_per_request_{name}_{mode}"), runs as f64 / answered);
                        }
                    }
                    let with = if with_demand { "with_demand" } else { "without_demand" };
                    if tracked {
                        put(format!("probe_cpu_pct_of_a_core_{mode}_{with}"), probe_ns as f64 / wall / 1e9 * 100.0);
                        put(format!("requests_per_s_{mode}_{with}"), answered / wall);
                    }
                    eprintln!("round {round} {mode} {with}: {:.0} requests/s", answered / wall);
                    if tracked {
                        handle.untrack(&server.id);
                    }
                    drop(server);
                }
            }
            if with_demand {
                insns = DEMAND.map(program_insns);
            }
            drop(handle);
        }
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old.trim());
    let median = |key: &str| figures.get(key).map_or(f64::NAN, |v| common::percentile(&mut v.clone(), 50));
    for (key, values) in &figures {
        let (lo, hi) = values.iter().fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
        let m = median(key);
        let digits = if key.starts_with("demand_ns") { 0 } else { 3 };
        println!("{key}={m:.digits$} (median of {COST_ROUNDS}, {lo:.digits$}..{hi:.digits$})");
    }
    for mode in ["tracked_keepalive", "tracked_close"] {
        let extra = median(&format!("probe_cpu_pct_of_a_core_{mode}_with_demand"))
            - median(&format!("probe_cpu_pct_of_a_core_{mode}_without_demand"));
        println!(
            "demand_extra_cpu_pct_of_a_core_{mode}={extra:.3} (the probe's programs' bpf_stats run time per wall second, with the demand programs minus without, medians; target under 2)"
        );
    }
    for (program, n) in DEMAND.iter().zip(insns) {
        println!("prog_insns_{program}={n}");
    }
    Ok(())
}

/// Wait until no probe is loaded (a dropped handle's programs go when its
/// tasks end).
async fn wait_unloaded() -> anyhow::Result<()> {
    for _ in 0..100 {
        if program_stats_count(TODAY[0]) == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("a probe stayed loaded 10 s after its handle was dropped")
}

/// Run the open-loop client while collecting the probe's events.
async fn load_and_collect(
    rx: &mut mpsc::Receiver<ProbeEvent>,
    port: u16,
    rate: f64,
    secs: f64,
    keep_alive: bool,
) -> (Vec<openloop::Outcome>, Vec<ProbeEvent>) {
    let mut seen = Vec::new();
    let client = openloop::run(port, rate, Duration::from_secs_f64(secs), keep_alive);
    let (outcomes, ()) = tokio::join!(client, drain_into(rx, &mut seen, Duration::from_secs_f64(secs + 0.5)));
    (outcomes, seen)
}

/// Receive for `dur` into `seen`.
async fn drain_into(rx: &mut mpsc::Receiver<ProbeEvent>, seen: &mut Vec<ProbeEvent>, dur: Duration) {
    let end = tokio::time::Instant::now() + dur;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        seen.push(ev);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18080)
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the http workload never listened on port {port}")
}

/// Load and attach the empty programs on the demand tracepoints; detached
/// on drop.
fn attach_demand_baseline() -> anyhow::Result<aya::Ebpf> {
    use anyhow::Context;
    let btf = aya::Btf::from_sys_fs().context("reading kernel BTF")?;
    let mut ebpf = aya::Ebpf::load(BASELINE).context("loading ebpf/baseline.bpf.c")?;
    for (name, tracepoint) in [(DEMAND_FLOOR[0], "tcp_probe"), (DEMAND_FLOOR[1], "tcp_sendmsg_locked")] {
        let prog: &mut aya::programs::BtfTracePoint =
            ebpf.program_mut(name).with_context(|| format!("{name} program"))?.try_into()?;
        prog.load(tracepoint, &btf).with_context(|| format!("loading {name}"))?;
        prog.attach().with_context(|| format!("attaching {name}"))?;
    }
    Ok(ebpf)
}

/// How many loaded programs are named `name`.
fn program_stats_count(name: &str) -> usize {
    aya::programs::loaded_programs().flatten().filter(|p| p.name_as_str() == Some(kernel_name(name))).count()
}
