//! The rule, on states built as the daemon would build them.

use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
use autoscaler_sdk::{Decision, Policy, State};

use super::Threshold;

/// The decision for `state`, on a CPU sample (the event's value is not used).
fn decide(state: State) -> Option<Decision> {
    Threshold::decide(EventBuilder::cpu(0.5).build(), state)
}

/// The target of the decision for `state`.
fn target(state: State) -> Option<u32> {
    decide(state).and_then(|d| d.target())
}

/// Three replicas within `[1, 5]`, CPU band 0.2 to 0.8.
fn cpu_band() -> StateBuilder {
    StateBuilder::new().replicas(3, 1, 5).label("cpu.upper", "0.8").label("cpu.lower", "0.2")
}

#[test]
fn steps_out_when_the_mean_is_at_or_above_upper() {
    let d = decide(cpu_band().cpu(&[0.9, 0.95, 0.85]).build_for::<Threshold>()).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert_eq!(d.reason, "cpu mean 0.9 >= cpu.upper 0.8: 3 -> 4");
    assert_eq!(target(cpu_band().cpu_mean(0.8, 3).build_for::<Threshold>()), Some(4));
}

#[test]
fn two_saturated_and_one_idle_does_not_scale_in() {
    // Mean 0.65: inside the band. The idle replica's own low value, which
    // the old per-event rule would have acted on, does not count alone.
    let state = cpu_band().cpu(&[0.95, 0.95, 0.05]).build_for::<Threshold>();
    let idle_event = EventBuilder::cpu(0.05).crossing_down(0.2).container("idle").build();
    assert_eq!(Threshold::decide(idle_event, state), None);
}

#[test]
fn max_aggregate_scales_out_on_the_hottest_replica() {
    let state = cpu_band().label("aggregate", "max").cpu(&[0.95, 0.95, 0.05]).build_for::<Threshold>();
    let d = decide(state).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert!(d.reason.starts_with("cpu max 0.95 >= cpu.upper"), "{}", d.reason);
}

#[test]
fn all_idle_scales_in() {
    let d = decide(cpu_band().cpu(&[0.05, 0.1, 0.02]).build_for::<Threshold>()).expect("decision");
    assert_eq!(d.target(), Some(2));
    assert_eq!(d.reason, "every lower reached: cpu mean 0.057 <= 0.2: 3 -> 2");
}

#[test]
fn decides_on_the_aggregate_not_the_event() {
    let state = cpu_band().cpu(&[0.05, 0.05, 0.05]).build_for::<Threshold>();
    let hot_event = EventBuilder::cpu(0.99).crossing_up(0.8).build();
    assert_eq!(Threshold::decide(hot_event, state).and_then(|d| d.target()), Some(2));
}

#[test]
fn a_warming_replica_does_not_pull_the_mean_down() {
    // A third replica just started and is idle; the daemon counts it as
    // warming and leaves it out, so the two busy ones still decide.
    let state = cpu_band().cpu(&[0.9, 0.9]).warming(1).build_for::<Threshold>();
    assert_eq!(target(state), Some(4));
}

#[test]
fn nothing_while_every_replica_is_warming() {
    let state = cpu_band().cpu(&[]).warming(3).build_for::<Threshold>();
    assert_eq!(decide(state), None);
    // No aggregate at all: nothing either.
    assert_eq!(decide(cpu_band().build_for::<Threshold>()), None);
}

#[test]
fn holds_inside_the_band() {
    for mean in [0.5, 0.79, 0.21] {
        assert_eq!(decide(cpu_band().cpu_mean(mean, 3).build_for::<Threshold>()), None, "mean {mean}");
    }
}

#[test]
fn scales_in_only_when_every_lower_is_reached() {
    let both = cpu_band().label("memory.upper", "512Mi").label("memory.lower", "64Mi");
    let cold_cpu_warm_memory = both.clone().cpu_mean(0.05, 3).memory_mean(200.0 * 1024.0 * 1024.0, 3);
    assert_eq!(decide(cold_cpu_warm_memory.build_for::<Threshold>()), None);
    let all_cold = both.clone().cpu_mean(0.05, 3).memory_mean(32.0 * 1024.0 * 1024.0, 3);
    let d = decide(all_cold.build_for::<Threshold>()).expect("decision");
    assert_eq!(d.target(), Some(2));
    assert!(d.reason.contains("cpu mean 0.05 <= 0.2, memory mean 33554432 <= 67108864"), "{}", d.reason);
    // A watched lower without any measurement blocks scale-in.
    assert_eq!(decide(both.cpu_mean(0.05, 3).build_for::<Threshold>()), None);
}

#[test]
fn any_upper_scales_out() {
    let state = cpu_band()
        .label("memory.upper", "256Mi")
        .cpu_mean(0.05, 3)
        .memory_mean(300.0 * 1024.0 * 1024.0, 3)
        .build_for::<Threshold>();
    let d = decide(state).expect("decision");
    assert_eq!(d.target(), Some(4));
    assert_eq!(d.reason, "memory mean 314572800 >= memory.upper 268435456: 3 -> 4");
}

#[test]
fn a_metric_with_only_an_upper_does_not_block_scale_in() {
    let base = cpu_band().label("connections.upper", "100").cpu_mean(0.05, 3);
    assert_eq!(target(base.clone().connections_mean(3.0, 3).build_for::<Threshold>()), Some(2));
    assert_eq!(target(base.connections_mean(150.0, 3).build_for::<Threshold>()), Some(4));
}

#[test]
fn respects_min_and_max() {
    let at_max = cpu_band().replicas(5, 1, 5).cpu_mean(0.99, 5).build_for::<Threshold>();
    assert_eq!(decide(at_max), None);
    let at_min = cpu_band().replicas(1, 1, 5).cpu_mean(0.01, 1).build_for::<Threshold>();
    assert_eq!(decide(at_min), None);
}

#[test]
fn step_is_used_and_clamped() {
    assert_eq!(
        target(cpu_band().replicas(1, 1, 5).label("step", "2").cpu_mean(0.9, 1).build_for::<Threshold>()),
        Some(3)
    );
    assert_eq!(
        target(cpu_band().replicas(3, 1, 5).label("step", "5").cpu_mean(0.9, 3).build_for::<Threshold>()),
        Some(5)
    );
    assert_eq!(
        target(cpu_band().replicas(3, 1, 5).label("step", "5").cpu_mean(0.0, 3).build_for::<Threshold>()),
        Some(1)
    );
}

#[test]
fn bad_values_decide_nothing() {
    let hot = || cpu_band().cpu_mean(0.95, 3);
    assert_eq!(decide(hot().label("aggregate", "median").build_for::<Threshold>()), None);
    assert_eq!(decide(hot().label("step", "0.5").build_for::<Threshold>()), None);
    assert_eq!(decide(hot().label("step", "0").build_for::<Threshold>()), None);
    let inverted = StateBuilder::new().replicas(3, 1, 5).label("cpu.upper", "0.2").label("cpu.lower", "0.8");
    assert_eq!(decide(inverted.cpu_mean(0.95, 3).build_for::<Threshold>()), None);
}

#[test]
fn without_any_band_nothing_is_watched() {
    assert_eq!(decide(StateBuilder::new().replicas(3, 1, 5).cpu_mean(0.99, 3).build_for::<Threshold>()), None);
}

#[test]
fn declared_defaults_parse() {
    let state = StateBuilder::new().try_build_for::<Threshold>().expect("defaults parse as declared");
    assert_eq!(state.number("step"), Some(1.0));
    assert_eq!(state.text("aggregate"), Some("mean"));
    assert_eq!(state.number("cpu.upper"), None);
}

#[test]
fn the_exported_functions_work_in_a_fresh_instance() {
    // The component's decide may run where settings() never ran: a thread
    // that declared nothing stands for such an instance.
    let state = cpu_band().cpu_mean(0.9, 3).build_for::<Threshold>();
    std::thread::spawn(move || {
        use autoscaler_sdk::bindings::Guest;
        let decision = autoscaler_sdk::testing::decide_as_component::<Threshold>(EventBuilder::cpu(0.9).build(), state);
        assert_eq!(decision.and_then(|d| d.target()), Some(4));
        assert_eq!(<Threshold as Guest>::settings(), <Threshold as Policy>::settings());
    })
    .join()
    .expect("fresh thread");
}
