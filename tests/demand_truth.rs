//! Truth of the demand metrics (`ebpf/demand.h`, docs/demand.md) against a
//! real kernel, a real workload and an open-loop client (root only:
//! elsewhere it says why it skips; CI runs it as root).
//!
//! The workload (`tests/probe/load.c http`: one thread, 1 ms of CPU per
//! request, so about 1,000 requests per second at most) runs in a container
//! on the host network; the client (`tests/probe/openloop.rs`) sends
//! requests at fixed times on loopback and records when each was due, sent
//! and answered. For every sample window inside each run the kernel's
//! figures must agree with the client's:
//! - response time p50 and p99 within 10% (or 1 ms) of the client's,
//!   counted from the scheduled time to the first byte of the answer; the
//!   client's own lag (the most a request of the window was sent after its
//!   scheduled time, printed as `client_lag_ms`) is allowed below, since
//!   it happens before the request reaches the server's kernel;
//! - in-flight within the client's outstanding requests around the close
//!   (give or take one);
//! - for one request per connection above saturation, the queue within
//!   three of the outstanding requests (the server works on one and has
//!   accepted at most one more);
//!
//! at 10, 300 and 2,000 requests per second (the last about twice what the
//! server can answer), one request per connection and keep-alive.
//!
//! Thresholds on every demand metric cross at once (within a window or
//! two of the load that crosses them, where samples come every second),
//! both ways.
//!
//! The same on the demo workload (`examples/demo`, image
//! `swarm-autoscaler-demo:local`, as Swarm runs it in the end-to-end tests:
//! host network, half a CPU, one thread per connection): `/burn?ms=5` at 10
//! and 200 requests per second (the last asks for twice the CPU the
//! container may use: its requests wait for CPU time), one request per
//! connection and keep-alive; no queue figure there (it accepts every
//! connection at once).

mod common;
#[path = "probe/openloop.rs"]
mod openloop;
#[path = "probe/workload.rs"]
mod workload;

use std::time::Duration;

use common::{IMAGE, free_port, root_or_skip};
use host::model::{Band, Direction, EventKind, Metric, Thresholds, Tracked, monotonic_ns};
use host::probe::{self, ProbeEvent, ProbeKind, ProbeSettings};
use openloop::Row;
use tokio::sync::mpsc;
use workload::Container;

/// CPU per request in the workload, us.
const WORK_US: &str = "1000";

/// One probe at a time: the tests of this file load their own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn drain(rx: &mut mpsc::Receiver<ProbeEvent>, seen: &mut Vec<ProbeEvent>, dur: Duration) {
    let end = tokio::time::Instant::now() + dur;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        seen.push(ev);
    }
}

/// Wait until the server answers.
async fn wait_listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the workload never listened on port {port}");
}

async fn start_probe() -> (probe::ProbeHandle, mpsc::Receiver<ProbeEvent>) {
    let settings = ProbeSettings {
        kind: ProbeKind::Ebpf,
        window: Duration::from_millis(100),
        sample_interval: Duration::from_millis(1000),
        pin_dir: None,
        ..ProbeSettings::default()
    };
    let (tx, rx) = mpsc::channel(1 << 16);
    let handle = probe::start(settings, tx).await.expect("probe starts");
    assert_eq!(handle.kind(), ProbeKind::Ebpf, "as root the eBPF probe must load");
    (handle, rx)
}

/// Track `server` (listening on `port` before it is tracked: the listener
/// iterator must find it) and wait for its first queue sample.
async fn track(handle: &probe::ProbeHandle, rx: &mut mpsc::Receiver<ProbeEvent>, server: &Container, port: u16) {
    wait_listening(port).await;
    handle.track(Tracked { container_id: server.id.clone(), thresholds: Thresholds::default() });
    let mut seen = Vec::new();
    drain(rx, &mut seen, Duration::from_millis(2500)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, ProbeEvent::Reading(r) if r.container_id == server.id && r.metric.name() == "queue")),
        "no queue sample for the tracked server: {seen:?}"
    );
}

/// Run each load (`keep_alive`, rate, seconds) of `GET path` against the
/// server and compare every full sample window; returns the failures and
/// the report. `queue_check`: one request per connection above saturation,
/// the queue within three of the outstanding requests.
async fn compare_loads(
    rx: &mut mpsc::Receiver<ProbeEvent>,
    server: &Container,
    port: u16,
    path: &str,
    loads: &[(bool, f64, f64)],
    queue_check: bool,
) -> (Vec<String>, String) {
    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut seen = Vec::new();
    for &(keep_alive, rate, secs) in loads {
        let label = format!("{}@{rate}/s", if keep_alive { "keep-alive" } else { "close" });
        seen.clear();
        let client = openloop::run_path(port, path, rate, Duration::from_secs_f64(secs), keep_alive);
        let (outcomes, ()) = tokio::join!(client, drain(rx, &mut seen, Duration::from_secs_f64(secs + 0.5)));
        // Until every answer is in, and the sample after it.
        drain(rx, &mut seen, Duration::from_millis(1200)).await;
        let failed = outcomes.iter().filter(|o| o.first_byte_ns == 0).count();
        assert_eq!(failed, 0, "{label}: {failed} requests got no answer");
        let samples = openloop::kernel_samples(&seen, &server.id);
        let rows = openloop::compare(&outcomes, &samples);
        report.push(openloop::describe(&label, &rows));
        let full: Vec<&Row> = rows.iter().filter(|r| r.answered >= 5).collect();
        if full.is_empty() {
            failures.push(format!("{label}: no sample window with answers inside the run"));
        }
        for r in full {
            let mut bad = Vec::new();
            if !r.close_enough(r.kernel_p50, r.client_p50) {
                bad.push("p50");
            }
            if !r.close_enough(r.kernel_p99, r.client_p99) {
                bad.push("p99");
            }
            if !r.inflight_ok() {
                bad.push("inflight");
            }
            if r.kernel_queue > r.outstanding_hi as f64 + 1.0
                || (queue_check
                    && !keep_alive
                    && r.outstanding_lo >= 20
                    && r.kernel_queue + 3.0 < r.outstanding_lo as f64)
            {
                bad.push("queue");
            }
            if !bad.is_empty() {
                failures.push(format!("{label}: {bad:?} in {}", openloop::describe(&label, &[*r])));
            }
        }
    }
    (failures, report.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_metrics_match_an_open_loop_client_below_and_above_saturation() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    openloop::raise_nofile();
    let (handle, mut rx) = start_probe().await;
    let port = free_port();
    let server = Container::start_on("host", &[], &["http", &port.to_string(), WORK_US]);
    track(&handle, &mut rx, &server, port).await;
    let loads = [
        (false, 10.0, 4.0),
        (false, 300.0, 4.0),
        (false, 2000.0, 2.5),
        (true, 10.0, 4.0),
        (true, 300.0, 4.0),
        (true, 2000.0, 2.5),
    ];
    let (failures, report) = compare_loads(&mut rx, &server, port, "/", &loads, true).await;
    println!("{report}");
    assert!(failures.is_empty(), "kernel and client disagree:\n{}\nall windows:\n{report}", failures.join("\n"));
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_metrics_match_an_open_loop_client_on_the_demo_workload() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    openloop::raise_nofile();
    let port = free_port();
    let env = format!("PORT={port}");
    let Some(server) = Container::of_image(IMAGE, &["--network", "host", "--cpus", "0.5", "--env", &env], &[]) else {
        common::skip(&format!("no {IMAGE} image (examples/demo/build-image.sh)"));
        return;
    };
    let (handle, mut rx) = start_probe().await;
    track(&handle, &mut rx, &server, port).await;
    let loads = [(false, 10.0, 4.0), (false, 200.0, 4.0), (true, 10.0, 4.0), (true, 200.0, 4.0)];
    let (failures, report) = compare_loads(&mut rx, &server, port, "/burn?ms=5", &loads, false).await;
    println!("demo workload, /burn?ms=5, half a CPU:\n{report}");
    assert!(failures.is_empty(), "kernel and client disagree:\n{}\nall windows:\n{report}", failures.join("\n"));
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

/// The demand metrics with a threshold in the crossing test, and the upper
/// threshold in their unit.
const BANDS: [(&str, f64); 6] = [
    ("inflight", 5.0),
    ("queue", 5.0),
    ("request-rate", 500.0),
    ("response-time-p50", 0.005),
    ("response-time-p95", 0.005),
    ("response-time-p99", 0.005),
];

/// Kernel timestamp of the first crossing of `metric` in `direction` for
/// `container` at or after `since`.
fn first_crossing(seen: &[ProbeEvent], container: &str, metric: &str, direction: Direction, since: u64) -> Option<u64> {
    seen.iter().find_map(|e| match e {
        ProbeEvent::Reading(r)
            if r.container_id == container
                && r.metric.name() == metric
                && r.timestamp_ns >= since
                && matches!(r.kind, EventKind::Crossing(c) if c.direction == direction) =>
        {
            Some(r.timestamp_ns)
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_on_every_demand_metric_cross_at_once_both_ways() {
    if !root_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    openloop::raise_nofile();
    let (handle, mut rx) = start_probe().await;
    let port = free_port();
    let server = Container::start_on("host", &[], &["http", &port.to_string(), WORK_US]);
    wait_listening(port).await;
    let thresholds = BANDS.iter().fold(Thresholds::default(), |t, (name, upper)| {
        t.with(&Metric::named(name), Band { upper: Some(*upper), lower: None })
    });
    handle.track(Tracked { container_id: server.id.clone(), thresholds });
    let mut seen = Vec::new();
    drain(&mut rx, &mut seen, Duration::from_millis(2500)).await;
    for (name, _) in BANDS {
        assert!(
            first_crossing(&seen, &server.id, name, Direction::Up, 0).is_none(),
            "{name} crossed while idle: {seen:?}"
        );
    }

    // About twice what the server answers, one request per connection:
    // every metric goes over its threshold within the first window or two.
    seen.clear();
    let start = monotonic_ns();
    let client = openloop::run(port, 2000.0, Duration::from_millis(1500), false);
    let (outcomes, ()) = tokio::join!(client, drain(&mut rx, &mut seen, Duration::from_millis(2000)));
    assert!(outcomes.iter().all(|o| o.first_byte_ns > 0), "requests got no answer");
    let overload_end = monotonic_ns();
    // Then a light load, answered at once: every metric comes back under.
    let light = openloop::run(port, 20.0, Duration::from_secs(3), true);
    let (_, ()) = tokio::join!(light, drain(&mut rx, &mut seen, Duration::from_millis(3500)));

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, upper) in BANDS {
        let up = first_crossing(&seen, &server.id, name, Direction::Up, start);
        let down = up.and_then(|at| first_crossing(&seen, &server.id, name, Direction::Down, at));
        let ms = |at: u64| at.saturating_sub(start) as f64 / 1e6;
        report.push(format!(
            "{name}>={upper}: up {} ms after the load started, down {} ms",
            up.map_or("never".into(), |t| format!("{:.0}", ms(t))),
            down.map_or("never".into(), |t| format!("{:.0}", ms(t)))
        ));
        // The request rate is the sliding rate of the last second: 500/s
        // of 2,000/s is reached within a quarter of it.
        let within = if name == "request-rate" { 700.0 } else { 400.0 };
        match up {
            Some(t) if ms(t) <= within => {}
            _ => failures.push(format!("{name}: no upward crossing within {within} ms of the load")),
        }
        if down.is_none() {
            failures.push(format!("{name}: no downward crossing under the light load"));
        }
    }
    let report = report.join("\n");
    println!(
        "demand crossings (overload ended {:.0} ms after it started):\n{report}",
        (overload_end - start) as f64 / 1e6
    );
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}
