//! The rule, on states built as the daemon would build them, through time.

use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
use autoscaler_sdk::{Policy, Unit};

use super::Concurrency;

const S: u64 = 1_000_000_000;

/// A service of `current` replicas in [1, 20] whose replicas hold
/// `inflight` requests each and `queued` each in their accept queues, at
/// `now` seconds.
fn state(id: &str, current: u32, inflight: &[f64], queued: f64, now: u64) -> StateBuilder {
    let queue: Vec<f64> = inflight.iter().map(|_| queued).collect();
    StateBuilder::new()
        .service_id(id)
        .service(id)
        .replicas(current, 1, 20)
        .now_ns(now * S)
        .values("inflight", Unit::Count, inflight)
        .values("queue", Unit::Count, &queue)
}

fn target(b: StateBuilder) -> Option<u32> {
    Concurrency::decide(EventBuilder::new("inflight", 0.0, Unit::Count).build(), b.build_for::<Concurrency>())
        .and_then(|d| d.target())
}

#[test]
fn a_step_to_five_times_the_target_is_answered_in_one_decision() {
    // Quiet: one replica holding 4 requests (target 10): no change.
    for t in 0..30 {
        assert_eq!(target(state("step", 1, &[4.0], 0.0, t)), None, "t={t}");
    }
    // The first event of the step: 35 in flight and 15 queued.
    let d = Concurrency::decide(
        EventBuilder::new("inflight", 35.0, Unit::Count).crossing_up(10.0).build(),
        state("step", 1, &[35.0], 15.0, 30).build_for::<Concurrency>(),
    )
    .expect("a decision");
    assert_eq!(d.target(), Some(5), "{}", d.reason);
    assert!(d.reason.starts_with("panic: demand 50"), "{}", d.reason);
}

#[test]
fn panic_never_scales_in_until_a_stable_window_passes() {
    assert_eq!(target(state("panic", 1, &[50.0], 0.0, 0)), Some(5));
    // Demand gone at once: still 5 while the panic lasts.
    for t in 1..60 {
        assert_eq!(target(state("panic", 5, &[0.5; 5], 0.0, t)), None, "t={t}");
    }
    // A stable window after the last panic: the stable count (mean of the
    // window, which still holds the 50 at t=0 only if within 60 s).
    let later = target(state("panic", 5, &[0.5; 5], 0.0, 61));
    assert_eq!(later, Some(1));
}

#[test]
fn stable_mode_follows_the_window_mean() {
    // 3 replicas at 12 each, target 10: 36 / 10 -> 4; not 2x: no panic.
    for t in 0..10 {
        let got = target(state("stable", 3, &[12.0; 3], 0.0, t));
        assert_eq!(got, Some(4), "t={t}");
    }
}

#[test]
fn the_rate_target_asks_for_arrivals_not_for_how_long_they_waited() {
    let b = state("rate", 2, &[3.0, 3.0], 0.0, 0).label("request-rate.target", "50").values(
        "request-rate",
        Unit::PerSecond,
        &[120.0, 130.0],
    );
    // 6 in flight asks 1; 250 req/s over 50 per replica asks 5 (>= 2 x 2: panic).
    assert_eq!(target(b), Some(5));
}

#[test]
fn scale_down_delay_keeps_the_largest_recent_count() {
    let b = |now: u64, each: f64, current: u32| {
        let v = vec![each; current as usize];
        state("delay", current, &v, 0.0, now).label("scale-down.delay", "30s").label("panic.threshold", "100")
    };
    assert_eq!(target(b(0, 18.0, 2)), Some(4)); // 36 / 10
    assert_eq!(target(b(10, 1.0, 4)), None, "the 4 asked 10 s ago holds");
    // From t=11 the stable rule asks 1 (the window's mean falls below 10),
    // after a 2 at t=10: the 4 asked at t=0 holds until t=30, the 2 until 40.
    let first = (11..120).find_map(|t| target(b(t, 1.0, 4)).map(|n| (t, n)));
    assert_eq!(first, Some((31, 2)));
}

#[test]
fn no_demand_metric_no_decision_and_bad_settings_refused() {
    let no_inflight = StateBuilder::new().service_id("none").replicas(2, 1, 5).cpu(&[0.9, 0.9]);
    assert_eq!(target(no_inflight), None);
    assert_eq!(target(state("bad", 1, &[90.0], 0.0, 0).label("inflight.target", "0")), None);
    assert_eq!(target(state("bad2", 1, &[90.0], 0.0, 0).label("panic.window", "2m")), None);
}

#[test]
fn bounded_to_max() {
    assert_eq!(target(state("max", 1, &[900.0], 0.0, 0)), Some(20));
}
