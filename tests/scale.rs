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
