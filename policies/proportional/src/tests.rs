//! The HPA rule, on states built as the daemon would build them.

use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
use autoscaler_sdk::{Decision, Policy, State};

use super::Proportional;

/// The decision for `state`, on a CPU sample (the event's value is not used).
fn decide(state: State) -> Option<Decision> {
    Proportional::decide(EventBuilder::cpu(0.5).build(), state)
}

/// The target of the decision for `state`.
fn target(state: State) -> Option<u32> {
    decide(state).and_then(|d| d.target())
}

/// `current` replicas within `[1, 10]`, CPU target 0.5.
fn cpu_target(current: u32) -> StateBuilder {
    StateBuilder::new().replicas(current, 1, 10).label("cpu.target", "0.5")
}

#[test]
fn hpa_rule_scales_out() {
    // ceil(2 * 0.9 / 0.5) = ceil(3.6) = 4
    let d = decide(cpu_target(2).cpu(&[0.85, 0.95]).build_for::<Proportional>()).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert_eq!(d.reason, "cpu mean 0.9 / target 0.5 = 1.8: ceil(2 * 1.8) = 4");
}

#[test]
fn hpa_rule_scales_in() {
    // ceil(4 * 0.1 / 0.5) = ceil(0.8) = 1
    assert_eq!(target(cpu_target(4).cpu_mean(0.1, 4).build_for::<Proportional>()), Some(1));
    // ceil(4 * 0.3 / 0.5) = ceil(2.4) = 3
    assert_eq!(target(cpu_target(4).cpu_mean(0.3, 4).build_for::<Proportional>()), Some(3));
}

#[test]
fn decides_on_the_mean_not_the_event() {
    // Two saturated replicas and one idle: mean 0.65, ceil(3 * 1.3) = 4,
    // whatever the triggering replica measured.
    let state = cpu_target(3).cpu(&[0.95, 0.95, 0.05]).build_for::<Proportional>();
    let idle_event = EventBuilder::cpu(0.05).crossing_down(0.2).build();
    assert_eq!(Proportional::decide(idle_event, state).and_then(|d| d.target()), Some(4));
}

#[test]
fn a_warming_replica_counts_as_idle_on_a_scale_out_as_in_the_hpa() {
    // Three replicas, the third just started: the two ready ones at 0.9 ask
    // for more; the starting one will take load soon, so it counts at 0:
    // 1.8 / 3 = 0.6, ratio 1.2, ceil(3 * 1.2) = 4. Multiplying the current
    // count by the ready ones' ratio, ceil(3 * 1.8) = 6, would have given the
    // starting replica a share of load it does not have yet.
    let d = decide(cpu_target(3).cpu(&[0.9, 0.9]).warming(1).build_for::<Proportional>()).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert_eq!(d.reason, "cpu mean 0.9 / target 0.5, counting 1 warming and 0 missing = 1.2: ceil(3 * 1.2) = 4");
    // Two ready at 0.5 over target 0.25 would ask for 4 alone; with two
    // starting replicas counted at 0 the ratio is exactly 1: stay.
    assert_eq!(
        decide(
            cpu_target(4).setting_number("cpu.target", 0.25).cpu(&[0.5, 0.5]).warming(2).build_for::<Proportional>()
        ),
        None
    );
}

#[test]
fn a_warming_replica_never_pulls_the_mean_down_on_a_scale_in() {
    // Two ready replicas at 0.1, a third starting: it is left out of the
    // mean (the daemon does that) and not counted at 0: ceil(2 * 0.2) = 1.
    assert_eq!(target(cpu_target(3).cpu(&[0.1, 0.1]).warming(1).build_for::<Proportional>()), Some(1));
}

#[test]
fn missing_replicas_are_read_cautiously() {
    // Four running, two report (two had no reading in the window).
    // Scale-in: the missing ones count at the target: (0.1 * 2 + 0.5 * 2) / 4
    // = 0.3, ratio 0.6, ceil(4 * 0.6) = 3 (not ceil(2 * 0.2) = 1).
    let d = decide(cpu_target(4).cpu(&[0.1, 0.1]).build_for::<Proportional>()).expect("decision");
    assert_eq!(d.target(), Some(3));
    assert_eq!(d.reason, "cpu mean 0.1 / target 0.5, counting 0 warming and 2 missing = 0.6: ceil(4 * 0.6) = 3");
    // Scale-out: they count at 0: 0.9 * 2 / 4 = 0.45, ratio 0.9: within
    // tolerance, so the count stays.
    assert_eq!(decide(cpu_target(4).cpu(&[0.9, 0.9]).build_for::<Proportional>()), None);
    // Counting them turns the direction round: stay. 1.2 * 1 / 3 = 0.4,
    // ratio 0.8 < 1 while the reporting replica alone says 2.4 > 1.
    assert_eq!(decide(cpu_target(3).cpu(&[1.2]).build_for::<Proportional>()), None);
}

#[test]
fn nothing_while_every_replica_is_warming() {
    assert_eq!(decide(cpu_target(3).cpu(&[]).warming(3).build_for::<Proportional>()), None);
    assert_eq!(decide(cpu_target(3).build_for::<Proportional>()), None);
}

#[test]
fn within_tolerance_does_nothing() {
    assert_eq!(decide(cpu_target(2).cpu_mean(0.54, 2).build_for::<Proportional>()), None);
    assert_eq!(decide(cpu_target(2).cpu_mean(0.46, 2).build_for::<Proportional>()), None);
    let wide = cpu_target(2).label("tolerance", "0.5").cpu_mean(0.7, 2);
    assert_eq!(decide(wide.build_for::<Proportional>()), None);
}

#[test]
fn the_largest_proposal_wins() {
    let both = cpu_target(2).label("memory.target", "100Mi");
    // cpu asks 4, memory asks ceil(2 * 1.2) = 3: 4.
    let state = both.clone().cpu_mean(0.9, 2).memory_mean(120.0 * 1024.0 * 1024.0, 2);
    let d = decide(state.build_for::<Proportional>()).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert!(d.reason.starts_with("cpu mean"), "{}", d.reason);
    // cpu on target, memory low: the cpu proposal (2) keeps the count.
    let state = both.cpu_mean(0.5, 2).memory_mean(10.0 * 1024.0 * 1024.0, 2);
    assert_eq!(decide(state.build_for::<Proportional>()), None);
}

#[test]
fn bounded_by_max_and_min() {
    let d = decide(cpu_target(2).cpu_mean(100.0, 2).build_for::<Proportional>()).expect("decision");
    assert_eq!(d.target(), Some(10));
    assert!(d.reason.ends_with("= 400, bounded to 10"), "{}", d.reason);
    assert_eq!(target(cpu_target(2).cpu_mean(f64::MAX, 1).build_for::<Proportional>()), Some(10));
    assert_eq!(decide(cpu_target(1).cpu_mean(0.0, 1).build_for::<Proportional>()), None);
}

#[test]
fn missing_or_bad_settings_decide_nothing() {
    let no_target = StateBuilder::new().replicas(2, 1, 10).cpu_mean(0.9, 2);
    assert_eq!(decide(no_target.build_for::<Proportional>()), None);
    let zero = StateBuilder::new().replicas(2, 1, 10).label("cpu.target", "0").cpu_mean(0.9, 2);
    assert_eq!(decide(zero.build_for::<Proportional>()), None);
    let bad_tolerance = cpu_target(2).label("tolerance", "1.5").cpu_mean(0.9, 2);
    assert_eq!(decide(bad_tolerance.build_for::<Proportional>()), None);
    assert_eq!(decide(cpu_target(2).cpu_mean(f64::NAN, 2).build_for::<Proportional>()), None);
}

#[test]
fn declared_defaults_parse() {
    let state = StateBuilder::new().try_build_for::<Proportional>().expect("defaults parse as declared");
    assert_eq!(state.number("tolerance"), Some(0.1));
}

#[test]
fn float_error_does_not_add_a_replica() {
    // 0.14 / 0.1 * 5 is 7.000000000000001 in f64: the SDK's HPA ceil makes
    // it 7, where a plain ceil made it 8.
    let state = StateBuilder::new().replicas(5, 1, 10).label("cpu.target", "0.1").cpu_mean(0.14, 5);
    assert_eq!(target(state.build_for::<Proportional>()), Some(7));
}
