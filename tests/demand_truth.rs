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

#[path = "probe/openloop.rs"]
mod openloop;
#[path = "probe/workload.rs"]
mod workload;

use std::time::Duration;

use host::model::{Thresholds, Tracked};
use host::probe::{self, ProbeEvent, ProbeKind, ProbeSettings};
use openloop::Row;
use tokio::sync::mpsc;
use workload::{Container, root_or_explain};

/// CPU per request in the workload, us.
const WORK_US: &str = "1000";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_metrics_match_an_open_loop_client_below_and_above_saturation() {
    if !root_or_explain("demand_truth") {
        return;
    }
    openloop::raise_nofile();
    let settings = ProbeSettings {
        kind: ProbeKind::Ebpf,
        window: Duration::from_millis(100),
        sample_interval: Duration::from_millis(1000),
        pin_dir: None,
        ..ProbeSettings::default()
    };
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let handle = probe::start(settings, tx).await.expect("probe starts");
    assert_eq!(handle.kind(), ProbeKind::Ebpf, "as root the eBPF probe must load");
    let port = free_port();
    // Listening before it is tracked: the listener iterator must find it.
    let server = Container::start_on("host", &[], &["http", &port.to_string(), WORK_US]);
    wait_listening(port).await;
    handle.track(Tracked { container_id: server.id.clone(), thresholds: Thresholds::default() });
    let mut seen = Vec::new();
    drain(&mut rx, &mut seen, Duration::from_millis(2500)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, ProbeEvent::Reading(r) if r.container_id == server.id && r.metric.name() == "queue")),
        "no queue sample for the tracked server: {seen:?}"
    );

    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (keep_alive, rate, secs) in [
        (false, 10.0, 4.0),
        (false, 300.0, 4.0),
        (false, 2000.0, 2.5),
        (true, 10.0, 4.0),
        (true, 300.0, 4.0),
        (true, 2000.0, 2.5),
    ] {
        let label = format!("{}@{rate}/s", if keep_alive { "keep-alive" } else { "close" });
        seen.clear();
        let client = openloop::run(port, rate, Duration::from_secs_f64(secs), keep_alive);
        let (outcomes, ()) = tokio::join!(client, drain(&mut rx, &mut seen, Duration::from_secs_f64(secs + 0.5)));
        // Until every answer is in, and the sample after it.
        drain(&mut rx, &mut seen, Duration::from_millis(1200)).await;
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
                || (!keep_alive && r.outstanding_lo >= 20 && r.kernel_queue + 3.0 < r.outstanding_lo as f64)
            {
                bad.push("queue");
            }
            if !bad.is_empty() {
                failures.push(format!("{label}: {bad:?} in {}", openloop::describe(&label, &[*r])));
            }
        }
    }
    let report = report.join("\n");
    println!("{report}");
    assert!(failures.is_empty(), "kernel and client disagree:\n{}\nall windows:\n{report}", failures.join("\n"));
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}
