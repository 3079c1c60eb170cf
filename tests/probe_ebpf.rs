//! The probes against a real kernel and real Docker containers (root only:
//! elsewhere each test says why it skips; CI runs as root).
//!
//! Each test starts the real probe through `host::probe::start`, runs
//! workload containers (`tests/probe/load.c`), tracks some of them and
//! asserts on the events: crossings for the right container with plausible
//! values, in both directions, nothing for untracked containers, and the
//! cgroupfs probe seeing the same container within its interval. Bounds are
//! generous: this runs on a shared 2-core machine.

mod common;
#[path = "probe/workload.rs"]
mod workload;

#[path = "probe/park_scope.rs"]
mod park_scope;

use std::time::{Duration, Instant};

use common::{docker, free_port, root_or_skip};
use host::model::{Band, Direction, EventBounds, EventKind, Metric, Thresholds, Tracked, Unit};
use host::probe::{self, ProbeEvent, ProbeHandle, ProbeKind, ProbeSettings, Signal};
use tokio::sync::mpsc;
use workload::Container;

const MIB: f64 = 1024.0 * 1024.0;

fn settings(kind: ProbeKind) -> ProbeSettings {
    ProbeSettings {
        kind,
        window: Duration::from_millis(100),
        sample_interval: Duration::from_millis(200),
        // Not the machine's bpffs: a test's links must not outlive it. The
        // test of pinning mounts a bpffs of its own.
        pin_dir: None,
        ..ProbeSettings::default()
    }
}

/// Receive events until `pred` matches one or `timeout` passes; returns
/// everything received and whether it matched.
async fn until(
    rx: &mut mpsc::Receiver<ProbeEvent>,
    seen: &mut Vec<Ev>,
    timeout: Duration,
    pred: impl Fn(&Ev) -> bool,
) -> Option<Ev> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) => {
                let ev = Ev::from(ev);
                seen.push(ev.clone());
                if pred(&ev) {
                    return Some(ev);
                }
            }
            _ => return None,
        }
    }
}

/// What a test looks at: a reading, or a signal with its number in
/// `value` (a count, bytes, a port) and its name in `signal`.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    container_id: String,
    /// The metric of a reading; `None` for a signal.
    metric: Option<Metric>,
    /// The name of a signal; `None` for a reading.
    signal: Option<&'static str>,
    value: f64,
    unit: Unit,
    kind: EventKind,
    timestamp_ns: u64,
}

impl From<ProbeEvent> for Ev {
    fn from(event: ProbeEvent) -> Ev {
        match event {
            ProbeEvent::Reading(r) => Ev {
                container_id: r.container_id,
                metric: Some(r.metric),
                signal: None,
                value: r.value,
                unit: r.unit,
                kind: r.kind,
                timestamp_ns: r.timestamp_ns,
            },
            ProbeEvent::Signal(s) => {
                let (value, unit) = match &s {
                    Signal::Accepted { count, .. } => (*count as f64, Unit::Count),
                    Signal::MemoryLimit { bytes, .. } => (*bytes as f64, Unit::Bytes),
                    Signal::Wake { .. } => (1.0, Unit::Count),
                    Signal::PortSyn { port, .. } | Signal::PortListen { port, .. } => (f64::from(*port), Unit::Count),
                };
                Ev {
                    container_id: s.container_id().unwrap_or_default().to_string(),
                    metric: None,
                    signal: Some(s.name()),
                    value,
                    unit,
                    kind: EventKind::Sample,
                    timestamp_ns: s.timestamp_ns(),
                }
            }
        }
    }
}

fn threshold(ev: &Ev) -> Option<f64> {
    match ev.kind {
        EventKind::Crossing(c) => Some(c.threshold),
        EventKind::Sample => None,
    }
}

fn crossing(ev: &Ev, id: &str, metric: Metric, dir: Direction) -> bool {
    ev.container_id == id
        && ev.metric.as_ref() == Some(&metric)
        && matches!(ev.kind, EventKind::Crossing(c) if c.direction == dir)
}

async fn start_ebpf() -> (ProbeHandle, mpsc::Receiver<ProbeEvent>) {
    start_ebpf_with(settings(ProbeKind::Ebpf)).await
}

async fn start_ebpf_with(settings: ProbeSettings) -> (ProbeHandle, mpsc::Receiver<ProbeEvent>) {
    let (tx, rx) = mpsc::channel(65536);
    let handle = probe::start(settings, tx).await.expect("probe starts");
    assert_eq!(handle.kind(), ProbeKind::Ebpf, "as root the eBPF probe must load, not fall back");
    (handle, rx)
}

/// Track `c` and wait until its first sample shows the tracking is live.
async fn track_and_wait(
    handle: &ProbeHandle,
    rx: &mut mpsc::Receiver<ProbeEvent>,
    seen: &mut Vec<Ev>,
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
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    // Limited to half a core: values are a fraction of that limit.
    let burner = Container::start(&["--cpus", "0.5"], &["burn", "3"]);
    // Burns without a limit and is never tracked: must produce nothing.
    let untracked = Container::start(&[], &["burn", "6"]);
    let band = Band { upper: Some(0.6), lower: Some(0.1) };
    track_and_wait(&handle, &mut rx, &mut seen, &burner, Thresholds::default().with(&Metric::CPU, band)).await;
    burner.go();
    untracked.go();

    // The idle container read below the lower threshold at its first
    // window; the load takes it back over it, then over the upper one.
    let up = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &burner.id, Metric::CPU, Direction::Up) && threshold(e) == Some(0.6)
    })
    .await
    .unwrap_or_else(|| panic!("no upward CPU crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::FractionOfLimit, "the container has a CPU limit");
    // Never above the limit, though a 100 ms window can hold the quota of
    // two CFS periods when it straddles a period boundary.
    assert!((0.6..=1.0).contains(&up.value), "CPU of a busy loop limited to 0.5 cores: {up:?}");
    assert!(matches!(up.kind, EventKind::Crossing(c) if (c.threshold - 0.6).abs() < 1e-9));

    // The load stops after 3 s: the window timer notices the quiet
    // container without any context switch of its own.
    let down = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &burner.id, Metric::CPU, Direction::Down)
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

/// Receive everything for `dur`.
async fn collect(rx: &mut mpsc::Receiver<ProbeEvent>, seen: &mut Vec<Ev>, dur: Duration) {
    let _ = until(rx, seen, dur, |_| false).await;
}

fn is_up(ev: &Ev, id: &str) -> bool {
    crossing(ev, id, Metric::CPU, Direction::Up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_saturating_load_crosses_before_the_window_closes() {
    if !root_or_skip() {
        return;
    }
    // A sample at every window close: a crossing at a close shares its
    // timestamp with the samples of that close.
    let (handle, mut rx) =
        start_ebpf_with(ProbeSettings { sample_interval: Duration::from_millis(100), ..settings(ProbeKind::Ebpf) })
            .await;
    let mut seen = Vec::new();
    // Two threads under half a core: 0.3 of the limit over 100 ms is 15 ms
    // of CPU, which two spinning threads prove in about 8 ms.
    let c = Container::start(&["--cpus", "0.5"], &["pulse", "5", "150", "300", "2"]);
    let band = Band { upper: Some(0.3), lower: None };
    track_and_wait(&handle, &mut rx, &mut seen, &c, Thresholds::default().with(&Metric::CPU, band)).await;
    c.go();
    collect(&mut rx, &mut seen, Duration::from_secs(5)).await;
    let starts: Vec<u64> =
        c.logs().lines().filter_map(|l| l.strip_prefix("pulse ")).filter_map(|v| v.trim().parse().ok()).collect();
    assert_eq!(starts.len(), 5, "the workload printed its pulses: {}", c.logs());
    let closes: Vec<u64> =
        seen.iter().filter(|e| e.container_id == c.id && e.kind == EventKind::Sample).map(|e| e.timestamp_ns).collect();
    let mut latencies = Vec::new();
    let mut early = 0;
    for (i, start) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(u64::MAX);
        let up = seen
            .iter()
            .find(|e| is_up(e, &c.id) && e.timestamp_ns >= *start && e.timestamp_ns < next)
            .unwrap_or_else(|| panic!("no upward crossing after pulse {i}; events: {seen:?}"));
        assert!(up.value <= 1.0, "a CPU value above the limit: {up:?}");
        latencies.push((up.timestamp_ns - start) as f64 / 1e6);
        if !closes.contains(&up.timestamp_ns) {
            early += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    assert!(latencies[2] < 30.0, "median load start to crossing {} ms; all {latencies:?}", latencies[2]);
    assert!(early >= 4, "only {early} of 5 crossings came before their window closed; latencies {latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_cpu_of_a_container_held_at_its_limit_stays_at_most_the_limit() {
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let c = Container::start(&["--cpus", "0.1"], &["spin", "1", "30"]);
    track_and_wait(&handle, &mut rx, &mut seen, &c, Thresholds::default()).await;
    c.go();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    seen.clear();
    collect(&mut rx, &mut seen, Duration::from_secs(4)).await;
    let values: Vec<f64> =
        seen.iter().filter(|e| e.container_id == c.id && e.metric == Some(Metric::CPU)).map(|e| e.value).collect();
    assert!(values.len() >= 10, "CPU samples every 200 ms: {values:?}");
    assert!(values.iter().all(|v| *v <= 1.0), "a value above the limit: {values:?}");
    let inside = values.iter().filter(|v| (0.8..=1.0).contains(*v)).count();
    assert!(
        inside * 10 >= values.len() * 9,
        "{inside} of {} windows within 0.8-1.0 of the limit: {values:?}",
        values.len()
    );
}

/// Connection crossings of `c` in `seen`, with their timestamps.
fn connection_crossings<'a>(seen: &'a [Ev], id: &'a str) -> impl Iterator<Item = &'a Ev> + 'a {
    seen.iter().filter(move |e| {
        e.container_id == id && e.metric == Some(Metric::CONNECTIONS) && matches!(e.kind, EventKind::Crossing(_))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_connection_crossings_of_a_hovering_count_are_bounded() {
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let band = Band { upper: Some(10.0), lower: None };
    // Each holds 9 connections and opens and closes a 10th every ms for 2 s.
    let hysteresis = Container::start(&[], &["hover", "10", "2"]);
    let gap = Container::start(&[], &["hover", "10", "2"]);
    let budget = Container::start(&[], &["hover", "10", "2"]);
    let no_hysteresis = |bounds: EventBounds| EventBounds { connection_hysteresis: Some(0.0), ..bounds };
    let defaults = EventBounds::default();
    for (c, bounds) in [
        (&hysteresis, defaults),
        (&gap, no_hysteresis(EventBounds { events_per_window: 0, ..defaults })),
        (&budget, no_hysteresis(EventBounds { connection_min_gap: Duration::ZERO, events_per_window: 4, ..defaults })),
    ] {
        track_and_wait(
            &handle,
            &mut rx,
            &mut seen,
            c,
            Thresholds::default().with(&Metric::CONNECTIONS, band).with_bounds(bounds),
        )
        .await;
    }
    for c in [&hysteresis, &gap, &budget] {
        c.go();
    }
    collect(&mut rx, &mut seen, Duration::from_secs(4)).await;

    // Hysteresis (default: one connection): up at 10, and 9 is not below
    // 10 - 1, so nothing until all close.
    let h: Vec<_> = connection_crossings(&seen, &hysteresis.id).collect();
    assert!(!h.is_empty() && h.len() <= 2, "hovering at the threshold with hysteresis: {h:?}");
    assert!(matches!(h[0].kind, EventKind::Crossing(x) if x.direction == Direction::Up));
    if let Some(last) = h.get(1) {
        assert!(last.value < 9.0, "the way back down comes when the connections close: {h:?}");
    }

    // Rate bound: at least the gap (100 ms) between two events.
    let g: Vec<_> = connection_crossings(&seen, &gap.id).collect();
    assert!(g.len() >= 4, "a hovering count without hysteresis crosses over and over: {g:?}");
    for pair in g.windows(2) {
        let apart = pair[1].timestamp_ns - pair[0].timestamp_ns;
        assert!(apart >= 99_000_000, "connection crossings {apart} ns apart, under the 100 ms gap: {pair:?}");
    }
    // The state the daemon sees ends right: below the threshold.
    assert!(
        matches!(g.last().map(|e| e.kind), Some(EventKind::Crossing(x)) if x.direction == Direction::Down),
        "{g:?}"
    );

    // Budget: at most 4 crossings of the container per 100 ms window; over
    // budget the crossings wait for the next window.
    let b: Vec<_> = connection_crossings(&seen, &budget.id).collect();
    let span = b.last().map_or(0, |e| e.timestamp_ns) - b.first().map_or(0, |e| e.timestamp_ns);
    let windows = span / 100_000_000 + 2;
    assert!(b.len() >= 8, "a hovering count without hysteresis nor gap crosses over and over: {b:?}");
    assert!(b.len() as u64 <= windows * 5, "{} crossings in {windows} windows, budget 4 a window: {b:?}", b.len());
    let stats = handle.stats();
    assert!(stats.held_back > 0, "the kernel held crossings back for the budget: {stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_memory_crossings_follow_allocation_and_release() {
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let hog = Container::start(&["--memory", "512m"], &["mem", "200", "3"]);
    let band = Band { upper: Some(100.0 * MIB), lower: None };
    track_and_wait(&handle, &mut rx, &mut seen, &hog, Thresholds::default().with(&Metric::MEMORY, band)).await;
    hog.go();
    let up =
        until(&mut rx, &mut seen, Duration::from_secs(20), |e| crossing(e, &hog.id, Metric::MEMORY, Direction::Up))
            .await
            .unwrap_or_else(|| panic!("no upward memory crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::Bytes);
    assert!(up.value >= 100.0 * MIB && up.value <= 512.0 * MIB, "{up:?}");
    let down =
        until(&mut rx, &mut seen, Duration::from_secs(20), |e| crossing(e, &hog.id, Metric::MEMORY, Direction::Down))
            .await
            .unwrap_or_else(|| panic!("no downward memory crossing after the release; events: {seen:?}"));
    assert!(down.value < 100.0 * MIB, "{down:?}");
    // The memcg limit set with --memory comes with the samples.
    let limit = seen.iter().find(|e| e.signal == Some("memory-limit"));
    assert_eq!(limit.map(|e| e.value), Some(512.0 * MIB), "memory limit sample; events: {seen:?}");
    assert!(seen.iter().all(|e| e.container_id == hog.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_connections_are_attributed_by_socket_cgroup() {
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let server = Container::start(&[], &["conns", "20", "3"]);
    let band = Band { upper: Some(10.0), lower: Some(1.0) };
    track_and_wait(&handle, &mut rx, &mut seen, &server, Thresholds::default().with(&Metric::CONNECTIONS, band)).await;
    server.go();
    // No connections at the first window: below the lower threshold; the
    // second connection (lower + hysteresis) takes it back, the tenth over
    // the upper threshold.
    let up = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &server.id, Metric::CONNECTIONS, Direction::Up) && threshold(e) == Some(10.0)
    })
    .await
    .unwrap_or_else(|| panic!("no upward connections crossing; events: {seen:?}"));
    assert_eq!((up.unit.clone(), up.value), (Unit::Count, 10.0), "crossing pushed at the 10th accepted connection");
    let peak = until(&mut rx, &mut seen, Duration::from_secs(10), |e| {
        e.container_id == server.id
            && e.metric == Some(Metric::CONNECTIONS)
            && e.kind == EventKind::Sample
            && e.value >= 20.0
    })
    .await;
    assert_eq!(peak.map(|e| e.value), Some(20.0), "20 open connections in a sample; events: {seen:?}");
    let down = until(&mut rx, &mut seen, Duration::from_secs(20), |e| {
        crossing(e, &server.id, Metric::CONNECTIONS, Direction::Down) && e.value < 1.0
    })
    .await
    .unwrap_or_else(|| panic!("no downward crossing when the connections closed; events: {seen:?}"));
    assert_eq!(down.value, 0.0);
    let accepted: f64 = seen.iter().filter(|e| e.signal == Some("accepted-connections")).map(|e| e.value).sum();
    assert!(accepted <= 20.0, "accepted connections over the samples: {accepted}");
    assert!(seen.iter().all(|e| e.container_id == server.id));
}

fn is_wake(ev: &Ev, id: &str) -> bool {
    ev.container_id == id && ev.signal == Some("wake")
}

/// Scale to zero's kernel half: a frozen (paused) server still completes
/// the handshake, the armed probe pushes exactly one wake event for it at
/// once, and the connection is answered after the thaw: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_first_connection_to_a_frozen_container_pushes_one_wake() {
    use std::io::Read;
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let server = Container::start_on("host", &[], &["serve", &port.to_string()]);
    // A tight event budget: the wake must not depend on it.
    let thresholds = Thresholds::default()
        .with(&Metric::CONNECTIONS, Band { upper: Some(1.0), lower: None })
        .with_bounds(EventBounds { events_per_window: 1, ..EventBounds::default() });
    track_and_wait(&handle, &mut rx, &mut seen, &server, thresholds).await;
    let answered = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port));
    let warm = (0..50).find_map(|_| {
        let stream = connect().ok();
        if stream.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        stream
    });
    assert_eq!(answered(warm.expect("the server listens")), "ok\n");

    // Not armed: connections wake nobody.
    assert_eq!(handle.set_wake(&server.id, false).await, Ok(0));
    assert_eq!(answered(connect().expect("connect")), "ok\n");
    let none = until(&mut rx, &mut seen, Duration::from_millis(500), |e| is_wake(e, &server.id)).await;
    assert!(none.is_none(), "a wake without arming: {none:?}");

    let open = handle.set_wake(&server.id, true).await.expect("arming works with the eBPF probe");
    assert_eq!(open, 0, "no connection open before the freeze");
    docker(&["pause", &server.id]);
    let start = Instant::now();
    let first = connect().expect("the kernel completes the handshake of a frozen server");
    let connected = start.elapsed();
    let wake = until(&mut rx, &mut seen, Duration::from_secs(2), |e| is_wake(e, &server.id))
        .await
        .unwrap_or_else(|| panic!("no wake event within 2 s of the first connection; events: {seen:?}"));
    let woke = start.elapsed();
    assert!(wake.metric.is_none(), "a wake is a signal, not a reading: {wake:?}");
    // Once per arming: more connections to the frozen server wake nobody.
    let more: Vec<std::net::TcpStream> = (0..5).map(|_| connect().expect("connect")).collect();
    let again = until(&mut rx, &mut seen, Duration::from_millis(500), |e| is_wake(e, &server.id)).await;
    assert!(again.is_none(), "a second wake for one arming: {again:?}");
    docker(&["unpause", &server.id]);
    assert_eq!(answered(first), "ok\n", "the connection made while frozen is answered after the thaw");
    for s in more {
        assert_eq!(answered(s), "ok\n");
    }
    println!("connect to a frozen server took {connected:?}; its wake event arrived {woke:?} after the connect began");
    assert!(woke < Duration::from_millis(200), "the wake is pushed at once, took {woke:?}");
}

fn is_port(ev: &Ev, signal: &str, port: u16) -> bool {
    ev.signal == Some(signal) && ev.value == f64::from(port) && ev.container_id.is_empty()
}

/// A connection attempt that has neither connected nor failed after `wait`:
/// the kernel held it (no answer: the client retransmits).
async fn held(
    addr: std::net::SocketAddr,
    wait: Duration,
) -> tokio::task::JoinHandle<std::io::Result<tokio::net::TcpStream>> {
    let attempt = tokio::spawn(tokio::net::TcpStream::connect(addr));
    tokio::time::sleep(wait).await;
    assert!(!attempt.is_finished(), "the attempt to {addr} was answered at once (refused or accepted): {attempt:?}");
    attempt
}

/// Scale to zero by removal, the kernel half: a parked port with nothing
/// listening holds connection attempts without an answer (no refusal) and
/// pushes one event per burst; a socket listening on it pushes a listen
/// event and the clients' retransmits connect. In hold mode even a
/// listening port holds attempts; unparked, a port nobody listens on
/// refuses again. IPv4 and IPv6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_a_parked_port_holds_connection_attempts_until_a_listener_takes_them() {
    if !root_or_skip() {
        return;
    }
    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    handle.park(port, probe::ParkMode::Lookup).await.expect("parking works as root");
    let start = Instant::now();
    let first = held(addr, Duration::from_millis(50)).await;
    let burst: Vec<_> = (0..20).map(|_| tokio::spawn(tokio::net::TcpStream::connect(addr))).collect();
    let syn = until(&mut rx, &mut seen, Duration::from_secs(2), |e| is_port(e, "port-syn", port))
        .await
        .unwrap_or_else(|| panic!("no event for the held attempt; events: {seen:?}"));
    let pushed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!first.is_finished() && burst.iter().all(|a| !a.is_finished()), "attempts answered while parked");
    assert!(syn.metric.is_none(), "a held attempt is a signal: {syn:?}");
    let events = seen.iter().filter(|e| is_port(e, "port-syn", port)).count();
    assert_eq!(events, 1, "21 attempts within 100 ms are one event: {seen:?}");
    assert!(handle.stats().parked_syns >= 21, "{:?}", handle.stats());

    // The replica is back: it listens, the kernel says so, and the
    // retransmits (about 1 s after each first attempt) connect.
    let listener = std::net::TcpListener::bind(addr).expect("listen on the parked port");
    until(&mut rx, &mut seen, Duration::from_secs(2), |e| is_port(e, "port-listen", port))
        .await
        .unwrap_or_else(|| panic!("no listen event for the parked port; events: {seen:?}"));
    let stream = tokio::time::timeout(Duration::from_secs(5), first).await.expect("the held attempt connects");
    stream.expect("task").expect("connected through the retransmit");
    let connected = start.elapsed();
    for attempt in burst {
        let stream = tokio::time::timeout(Duration::from_secs(5), attempt).await.expect("connects");
        stream.expect("task").expect("every attempt of the burst connects");
    }
    assert!(connected >= Duration::from_millis(800), "connected after {connected:?}: not through a retransmit?");
    // Lookup: with a listener, a new attempt passes at once.
    let t = Instant::now();
    tokio::net::TcpStream::connect(addr).await.expect("a listening parked port takes connections");
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());

    // Hold: even the listener gets nothing until the port is unparked.
    handle.park(port, probe::ParkMode::Hold).await.expect("hold");
    let on_hold = held(addr, Duration::from_millis(400)).await;
    handle.unpark(port).await.expect("unpark");
    let stream = tokio::time::timeout(Duration::from_secs(5), on_hold).await.expect("connects after the unpark");
    stream.expect("task").expect("connected");
    drop(listener);
    // Unparked: a port nobody listens on refuses at once, as it should.
    let refused = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused), "{refused:?}");

    // IPv6 on ::1, another port.
    let port6 = free_port();
    let addr6: std::net::SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port6).into();
    handle.park(port6, probe::ParkMode::Lookup).await.expect("park");
    let attempt6 = held(addr6, Duration::from_millis(300)).await;
    until(&mut rx, &mut seen, Duration::from_secs(2), |e| is_port(e, "port-syn", port6))
        .await
        .unwrap_or_else(|| panic!("no event for an IPv6 attempt; events: {seen:?}"));
    let _listener6 = std::net::TcpListener::bind(addr6).expect("listen on ::1");
    let stream = tokio::time::timeout(Duration::from_secs(5), attempt6).await.expect("IPv6 attempt connects");
    stream.expect("task").expect("connected");
    handle.unpark(port6).await.expect("unpark");
    let stats = handle.stats();
    assert_eq!(stats.unattributed, 0, "port events need no container: {stats:?}");
    println!(
        "parked port: event pushed {pushed:?} after the first attempt; connected through the retransmit after {connected:?}"
    );
}

/// The kernel's tracked map holds `PROBE_MAX_TRACKED` containers. Filled
/// through the probe's own tracking (one real container, the rest fake
/// cgroup ids), one more real container is refused: counted, and nothing
/// of it reaches the kernel, while every entry already there keeps its
/// samples; a freed slot then takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_one_container_past_the_tracked_map_is_refused_and_counted() {
    if !root_or_skip() {
        return;
    }
    // Every entry samples once a second in the same few ticks: a ring
    // buffer large enough that none is lost to the burst (drops are
    // asserted at the end).
    let settings = ProbeSettings {
        sample_interval: Duration::from_secs(1),
        ring_buffer_bytes: 8 << 20,
        ..settings(ProbeKind::Ebpf)
    };
    let (handle, mut rx) = start_ebpf_with(settings).await;
    let mut seen = Vec::new();
    let real = Container::start(&[], &["idle"]);
    track_and_wait(&handle, &mut rx, &mut seen, &real, Thresholds::default()).await;
    let max = host::probe::abi::PROBE_MAX_TRACKED;
    // Ids no kernfs node has: the top of the u64 range.
    for i in 0..max - 1 {
        handle.track_cgroup(&format!("fake-{i}"), u64::MAX - i, Thresholds::default());
    }
    let last = format!("fake-{}", max - 2);
    let sampled = until(&mut rx, &mut seen, Duration::from_secs(60), |e| e.container_id == last).await;
    assert!(sampled.is_some(), "no sample for the {max}th tracked entry within 60 s");
    assert_eq!(handle.stats().refused, 0, "{max} entries fit: {:?}", handle.stats());

    let extra = Container::start(&[], &["idle"]);
    handle.track(Tracked { container_id: extra.id.clone(), thresholds: Thresholds::default() });
    let deadline = Instant::now() + Duration::from_secs(15);
    while handle.stats().refused == 0 && Instant::now() < deadline {
        collect(&mut rx, &mut seen, Duration::from_millis(200)).await;
    }
    assert_eq!(handle.stats().refused, 1, "the container past the limit is refused and counted: {:?}", handle.stats());

    // Three seconds later: the first and the last entry still sample, the
    // refused container has nothing.
    seen.clear();
    collect(&mut rx, &mut seen, Duration::from_secs(3)).await;
    for id in [real.id.as_str(), "fake-0", last.as_str()] {
        let samples = seen.iter().filter(|e| e.container_id == id && e.kind == EventKind::Sample).count();
        assert!(samples >= 2, "{id}: {samples} samples in 3 s once the map was full");
    }
    assert!(!seen.iter().any(|e| e.container_id == extra.id), "events for the refused container");

    // A slot freed: the refused container is tracked when asked again.
    handle.untrack("fake-0");
    track_and_wait(&handle, &mut rx, &mut seen, &extra, Thresholds::default()).await;
    let stats = handle.stats();
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.unattributed, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_container_stops_producing_events() {
    if !root_or_skip() {
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
    if !root_or_skip() {
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
        .track(Tracked { container_id: burner.id.clone(), thresholds: Thresholds::default().with(&Metric::CPU, band) });
    handle.track(Tracked {
        container_id: server.id.clone(),
        thresholds: Thresholds::default().with(&Metric::CONNECTIONS, Band { upper: Some(3.0), lower: None }),
    });
    let first =
        until(&mut rx, &mut seen, interval * 5, |e| e.container_id == burner.id && e.metric == Some(Metric::MEMORY))
            .await;
    assert!(first.is_some_and(|e| e.value > 0.0), "memory reading within a few intervals; events: {seen:?}");
    burner.go();
    server.go();
    let up = until(&mut rx, &mut seen, interval * 10, |e| crossing(e, &burner.id, Metric::CPU, Direction::Up))
        .await
        .unwrap_or_else(|| panic!("cgroupfs probe saw no CPU crossing; events: {seen:?}"));
    assert_eq!(up.unit, Unit::Cores);
    assert!((0.5..=2.2).contains(&up.value), "{up:?}");
    // Both containers run at once: the connections crossing may already have
    // arrived while the CPU one was awaited.
    let conns_up = |e: &Ev| crossing(e, &server.id, Metric::CONNECTIONS, Direction::Up);
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
    if !root_or_skip() {
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

/// Run in a child process with CAP_BPF and CAP_PERFMON only (see the next
/// test): the eBPF probe loads, but parking a port needs CAP_NET_ADMIN.
#[tokio::test]
async fn park_child_without_net_admin() {
    if std::env::var_os("PROBE_PARK_CHILD").is_none() {
        return; // only meaningful when started by the test below
    }
    let (tx, _rx) = mpsc::channel(16);
    let handle = probe::start(ProbeSettings::default(), tx).await.expect("start");
    assert_eq!(handle.kind(), ProbeKind::Ebpf, "CAP_BPF and CAP_PERFMON are enough for the probe");
    let err = handle.park(free_port(), probe::ParkMode::Lookup).await.expect_err("parking needs CAP_NET_ADMIN");
    assert!(err.contains("needs CAP_NET_ADMIN") && err.contains("autoscale.zero=freeze"), "{err}");
}

/// Run in a child process with the capabilities the parent gives it: the
/// eBPF probe loads and parks a port.
#[tokio::test]
async fn park_child_with_net_admin() {
    if std::env::var_os("PROBE_PARK_CHILD").is_none() {
        return; // only meaningful when started by the test below
    }
    let (tx, _rx) = mpsc::channel(16);
    let handle = probe::start(ProbeSettings::default(), tx).await.expect("start");
    assert_eq!(handle.kind(), ProbeKind::Ebpf);
    let port = free_port();
    handle.park(port, probe::ParkMode::Lookup).await.expect("parking works with these capabilities");
    handle.unpark(port).await.expect("unpark");
}

/// Run `child` of this test binary under `setpriv` with only `caps`.
fn run_child(child: &str, caps: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new("setpriv")
        .args([&format!("--bounding-set=-all,{caps}"), "--inh-caps=-all"])
        .arg(exe)
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env("PROBE_PARK_CHILD", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run setpriv (util-linux)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{child} with {caps} failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
}

#[test]
fn parking_needs_net_admin_besides_bpf_and_perfmon_or_sys_admin() {
    if !root_or_skip() {
        return;
    }
    run_child("park_child_without_net_admin", "+bpf,+perfmon");
    run_child("park_child_with_net_admin", "+bpf,+perfmon,+net_admin");
    // What deploy/stack.yml grants on Docker Engine 20.10, which knows
    // neither CAP_BPF nor CAP_PERFMON: enough with TCX links (Linux 6.6+);
    // the netlink attachment of older kernels also wants CAP_NET_ADMIN.
    run_child("park_child_with_net_admin", "+sys_admin");
}

/// What the pin tests start from: a private bpffs, eBPF probe settings
/// pinning in its `autoscaler` folder, and a free loopback port to park.
fn pinned_probe() -> (PrivateBpffs, ProbeSettings, u16, std::net::SocketAddr) {
    let bpffs = PrivateBpffs::mount();
    let pinned = ProbeSettings { pin_dir: Some(bpffs.dir.path().join("autoscaler")), ..settings(ProbeKind::Ebpf) };
    let port = free_port();
    (bpffs, pinned, port, ([127, 0, 0, 1], port).into())
}

/// A bpffs mounted on a temporary directory for one test, unmounted (by
/// the test that mounted it) when dropped.
struct PrivateBpffs {
    dir: tempfile::TempDir,
}

impl PrivateBpffs {
    fn mount() -> PrivateBpffs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status =
            std::process::Command::new("mount").args(["-t", "bpf", "bpf"]).arg(dir.path()).status().expect("run mount");
        assert!(status.success(), "mount -t bpf bpf {}: {status}", dir.path().display());
        PrivateBpffs { dir }
    }

    /// Pin file names in `sub`, sorted.
    fn pins(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join(sub))
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A daemon that stops while a port is parked leaves it held: its pinned
/// classifier link outlives it, so clients keep waiting instead of being
/// refused. The next daemon's classifier goes first and takes over the
/// ports it parks again; the old links are released after the grace, and
/// then a port nobody parked or listens on refuses again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_a_parked_port_stays_held_across_a_probe_restart() {
    if !root_or_skip() {
        return;
    }
    let (bpffs, pinned, port, addr) = pinned_probe();

    let (first, first_rx) = start_ebpf_with(pinned.clone()).await;
    first.park(port, probe::ParkMode::Lookup).await.expect("parking works as root");
    let pins = bpffs.pins("autoscaler");
    assert!(pins.iter().any(|p| p.starts_with("park-") && p.ends_with("-lo")), "no pin for lo: {pins:?}");

    // The first daemon stops: its pins are handed over, its links stay.
    drop(first);
    drop(first_rx);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bpffs.pins("autoscaler").iter().all(|p| p.starts_with("orphan-")) {
        assert!(Instant::now() < deadline, "pins not handed over: {:?}", bpffs.pins("autoscaler"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = held(addr, Duration::from_millis(400)).await;

    // The next daemon parks the port again: its classifier sees the
    // waiting client's retransmit first and pushes the event.
    let (next, mut rx) = start_ebpf_with(pinned).await;
    let started = Instant::now();
    next.park(port, probe::ParkMode::Lookup).await.expect("park again");
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, Duration::from_secs(5), |e| is_port(e, "port-syn", port))
        .await
        .unwrap_or_else(|| panic!("the new probe saw no attempt on its parked port; events: {seen:?}"));
    assert!(!waiting.is_finished(), "the waiting client was answered: {waiting:?}");
    let pins = bpffs.pins("autoscaler");
    assert!(pins.iter().any(|p| p.starts_with("orphan-")), "old links released before the grace: {pins:?}");
    assert!(pins.iter().any(|p| p.starts_with("park-")), "the new probe pinned nothing: {pins:?}");

    // Unparked by the new daemon, the port is still held by the old links
    // until the grace ends; then they go, and nothing holds it any more.
    next.unpark(port).await.expect("unpark");
    assert!(bpffs.pins("autoscaler").iter().all(|p| p.starts_with("orphan-")), "{:?}", bpffs.pins("autoscaler"));
    let still = held(addr, Duration::from_millis(300)).await;
    let deadline = started + probe::INHERITED_GRACE + Duration::from_secs(5);
    while !bpffs.pins("autoscaler").is_empty() {
        assert!(Instant::now() < deadline, "old links not released: {:?}", bpffs.pins("autoscaler"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing holds the port now: a new attempt is refused at once.
    let refused = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused), "{refused:?}");
    drop((waiting, still, next));
}

/// Wait until the pins in `sub` are gone, then check nothing holds `addr`
/// any more: a new attempt is refused at once.
async fn released(bpffs: &PrivateBpffs, sub: &str, addr: std::net::SocketAddr, within: Duration) -> Duration {
    let start = Instant::now();
    while !bpffs.pins(sub).is_empty() {
        assert!(
            start.elapsed() < within,
            "pins a stopped daemon left still hold after {within:?}: {:?}",
            bpffs.pins(sub)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let refused = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused), "{refused:?}");
    took
}

/// Park `port` with a probe pinning in `dir`, then stop it; its links stay.
async fn leave_parked(pinned: &ProbeSettings, port: u16) {
    let (first, first_rx) = start_ebpf_with(pinned.clone()).await;
    first.park(port, probe::ParkMode::Lookup).await.expect("parking works as root");
    drop(first);
    drop(first_rx);
    // The probe's task ends and renames its pins.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Issue 24, item 5: a daemon killed while its pid is given to another
/// process must not hold the port forever. The pin names the daemon by
/// pid and start time; a live process with that pid but another start
/// time is not the daemon, and the next probe releases its links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_a_dead_daemons_pins_are_released_though_its_pid_runs_again() {
    if !root_or_skip() {
        return;
    }
    let (bpffs, pinned, port, addr) = pinned_probe();
    let dir = bpffs.dir.path().join("autoscaler");
    let (first, first_rx) = start_ebpf_with(pinned.clone()).await;
    first.park(port, probe::ParkMode::Lookup).await.expect("parking works as root");
    // As if the daemon were SIGKILLed (no orphan rename) and its pid given
    // to another process: its pins now name a running process, `sleep`,
    // with a start time that is not that process's.
    let mut other = std::process::Command::new("sleep").arg("120").spawn().expect("sleep");
    let pins = bpffs.pins("autoscaler");
    assert!(!pins.is_empty(), "nothing pinned");
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for pin in &pins {
        // The pin's interface, whatever the owner part looks like.
        let interface = interfaces
            .iter()
            .filter(|i| pin.ends_with(&format!("-{i}")))
            .max_by_key(|i| i.len())
            .unwrap_or_else(|| panic!("no interface named by {pin}"));
        std::fs::rename(dir.join(pin), dir.join(format!("park-{}-s0-0-{interface}", other.id()))).expect("rename");
    }
    drop(first);
    drop(first_rx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = held(addr, Duration::from_millis(400)).await;

    let (next, _rx) = start_ebpf_with(pinned).await;
    let took = released(&bpffs, "autoscaler", addr, probe::INHERITED_GRACE + Duration::from_secs(5)).await;
    eprintln!("left-behind links of a reused pid released {took:?} after the next probe started");
    let _ = other.kill();
    let _ = other.wait();
    drop((waiting, next));
}

/// Issue 24, item 5: a daemon restarted with the cgroupfs probe (it cannot
/// park) releases at once what the last one left, instead of leaving
/// clients waiting for a wake that cannot come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroupfs_probe_releases_the_links_a_stopped_daemon_left() {
    if !root_or_skip() {
        return;
    }
    let (bpffs, pinned, port, addr) = pinned_probe();
    leave_parked(&pinned, port).await;
    assert!(bpffs.pins("autoscaler").iter().all(|p| p.starts_with("orphan-")), "{:?}", bpffs.pins("autoscaler"));
    let waiting = held(addr, Duration::from_millis(400)).await;

    let interval = Duration::from_secs(1);
    let cgroupfs = ProbeSettings { kind: ProbeKind::Cgroupfs { interval }, ..pinned };
    let (tx, _rx) = mpsc::channel(1024);
    let next = probe::start(cgroupfs, tx).await.expect("the cgroupfs probe starts");
    let took = released(&bpffs, "autoscaler", addr, Duration::from_secs(2)).await;
    eprintln!("the cgroupfs probe released the left-behind links {took:?} after it started");
    drop((waiting, next));
}
