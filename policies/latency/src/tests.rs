//! The rule, on states built as the daemon would build them.

use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
use autoscaler_sdk::{Policy, Unit};

use super::Latency;

const S: u64 = 1_000_000_000;

/// `current` replicas in [1, 20], each with p95 `p95` seconds and
/// `inflight` requests in flight, at `now` seconds; objective 200 ms.
fn state(id: &str, current: u32, p95: f64, inflight: f64, now: u64) -> StateBuilder {
    let n = current as usize;
    StateBuilder::new()
        .service_id(id)
        .service(id)
        .replicas(current, 1, 20)
        .now_ns(now * S)
        .label("latency.target", "200ms")
        .values("response-time-p95", Unit::Seconds, &vec![p95; n])
        .values("inflight", Unit::Count, &vec![inflight; n])
}

fn decide(b: StateBuilder) -> Option<(u32, String)> {
    Latency::decide(EventBuilder::new("response-time-p95", 0.0, Unit::Seconds).build(), b.build_for::<Latency>())
        .and_then(|d| d.target().map(|t| (t, d.reason)))
}

#[test]
fn within_the_objective_nothing_changes() {
    assert_eq!(decide(state("ok", 2, 0.15, 3.0, 0)), None);
}

#[test]
fn over_the_objective_steps_by_the_learned_capacity() {
    // Within the objective at 4 in flight per replica: learned.
    assert_eq!(decide(state("learn", 2, 0.12, 4.0, 0)), None);
    // Then 40 in flight over 2 replicas, p95 at 900 ms: 80 / 4 = 20 -> max.
    // With 20 per replica: 40 / 4 = 10.
    let (n, reason) = decide(state("learn", 2, 0.9, 20.0, 5)).expect("a decision");
    assert_eq!(n, 10, "{reason}");
    assert!(reason.contains("demand 40 / 4 held per replica asks 10"), "{reason}");
}

#[test]
fn the_rate_target_gives_the_count_at_once() {
    let b = state("rate", 1, 0.8, 30.0, 0).label("request-rate.target", "50").values(
        "request-rate",
        Unit::PerSecond,
        &[240.0],
    );
    let (n, reason) = decide(b).expect("a decision");
    assert_eq!(n, 5, "{reason}");
}

#[test]
fn with_nothing_learned_at_most_doubles() {
    let (n, reason) = decide(state("blind", 3, 2.0, 50.0, 0)).expect("a decision");
    assert_eq!(n, 6, "{reason}");
    let (n, _) = decide(state("blind-small", 3, 0.21, 50.0, 0)).expect("a decision");
    assert_eq!(n, 4, "at least one more");
}

#[test]
fn scales_in_to_what_the_demand_fits_in() {
    // Learned 5 per replica within the objective.
    assert_eq!(decide(state("in", 4, 0.15, 5.0, 0)), None);
    // Quiet: 4 replicas holding 1 each, p95 50 ms: 4 / 5 -> 1.
    let (n, reason) = decide(state("in", 4, 0.05, 1.0, 10)).expect("a decision");
    assert_eq!(n, 1, "{reason}");
    // Nothing learned: one fewer.
    let (n, _) =
        decide(StateBuilder::new().service_id("in2").replicas(4, 1, 20).label("latency.target", "200ms").values(
            "response-time-p95",
            Unit::Seconds,
            &[0.01; 4],
        ))
        .expect("a decision");
    assert_eq!(n, 3);
}

#[test]
fn no_scale_in_when_the_demand_needs_every_replica() {
    assert_eq!(decide(state("full", 3, 0.15, 5.0, 0)), None);
    assert_eq!(decide(state("full", 3, 0.05, 5.0, 1)), None, "15 / 5 needs 3");
}

#[test]
fn no_response_time_no_decision_and_bad_settings_refused() {
    let none = StateBuilder::new().service_id("x").replicas(2, 1, 5).label("latency.target", "200ms").cpu(&[0.9, 0.9]);
    assert_eq!(decide(none), None);
    assert_eq!(decide(state("bad", 2, 5.0, 9.0, 0).label("latency.percentile", "90")), None);
    assert_eq!(decide(state("bad", 2, 5.0, 9.0, 0).label("scale-in.below", "1.5")), None);
}

#[test]
fn queued_requests_whose_data_arrived_are_not_counted_twice() {
    // Within the objective at 4 per replica (queue empty): learned 4.
    assert_eq!(decide(state("twice", 2, 0.12, 4.0, 0)), None);
    // 2 replicas with 10 in flight each, 6 of them still in the accept
    // queues (counted by both): 20 requests, 20 / 4 = 5 (not 32 / 4 = 8).
    let (n, reason) =
        decide(state("twice", 2, 0.9, 10.0, 5).values("queue", Unit::Count, &[6.0, 6.0])).expect("a decision");
    assert_eq!(n, 5, "{reason}");
    assert!(reason.contains("demand 20 / 4 held per replica asks 5"), "{reason}");
}
