//! The scale harness's small version, for CI (issue 25): the real daemon
//! as the decider of a simulated swarm of 20 nodes and 200 autoscaled
//! services (a fake Docker Engine API on a unix socket, real agents over the
//! real channel, tests/scale/). No root, no Docker: it runs everywhere.
//!
//! A correctness test, not a timing one: every reading reaches the
//! decider, no drop counter rises, and every crossing gets its service's
//! spec updated within a generous bound. The figures at scale are the
//! benchmark's (`cargo bench -p host --bench scale`, docs/scale.md).

mod common;
#[path = "scale/engine.rs"]
mod engine;
#[path = "scale/sim.rs"]
mod sim;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_swarm_of_20_nodes_and_200_services_drops_nothing_and_scales_every_crossing() {
    // The daemon runs the shipped threshold policy from ./policies.
    common::shipped_policies();
    let run = sim::Run {
        nodes: 20,
        services: 200,
        replicas: 2,
        duration: Duration::from_secs(8),
        crossings: 5,
        task_delay: Duration::from_millis(50),
        host: common::host_exe().into(),
        cache_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cache"),
        rss_every: Duration::ZERO,
    };
    let report = sim::run(&run).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report:#?}");
    assert!(
        report.unknown_requests.is_empty(),
        "the daemon asked what the fake does not serve: {:?}",
        report.unknown_requests
    );
    assert!(report.sent >= 400 * 5, "readings sent: {}", report.sent);
    assert_eq!(report.agent_dropped, 0, "agents dropped readings");
    assert_eq!(report.forwarded, report.sent, "every reading forwarded");
    assert_eq!(report.decider_dropped, 0.0, "the decider dropped readings");
    assert_eq!(report.other_dropped, 0.0);
    assert_eq!(report.decider_events, report.forwarded as f64, "every reading reached the decider");
    assert_eq!(report.crossings.1, report.crossings.0, "every crossing scaled its service");
    assert!(report.write_ms.1 < 5_000.0, "crossing -> spec written p99 {} ms", report.write_ms.1);
}

/// Issue 24, item 4: a peer that sends 100,000 distinct metric names, and
/// 100,000 scale-to-zero reports, grows neither the daemon's memory nor
/// its `/metrics`: unknown names are refused and counted, never kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_100k_distinct_metric_names_grows_neither_rss_nor_metrics() {
    let run = sim::Run {
        nodes: 2,
        services: 4,
        replicas: 2,
        duration: Duration::ZERO,
        crossings: 0,
        task_delay: Duration::from_millis(50),
        host: env!("CARGO_BIN_EXE_host").into(),
        cache_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cache"),
        rss_every: Duration::ZERO,
    };
    let flood = sim::flood(&run, 100_000, 100_000).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{flood:#?}");
    assert_eq!(flood.unknown_metric, 100_000.0, "every unknown name counted");
    let (rss0, rss1) = flood.rss_mib;
    // Unrefused (the names kept), RSS grew by 3.9 MiB here and /metrics
    // gained a series; refused, by 0.4 MiB.
    assert!(rss1 - rss0 < 2.0, "RSS grew from {rss0:.1} to {rss1:.1} MiB");
    assert_eq!(flood.series.0, flood.series.1, "no new series in /metrics");
    let (m0, m1) = flood.metrics_bytes;
    // Counters gain digits (one per factor of ten), nothing else.
    assert!(m1 < m0 + 256, "/metrics grew from {m0} to {m1} bytes");
}

/// The memory slope of a long run (the benchmark's `SCALE_RSS_EVERY`): MiB
/// per hour by least squares over the samples after the warm-up.
#[test]
fn the_rss_slope_is_the_least_squares_line_after_the_warm_up() {
    // 2 MiB per 10 minutes after a warm-up that jumped from 10 to 40 MiB.
    let mut samples = vec![(0.0, 10.0), (30.0, 40.0)];
    samples.extend((0..=6).map(|k| (60.0 + 100.0 * k as f64, 40.0 + 2.0 * k as f64 / 6.0)));
    let (slope, used) = sim::rss_slope(&samples, 60.0).expect("a slope");
    assert_eq!(used, 7);
    assert!((slope - 12.0).abs() < 1e-9, "slope {slope} MiB/h");
    // Flat, with +-0.5 MiB of noise around it (whose own line falls 0.11
    // MiB an hour: the last sample is a low one).
    let flat: Vec<(f64, f64)> =
        (0..100).map(|k| (k as f64 * 10.0, 50.0 + if k % 2 == 0 { 0.5 } else { -0.5 })).collect();
    let (slope, _) = sim::rss_slope(&flat, 0.0).expect("a slope");
    assert!((slope + 0.108).abs() < 0.001, "slope {slope} MiB/h");
    assert_eq!(sim::rss_slope(&samples[..2], 0.0), None, "two samples are no slope");
}
