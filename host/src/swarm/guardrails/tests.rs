use super::*;

const SEC: u64 = 1_000_000_000;
const AGE: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits {
        min: 1,
        max: 5,
        cooldown_up: Duration::from_secs(10),
        cooldown_down: Duration::from_secs(60),
        step_max: None,
        rate_up: None,
        stabilization_down: Duration::ZERO,
    }
}

fn request(seen: u32, event_ns: u64) -> Request {
    Request {
        policy: "threshold".into(),
        event: Event::cpu(0.9).at(event_ns),
        decision: Decision::scale(0, "test"),
        seen,
        decided_ns: event_ns,
    }
}

fn last(ns: u64) -> History {
    History { last_up_ns: Some(ns), ..History::default() }
}

#[test]
fn applies_a_plain_decision() {
    let j = judge(&request(2, 100 * SEC), 3, &limits(), 2, &History::default(), 100 * SEC, AGE);
    assert_eq!(j, Judgement { target: 3, adjustments: vec![], skip: None });
}

#[test]
fn clamps_to_bounds_whatever_the_policy_says() {
    let none = History::default();
    let j = judge(&request(2, 0), 50, &limits(), 2, &none, 0, AGE);
    assert_eq!(j.target, 5);
    assert_eq!(j.adjustments, [Adjustment::ClampedToMax { asked: 50, max: 5 }]);
    assert_eq!(j.skip, None);
    let j = judge(&request(2, 0), 0, &limits(), 2, &none, 0, AGE);
    assert_eq!(j.target, 1);
    assert_eq!(j.adjustments, [Adjustment::ClampedToMin { asked: 0, min: 1 }]);
    // Clamped onto the current value: nothing to do.
    let j = judge(&request(5, 0), 9, &limits(), 5, &none, 0, AGE);
    assert_eq!(j.skip, Some(Skip::Unchanged { current: 5 }));
}

#[test]
fn step_limit_bounds_each_change() {
    let none = History::default();
    let l = Limits { step_max: Some(2), ..limits() };
    let j = judge(&request(1, 0), 5, &l, 1, &none, 0, AGE);
    assert_eq!(j.target, 3);
    assert_eq!(j.adjustments, [Adjustment::StepLimited { asked: 5, allowed: 3, step_max: 2 }]);
    let l = Limits { step_max: Some(1), ..limits() };
    assert_eq!(judge(&request(5, 0), 1, &l, 5, &none, 0, AGE).target, 4);
}

#[test]
fn cooldowns_are_separate_for_up_and_down() {
    let h = last(100 * SEC);
    // 5 s after a scale: up waits 10 s, down waits 60 s.
    let j = judge(&request(2, 105 * SEC), 3, &limits(), 2, &h, 105 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Up, remaining: Duration::from_secs(5) }));
    let j = judge(&request(2, 110 * SEC), 3, &limits(), 2, &h, 110 * SEC, AGE);
    assert_eq!(j.skip, None, "up cooldown over after 10 s");
    let j = judge(&request(2, 110 * SEC), 1, &limits(), 2, &h, 110 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Down, remaining: Duration::from_secs(50) }));
    let j = judge(&request(2, 160 * SEC), 1, &limits(), 2, &h, 160 * SEC, AGE);
    assert_eq!(j.skip, None, "down cooldown over after 60 s");
}

#[test]
fn a_hold_refuses_scale_in_but_not_scale_out() {
    let h = History { hold_until_ns: Some(130 * SEC), ..History::default() };
    let j = judge(&request(3, 100 * SEC), 2, &limits(), 3, &h, 100 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::Held { remaining: Duration::from_secs(30) }));
    assert_eq!(judge(&request(3, 100 * SEC), 4, &limits(), 3, &h, 100 * SEC, AGE).skip, None);
    assert_eq!(judge(&request(3, 131 * SEC), 2, &limits(), 3, &h, 131 * SEC, AGE).skip, None, "hold ran out");
}

#[test]
fn stale_decisions_and_changed_replicas_are_not_applied() {
    let none = History::default();
    let j = judge(&request(2, 100 * SEC), 3, &limits(), 2, &none, 111 * SEC, AGE);
    assert!(matches!(j.skip, Some(Skip::Stale { .. })), "{j:?}");
    // An operator scaled to 4 after the policy saw 2: 3 would undo it.
    let j = judge(&request(2, 100 * SEC), 3, &limits(), 4, &none, 100 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::ReplicasChanged { seen: 2, now: 4 }));
}

#[test]
fn cooldowns_count_between_decisions_not_to_the_actuators_clock() {
    // Scaled on a decision at 100 s; the next decision at 109.99 s is
    // judged by the actuator a little later, at 110.02 s: still cooling.
    let h = last(100 * SEC);
    let mut r = request(2, 109 * SEC);
    r.decided_ns = 109_990_000_000;
    let j = judge(&r, 3, &limits(), 2, &h, 110_020_000_000, AGE);
    assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Up, remaining: Duration::from_millis(10) }));
    r.decided_ns = 110 * SEC;
    assert_eq!(judge(&r, 3, &limits(), 2, &h, 110_500_000_000, AGE).skip, None);
    // Staleness is the actuator's clock: a decision that waited is stale.
    let j = judge(&r, 3, &limits(), 2, &h, 120 * SEC, AGE);
    assert!(matches!(j.skip, Some(Skip::Stale { .. })), "{j:?}");
}

fn hpa_rate() -> UpRate {
    UpRate { percent: Some(100), replicas: Some(4), period: Duration::from_secs(15) }
}

#[test]
fn the_rate_counts_scale_ups_within_its_period() {
    let l = Limits { max: 20, cooldown_up: Duration::ZERO, rate_up: Some(hpa_rate()), ..limits() };
    // From 1: the larger of +100% and +4 is 5.
    let j = judge(&request(1, 100 * SEC), 12, &l, 1, &History::default(), 100 * SEC, AGE);
    assert_eq!(j.target, 5);
    assert_eq!(j.adjustments, [Adjustment::RateLimited { asked: 12, allowed: 5, rate: hpa_rate() }]);
    assert_eq!(j.skip, None);
    let mut h = History::default();
    h.record(1, 5, 100 * SEC);
    // 5 s later the period still starts at 1 replica: nothing more.
    let j = judge(&request(5, 105 * SEC), 12, &l, 5, &h, 105 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::RateLimited { remaining: Duration::from_secs(10) }));
    assert_eq!(j.target, 5);
    // Once the scale-up left the period, it starts at 5: up to 10.
    let j = judge(&request(5, 115 * SEC), 12, &l, 5, &h, 115 * SEC, AGE);
    assert_eq!((j.target, j.skip), (10, None));
    // A smaller step within the period is allowed up to the limit.
    h.record(5, 6, 116 * SEC);
    let j = judge(&request(6, 117 * SEC), 12, &l, 6, &h, 117 * SEC, AGE);
    assert_eq!((j.target, j.skip), (10, None), "period starts at 6 - 1 = 5");
    // Scale-down is not rate limited.
    assert_eq!(judge(&request(6, 117 * SEC), 1, &l, 6, &h, 117 * SEC, AGE).target, 1);
}

#[test]
fn scale_down_stabilizes_at_the_highest_asked_within_the_window() {
    let window = Duration::from_secs(60);
    let l = Limits { max: 10, cooldown_down: Duration::ZERO, stabilization_down: window, ..limits() };
    let mut h = History::default();
    h.asked(100 * SEC, 6); // a scale decision's target
    h.asked(130 * SEC, 3);
    // At 150 s, 6 was asked for 50 s ago: no scale-down at all.
    let j = judge(&request(6, 150 * SEC), 2, &l, 6, &h, 150 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::Stabilizing { highest: 6, window }));
    // At 161 s the 6 left the window: down to the 3 of 130 s, not to 2.
    let j = judge(&request(6, 161 * SEC), 2, &l, 6, &h, 161 * SEC, AGE);
    assert_eq!((j.target, j.skip), (3, None));
    assert_eq!(j.adjustments, [Adjustment::Stabilized { asked: 2, allowed: 3, window }]);
    // At 191 s nothing higher than 2 is left.
    let j = judge(&request(6, 191 * SEC), 2, &l, 6, &h, 191 * SEC, AGE);
    assert_eq!((j.target, j.adjustments, j.skip), (2, vec![], None));
    // A count kept (the policy answered nothing at 6) holds like an ask.
    h.asked(190 * SEC, 6);
    let j = judge(&request(6, 191 * SEC), 2, &l, 6, &h, 191 * SEC, AGE);
    assert_eq!(j.skip, Some(Skip::Stabilizing { highest: 6, window }));
    // Scale-up is not held back by the window.
    assert_eq!(judge(&request(6, 191 * SEC), 8, &l, 6, &h, 191 * SEC, AGE).skip, None);
}

#[test]
fn without_the_labels_rates_and_windows_change_nothing() {
    let mut h = History::default();
    h.record(1, 5, 100 * SEC);
    h.asked(100 * SEC, 5);
    let l = Limits { cooldown_up: Duration::ZERO, cooldown_down: Duration::ZERO, ..limits() };
    assert_eq!(judge(&request(5, 101 * SEC), 1, &l, 5, &h, 101 * SEC, AGE).target, 1);
    let l = Limits { max: 50, ..l };
    assert_eq!(judge(&request(5, 101 * SEC), 50, &l, 5, &h, 101 * SEC, AGE).target, 50);
}

#[test]
fn asked_keeps_only_what_can_still_be_a_windows_highest() {
    let mut h = History::default();
    h.asked(1, 3);
    h.asked(2, 5);
    assert_eq!(h.asked, [(2, 5)], "3 is below a later 5");
    h.asked(3, 4);
    h.asked(4, 2);
    assert_eq!(h.asked, [(2, 5), (3, 4), (4, 2)]);
    assert_eq!([0, 2, 3, 4, 5].map(|t| h.highest_asked_since(t)), [Some(5), Some(5), Some(4), Some(2), None]);
    h.asked(5, 4);
    assert_eq!(h.asked, [(2, 5), (5, 4)]);
    // Older than the horizon is forgotten, except the last entry.
    h.asked(2 * nanos(HISTORY_HORIZON), 1);
    assert_eq!(h.asked, [(2 * nanos(HISTORY_HORIZON), 1)]);
}

#[test]
fn history_records_the_direction() {
    let mut h = History::default();
    h.record(1, 3, 5);
    h.record(3, 2, 9);
    h.record(2, 2, 11);
    assert_eq!((h.last_up_ns, h.last_down_ns, h.last_scale_ns()), (Some(5), Some(9), Some(9)));
    assert_eq!(h.ups, [(5, 2)]);
    assert_eq!(h.added_since(4), (2, Some(5)));
    assert_eq!(h.added_since(5), (0, None));
}
