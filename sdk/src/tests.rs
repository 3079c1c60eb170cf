//! Tests of the SDK's own logic: typed settings by name, the builders,
//! decisions.

use std::time::Duration;

use crate::testing::{EventBuilder, StateBuilder, decide_as_component};
use crate::{Action, Aggregate, Decision, Event, Policy, SettingSpec, SettingValue, State, Stats, Unit, metric};

/// A policy that declares one setting of each type and decides nothing.
struct Declares;

impl Policy for Declares {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::number("cpu.upper").default("0.8").doc("upper"),
            SettingSpec::quantity("memory.upper"),
            SettingSpec::duration("hold").default("2m"),
            SettingSpec::flag("eager").default("no"),
            SettingSpec::text("mode"),
        ]
    }

    fn decide(_event: Event, _state: State) -> Option<Decision> {
        None
    }
}

/// A policy with a required setting.
struct Requires;

impl Policy for Requires {
    fn settings() -> Vec<SettingSpec> {
        vec![SettingSpec::number("target").required()]
    }

    fn decide(_event: Event, _state: State) -> Option<Decision> {
        None
    }
}

#[test]
fn settings_are_placed_in_declared_order_with_defaults() {
    let state = StateBuilder::new().label("mode", "fast").label("memory.upper", "512Mi").build_for::<Declares>();
    assert_eq!(
        state.settings[..],
        [
            Some(SettingValue::Number(0.8)),
            Some(SettingValue::Number(512.0 * 1024.0 * 1024.0)),
            Some(SettingValue::DurationNs(120_000_000_000)),
            Some(SettingValue::Flag(false)),
            Some(SettingValue::Text("fast".into())),
        ]
    );
    assert_eq!(state.number("cpu.upper"), Some(0.8));
    assert_eq!(state.number("memory.upper"), Some(536_870_912.0));
    assert_eq!(state.duration("hold"), Some(Duration::from_secs(120)));
    assert_eq!(state.flag("eager"), Some(false));
    assert_eq!(state.text("mode"), Some("fast"));
}

#[test]
fn absent_optional_setting_is_none() {
    let state = StateBuilder::new().build_for::<Declares>();
    assert_eq!(state.number("memory.upper"), None);
    assert_eq!(state.text("mode"), None);
}

#[test]
fn typed_values_and_labels_both_work() {
    let state = StateBuilder::new()
        .setting_number("cpu.upper", 0.9)
        .setting_duration("hold", Duration::from_millis(1500))
        .setting_flag("eager", true)
        .setting_text("mode", "careful")
        .build_for::<Declares>();
    assert_eq!(state.number("cpu.upper"), Some(0.9));
    assert_eq!(state.duration("hold"), Some(Duration::from_millis(1500)));
    assert_eq!(state.flag("eager"), Some(true));
    assert_eq!(state.text("mode"), Some("careful"));
}

#[test]
fn builder_refuses_what_the_daemon_refuses() {
    let undeclared = StateBuilder::new().label("cpu.uper", "0.8").try_build_for::<Declares>();
    let err = undeclared.expect_err("typo");
    assert!(err.contains("\"cpu.uper\" is not declared") && err.contains("cpu.upper"), "{err}");

    let bad = StateBuilder::new().label("hold", "15").try_build_for::<Declares>();
    let err = bad.expect_err("bare number");
    assert!(err.contains("autoscale.hold=\"15\"") && err.contains("no unit"), "{err}");

    let wrong_type = StateBuilder::new().setting_flag("cpu.upper", true).try_build_for::<Declares>();
    assert!(wrong_type.expect_err("flag for number").contains("declared as number"));

    let missing = StateBuilder::new().try_build_for::<Requires>();
    assert!(missing.expect_err("required").contains("autoscale.target is required"));
    assert!(StateBuilder::new().label("target", "3").try_build_for::<Requires>().is_ok());
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "\"cpu.lower\" is not declared")]
fn reading_an_undeclared_setting_panics_in_tests() {
    let state = StateBuilder::new().build_for::<Declares>();
    let _ = state.number("cpu.lower");
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "read as a duration")]
fn reading_a_setting_as_another_type_panics_in_tests() {
    let state = StateBuilder::new().build_for::<Declares>();
    let _ = state.duration("cpu.upper");
}

#[test]
fn a_fresh_instance_declares_lazily() {
    // What the exported `decide` does in an instance where `settings()` was
    // never called: each test runs on its own thread, which starts empty.
    std::thread::spawn(|| {
        let mut state = StateBuilder::new().build_for::<Declares>();
        state.settings[0] = Some(SettingValue::Number(0.5));
        std::thread::spawn(move || {
            crate::__ensure_declared(Declares::settings);
            assert_eq!(state.number("cpu.upper"), Some(0.5));
        })
        .join()
        .expect("inner thread");
    })
    .join()
    .expect("outer thread");
}

#[test]
fn exported_settings_are_returned_unchanged() {
    let specs = crate::__declare_settings(Declares::settings());
    assert_eq!(specs, Declares::settings());
    assert_eq!(specs[2].default.as_deref(), Some("2m"));
    assert_eq!(specs[0].doc, "upper");
}

#[test]
fn aggregates_from_replica_values() {
    let state = StateBuilder::new()
        .replicas(4, 1, 10)
        .cpu(&[0.9, 0.95, 0.1])
        .memory_mean(100e6, 3)
        .warming(1)
        .build_for::<Declares>();
    let cpu = state.cpu().expect("cpu");
    assert_eq!((cpu.reporting, cpu.warming, cpu.unit.clone()), (3, 1, Unit::FractionOfLimit));
    assert!((cpu.value.mean - 0.65).abs() < 1e-9);
    assert_eq!((cpu.value.min, cpu.value.max), (0.1, 0.95));
    assert!((cpu.value.sum - 1.95).abs() < 1e-9);
    assert_eq!(state.memory().map(|m| (m.value.mean, m.warming)), Some((100e6, 1)));
    assert_eq!(state.connections(), None);
    assert_eq!(state.metric("gpu"), None);
    assert_eq!(state.metric(metric::MEMORY), state.memory());
}

#[test]
fn clock_helpers() {
    let state = StateBuilder::new()
        .last_scale_up_ago(Duration::from_secs(30))
        .hold_for(Duration::from_secs(5))
        .build_for::<Declares>();
    assert_eq!(state.since_last_scale_up(), Some(Duration::from_secs(30)));
    assert_eq!(state.since_last_scale_down(), None);
    assert_eq!(state.hold_remaining(), Some(Duration::from_secs(5)));
}

#[test]
fn decisions() {
    let scale = Decision::scale(3, "busy");
    assert_eq!((scale.action, scale.target(), scale.held_for()), (Action::Scale(3), Some(3), None));
    let hold = Decision::hold(Duration::from_secs(60), "settle");
    assert_eq!(hold.action, Action::Hold(60_000_000_000));
    assert_eq!(hold.held_for(), Some(Duration::from_secs(60)));
    assert_eq!(Decision::hold(Duration::MAX, "forever").action, Action::Hold(u64::MAX));
}

#[test]
fn clamp_respects_bounds() {
    let state = StateBuilder::new().replicas(2, 1, 5).build_for::<Declares>();
    assert_eq!(state.clamp(-3), 1);
    assert_eq!(state.clamp(3), 3);
    assert_eq!(state.clamp(99), 5);
}

#[test]
fn event_builder() {
    let event = EventBuilder::cpu(0.93).crossing_up(0.8).container("c9").build();
    assert_eq!((event.metric_name(), event.metric.as_str()), ("cpu", metric::CPU));
    assert_eq!(event.crossing().map(|c| c.threshold), Some(0.8));
    assert_eq!(event.container, 0xc900_0000_0000_0000, "the number the daemon would pass");
    assert_eq!(event.container_id(), "c900000000000000");
    let id = EventBuilder::cpu(0.1).container("0123456789abcdef0123").build();
    assert_eq!((id.container, &id.container_id()[..12]), (0x0123_4567_89ab_cdef, "0123456789ab"));
    assert_eq!(EventBuilder::cpu(0.1).container("web.1").build().container, 0);
    assert_eq!(EventBuilder::memory(1e6).build().unit, Unit::Bytes);
    assert_eq!(EventBuilder::connections(5.0).crossing_down(10.0).build().crossing().map(|c| c.threshold), Some(10.0));
}

/// An aggregate of the metric named `metric` over one replica at `mean`.
fn one(metric: &str, unit: Unit, mean: f64) -> Aggregate {
    Aggregate {
        metric: metric.into(),
        unit,
        reporting: 1,
        warming: 0,
        value: Stats { mean, min: mean, max: mean, sum: mean },
        of_limit: None,
        window_ns: 1_000_000_000,
    }
}

#[test]
fn metrics_are_found_by_name_and_new_ones_are_data() {
    let state = StateBuilder::new()
        .service("api")
        .service_id("id-api")
        .cpu(&[0.5])
        .aggregate(one("request-rate", Unit::PerSecond, 40.0))
        .aggregate(one("response-time-p99", Unit::Seconds, 0.2))
        .build_for::<Declares>();
    assert_eq!((state.service_name.as_str(), state.service_id.as_str()), ("api", "id-api"));
    assert_eq!(state.cpu().map(|a| a.value.mean), Some(0.5));
    assert_eq!(state.metric("request-rate").map(|a| (a.value.mean, &a.unit)), Some((40.0, &Unit::PerSecond)));
    let names: Vec<&str> = state.metrics.iter().map(|a| a.metric.as_str()).collect();
    assert_eq!(names, ["cpu", "request-rate", "response-time-p99"]);
    // A replaced aggregate keeps one entry per metric.
    let state = StateBuilder::new().cpu(&[0.5]).aggregate(one(metric::CPU, Unit::Cores, 1.5)).build_for::<Declares>();
    assert_eq!((state.metrics.len(), state.cpu().map(|a| a.value.mean)), (1, Some(1.5)));
}

#[test]
fn demand_is_the_larger_of_inflight_and_queue_not_their_sum() {
    let demand = |inflight: &[f64], queue: &[f64]| {
        let mut b = StateBuilder::new();
        if !inflight.is_empty() {
            b = b.values(metric::INFLIGHT, Unit::Count, inflight);
        }
        if !queue.is_empty() {
            b = b.values(metric::QUEUE, Unit::Count, queue);
        }
        b.build_for::<Declares>().demand()
    };
    // 10 requests arrived, 4 of them still in accept queues: 10, not 14.
    assert_eq!(demand(&[6.0, 4.0], &[3.0, 1.0]), Some(10.0));
    // Connections waiting with no request yet: the queue is the larger.
    assert_eq!(demand(&[1.0], &[5.0]), Some(5.0));
    assert_eq!(demand(&[7.0], &[]), Some(7.0));
    assert_eq!(demand(&[], &[2.0]), Some(2.0));
    assert_eq!(demand(&[], &[]), None);
}

/// Reads its setting and names the service, to show what a call sees.
struct Echo;

impl Policy for Echo {
    fn settings() -> Vec<SettingSpec> {
        vec![SettingSpec::number("cpu.upper").default("0.8")]
    }

    fn decide(event: Event, state: State) -> Option<Decision> {
        let upper = state.number("cpu.upper")?;
        Some(Decision::scale(2, format!("{} {} {upper} {}", state.service_name, event.metric, event.container_id())))
    }
}

// What `export_policy!(Echo)` generates, without the component's exports
// (this is a native test binary).
impl crate::bindings::Guest for Echo {
    fn settings() -> Vec<SettingSpec> {
        crate::__declare_settings(<Echo as Policy>::settings())
    }

    fn decide(event: Event, state: State) -> Option<Decision> {
        crate::__ensure_declared(<Echo as Policy>::settings);
        <Echo as Policy>::decide(event, state)
    }
}

#[test]
fn the_exported_decide_declares_in_a_fresh_instance() {
    // A thread that never called `settings()`: a fresh instance.
    std::thread::spawn(|| {
        let mut state = StateBuilder::new().service("web").build_for::<Echo>();
        state.settings = vec![Some(SettingValue::Number(0.7))];
        let event = EventBuilder::cpu(0.5).container("4f1c0a7d2b9e4c3aa1b2").build();
        std::thread::spawn(move || {
            let decision = decide_as_component::<Echo>(event, state).expect("a decision");
            assert_eq!(decision.reason, "web cpu 0.7 4f1c0a7d2b9e4c3a");
        })
        .join()
        .expect("inner thread");
    })
    .join()
    .expect("test thread");
}
