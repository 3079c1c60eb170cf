//! The probes against a real kernel and real Docker containers (root only:
//! elsewhere each test says why it skips; CI runs as root).
//!
//! Each test starts the real probe through `host::probe::start`, runs
//! workload containers (`tests/probe/load.c`), tracks some of them and
//! asserts on the events: crossings for the right container with plausible
//! values, in both directions, nothing for untracked containers, and the
//! cgroupfs probe seeing the same container within its interval. Bounds are
//! generous: this runs on a shared 2-core machine.

#[path = "probe/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use host::model::{Band, Direction, EventKind, Metric, Thresholds, Tracked, Unit};
use host::probe::{self, ProbeEvent, ProbeHandle, ProbeKind, ProbeSettings};
use tokio::sync::mpsc;
use workload::{Container, root_or_explain};

const MIB: f64 = 1024.0 * 1024.0;

fn settings(kind: ProbeKind) -> ProbeSettings {
    ProbeSettings { kind, window: Duration::from_millis(100), sample_interval: Duration::from_millis(200) }
}

/// Receive events until `pred` matches one or `timeout` passes; returns
/// everything received and whether it matched.
async fn until(
    rx: &mut mpsc::Receiver<ProbeEvent>,
    seen: &mut Vec<ProbeEvent>,
    timeout: Duration,
    pred: impl Fn(&ProbeEvent) -> bool,
) -> Option<ProbeEvent> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) => {
                seen.push(ev.clone());
                if pred(&ev) {
                    return Some(ev);
                }
            }
            _ => return None,
        }
    }
}

fn crossing(ev: &ProbeEvent, id: &str, metric: Metric, dir: Direction) -> bool {
    ev.container_id == id && ev.metric == metric && matches!(ev.kind, EventKind::Crossing(c) if c.direction == dir)
}

async fn start_ebpf() -> (ProbeHandle, mpsc::Receiver<ProbeEvent>) {
    let (tx, rx) = mpsc::channel(65536);
    let handle = probe::start(settings(ProbeKind::Ebpf), tx).await.expect("probe starts");
    assert_eq!(handle.kind(), ProbeKind::Ebpf, "as root the eBPF probe must load, not fall back");
    (handle, rx)
}

/// Track `c` and wait until its first sample shows the tracking is live.
async fn track_and_wait(
    handle: &ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    seen: &mut Vec<ProbeEvent>,
    c: &Container,
    thresholds: Thresholds,
) {
    handle.track(Tracked { container_id: c.id.clone(), thresholds });
    let first =
        until(rx, seen, Duration::from_secs(15), |e| e.container_id == c.id && e.kind == EventKind::Sample).await;
    assert!(first.is_some(), "no sample for tracked container {} within 15 s; events: {seen:?}", c.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_cpu_crossings_go_up_and_down_for_the_tracked_container_only() {
    if !root_or_explain("ebpf_cpu_crossings") {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    // Limited to half a core: values are a fraction of that limit.
    let burner = Container::start(&["--cpus", "0.5"], &["burn", "3"]);
    // Burns without a limit and is never tracked: must produce nothing.
    let untracked = Container::start(&[], &["burn", "6"]);
    let band = Band { upper: Some(0.6), lower: Some(0.1) };
    track_and_wait(&handle, &mut rx, &mut seen, &burner, Thresholds { cpu: band, ..Default::default() }).await;
    burner.go();
    untracked.go();

    let up =
        until(&mut rx, &mut seen, Duration::from_secs(20), |e| crossing(e, &burner.id, Metric::Cpu, Direction::Up))
            .await
            .unwrap_or_else(|| panic!("no upward CPU crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::FractionOfLimit, "the container has a CPU limit");
    // At most 2.0: a 100 ms window can hold the quota of two CFS periods
    // (50 ms each) when it straddles a period boundary.
    assert!((0.6..=2.05).contains(&up.value), "CPU of a busy loop limited to 0.5 cores: {up:?}");
    assert!(matches!(up.kind, EventKind::Crossing(c) if (c.threshold - 0.6).abs() < 1e-9));

    // The load stops after 3 s: the window timer notices the quiet
    // container without any context switch of its own.
    let down = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &burner.id, Metric::Cpu, Direction::Down)
            && matches!(e.kind, EventKind::Crossing(c) if c.threshold < 0.2)
    })
    .await
    .unwrap_or_else(|| panic!("no downward CPU crossing of the lower threshold; events: {seen:?}"));
    assert!(down.value < 0.1, "{down:?}");
    assert!(down.timestamp_ns > up.timestamp_ns);

    assert!(seen.iter().all(|e| e.container_id == burner.id), "events for an untracked container: {seen:?}");
    let stats = handle.stats();
    assert_eq!(stats.unattributed, 0, "the kernel pushed events for untracked cgroups: {stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(stats.events >= seen.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_memory_crossings_follow_allocation_and_release() {
    if !root_or_explain("ebpf_memory_crossings") {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let hog = Container::start(&["--memory", "512m"], &["mem", "200", "3"]);
    let band = Band { upper: Some(100.0 * MIB), lower: None };
    track_and_wait(&handle, &mut rx, &mut seen, &hog, Thresholds { memory: band, ..Default::default() }).await;
    hog.go();
    let up =
        until(&mut rx, &mut seen, Duration::from_secs(20), |e| crossing(e, &hog.id, Metric::Memory, Direction::Up))
            .await
            .unwrap_or_else(|| panic!("no upward memory crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::Bytes);
    assert!(up.value >= 100.0 * MIB && up.value <= 512.0 * MIB, "{up:?}");
    let down =
        until(&mut rx, &mut seen, Duration::from_secs(20), |e| crossing(e, &hog.id, Metric::Memory, Direction::Down))
            .await
            .unwrap_or_else(|| panic!("no downward memory crossing after the release; events: {seen:?}"));
    assert!(down.value < 100.0 * MIB, "{down:?}");
    // The memcg limit set with --memory comes with the samples.
    let limit = seen.iter().find(|e| e.metric == Metric::Other(probe::MEMORY_LIMIT_METRIC.into()));
    assert_eq!(limit.map(|e| e.value), Some(512.0 * MIB), "memory limit sample; events: {seen:?}");
    assert!(seen.iter().all(|e| e.container_id == hog.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_connections_are_attributed_by_socket_cgroup() {
    if !root_or_explain("ebpf_connections") {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let server = Container::start(&[], &["conns", "20", "3"]);
    let band = Band { upper: Some(10.0), lower: Some(1.0) };
    track_and_wait(&handle, &mut rx, &mut seen, &server, Thresholds { connections: band, ..Default::default() }).await;
    server.go();
    let up = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &server.id, Metric::Connections, Direction::Up)
    })
    .await
    .unwrap_or_else(|| panic!("no upward connections crossing; events: {seen:?}"));
    assert_eq!((up.unit.clone(), up.value), (Unit::Count, 10.0), "crossing pushed at the 10th accepted connection");
    let peak = until(&mut rx, &mut seen, Duration::from_secs(10), |e| {
        e.container_id == server.id && e.metric == Metric::Connections && e.kind == EventKind::Sample && e.value >= 20.0
    })
    .await;
    assert_eq!(peak.map(|e| e.value), Some(20.0), "20 open connections in a sample; events: {seen:?}");
    let down = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &server.id, Metric::Connections, Direction::Down) && e.value < 1.0
    })
    .await
    .unwrap_or_else(|| panic!("no downward crossing when the connections closed; events: {seen:?}"));
    assert_eq!(down.value, 0.0);
    let accepted: f64 =
        seen.iter().filter(|e| e.metric == Metric::Other(probe::ACCEPTED_METRIC.into())).map(|e| e.value).sum();
    assert!(accepted <= 20.0, "accepted connections over the samples: {accepted}");
    assert!(seen.iter().all(|e| e.container_id == server.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_container_stops_producing_events() {
    if !root_or_explain("untrack") {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let c = Container::start(&[], &["idle"]);
    track_and_wait(&handle, &mut rx, &mut seen, &c, Thresholds::default()).await;
    handle.untrack(&c.id);
    // Let in-flight events drain, then expect silence.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let late = until(&mut rx, &mut seen, Duration::from_secs(2), |_| true).await;
    assert!(late.is_none(), "event after untrack: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroupfs_probe_reports_the_same_container_within_its_interval() {
    if !root_or_explain("cgroupfs_probe") {
        return;
    }
    let interval = Duration::from_secs(1);
    let (tx, mut rx) = mpsc::channel(4096);
    let handle = probe::start(settings(ProbeKind::Cgroupfs { interval }), tx).await.expect("probe starts");
    assert_eq!(handle.kind(), ProbeKind::Cgroupfs { interval });
    let mut seen = Vec::new();
    let burner = Container::start(&[], &["burn", "30"]);
    let server = Container::start(&[], &["conns", "5", "30"]);
    let band = Band { upper: Some(0.5), lower: None };
    handle
        .track(Tracked { container_id: burner.id.clone(), thresholds: Thresholds { cpu: band, ..Default::default() } });
    handle.track(Tracked {
        container_id: server.id.clone(),
        thresholds: Thresholds { connections: Band { upper: Some(3.0), lower: None }, ..Default::default() },
    });
    let first =
        until(&mut rx, &mut seen, interval * 5, |e| e.container_id == burner.id && e.metric == Metric::Memory).await;
    assert!(first.is_some_and(|e| e.value > 0.0), "memory reading within a few intervals; events: {seen:?}");
    burner.go();
    server.go();
    let up = until(&mut rx, &mut seen, interval * 10, |e| crossing(e, &burner.id, Metric::Cpu, Direction::Up))
        .await
        .unwrap_or_else(|| panic!("cgroupfs probe saw no CPU crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::Cores);
    assert!((0.5..=2.2).contains(&up.value), "{up:?}");
    // Both containers run at once: the connections crossing may already have
    // arrived while the CPU one was awaited.
    let conns_up = |e: &ProbeEvent| crossing(e, &server.id, Metric::Connections, Direction::Up);
    let conns = match seen.iter().find(|e| conns_up(e)).cloned() {
        Some(event) => Some(event),
        None => until(&mut rx, &mut seen, interval * 10, conns_up).await,
    }
    .unwrap_or_else(|| panic!("cgroupfs probe saw no connections crossing; events: {seen:?}"));
    assert_eq!(conns.value, 5.0, "accepted connections held by the server's processes");
    assert!(seen.iter().all(|e| e.container_id == burner.id || e.container_id == server.id));
}

/// Run in a child process without capabilities (see the next test): the
/// eBPF probe must refuse to load and `start` must fall back to cgroupfs.
#[tokio::test]
async fn fallback_child_without_capabilities() {
    if std::env::var_os("PROBE_FALLBACK_CHILD").is_none() {
        return; // only meaningful when started by the test below
    }
    let (tx, _rx) = mpsc::channel(16);
    let handle = probe::start(ProbeSettings::default(), tx).await.expect("start falls back instead of failing");
    assert_eq!(handle.kind(), ProbeKind::Cgroupfs { interval: Duration::from_secs(1) });
}

#[test]
fn without_bpf_rights_the_daemon_falls_back_to_cgroupfs() {
    if !root_or_explain("fallback without rights") {
        return;
    }
    // Root with an empty bounding set gets no capabilities at exec.
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all"])
        .arg(exe)
        .args(["--exact", "fallback_child_without_capabilities", "--nocapture", "--test-threads=1"])
        .env("PROBE_FALLBACK_CHILD", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run setpriv (util-linux)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child without capabilities failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
}
