//! Tests of the SDK's own logic: typed settings by name, the builders,
//! decisions.

use std::sync::Arc;
use std::time::Duration;

use crate::bindings::autoscaler::policy::types as wit;
use crate::testing::{EventBuilder, StateBuilder};
use crate::{Action, ContainerId, Decision, Event, Metric, Policy, SettingSpec, SettingValue, State, Stats, Unit};

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
        let mut settings = state.settings.to_vec();
        settings[0] = Some(SettingValue::Number(0.5));
        state.settings = settings.into();
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
    assert_eq!(state.metric(&Metric::Other("gpu".into())), None);
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
    let event = EventBuilder::cpu(0.93).crossing_up(0.8).container("c9").service("api").build();
    assert_eq!(event.metric_name(), "cpu");
    assert_eq!(event.crossing().map(|c| c.threshold), Some(0.8));
    assert_eq!((event.container_id.as_str(), event.service_name.as_str()), ("c9", "api"));
    assert_eq!(event.container, 0xc900_0000_0000_0000, "the number the daemon would pass");
    assert_eq!(EventBuilder::memory(1e6).build().unit, Unit::Bytes);
    assert_eq!(EventBuilder::connections(5.0).crossing_down(10.0).build().crossing().map(|c| c.threshold), Some(10.0));
}

/// An aggregate of `metric` over one replica at `mean`.
fn one(metric: Metric, mean: f64) -> wit::Aggregate {
    wit::Aggregate {
        metric,
        unit: Unit::FractionOfLimit,
        reporting: 1,
        warming: 0,
        value: Stats { mean, min: mean, max: mean, sum: mean },
        of_limit: None,
        window_ns: 1_000_000_000,
    }
}

/// The arguments of a 0.3 `decide`: a CPU sample of container
/// `4f1c0a7d2b9e4c3a...` and a state with a CPU aggregate.
fn call_args(cpu: f64) -> (wit::Event, wit::State) {
    let event = wit::Event {
        metric: Metric::Cpu,
        value: cpu,
        unit: Unit::FractionOfLimit,
        kind: crate::EventKind::Sample,
        container: 0x4f1c_0a7d_2b9e_4c3a,
        timestamp_ns: 7,
    };
    let state = wit::State {
        current_replicas: 2,
        min_replicas: 1,
        max_replicas: 5,
        now_ns: 9,
        last_scale_up_ns: None,
        last_scale_down_ns: None,
        hold_until_ns: None,
        cpu: Some(one(Metric::Cpu, cpu)),
        memory: None,
        connections: None,
        other_metrics: Some(vec![one(Metric::Other("gpu".into()), 0.25)]),
    };
    (event, state)
}

fn service(handle: u32, name: &str, upper: f64) -> wit::Service {
    wit::Service {
        handle,
        id: format!("id-{name}"),
        name: name.into(),
        settings: vec![Some(SettingValue::Number(upper)), None, None, None, None],
    }
}

#[test]
fn a_call_sees_its_bound_service_and_shares_its_strings() {
    std::thread::spawn(|| {
        crate::__bind(service(3, "web", 0.7), Declares::settings);
        crate::__bind(service(0, "api", 0.9), Declares::settings);
        let (event, state) = call_args(0.5);
        let (event, state) = crate::__view(3, event, state).expect("bound");
        assert_eq!((event.service_name.as_str(), event.service_id.as_str()), ("web", "id-web"));
        assert_eq!(event.container_id, "4f1c0a7d2b9e4c3a");
        assert_eq!(event.container_id.number(), event.container);
        assert_eq!(state.number("cpu.upper"), Some(0.7), "declared by bind in a fresh instance");
        assert_eq!(state.cpu().map(|a| a.value.mean), Some(0.5));
        assert_eq!(state.metric(&Metric::Other("gpu".into())).map(|a| a.value.mean), Some(0.25));
        let names: Vec<&str> = state.metrics.iter().map(|a| a.metric.name()).collect();
        assert_eq!(names, ["cpu", "gpu"]);
        // The second call shares the binding's settings instead of copying.
        let (_, again) = crate::__view(3, call_args(0.6).0, call_args(0.6).1).expect("bound");
        assert!(Arc::ptr_eq(&state.settings, &again.settings));
        let (api, _) = crate::__view(0, call_args(0.5).0, call_args(0.5).1).expect("bound");
        assert_eq!(api.service_name, "api");
        // A new bind of a handle replaces it; an unbound handle decides nothing.
        crate::__bind(service(3, "web", 0.75), Declares::settings);
        assert_eq!(
            crate::__view(3, call_args(0.5).0, call_args(0.5).1).map(|(_, s)| s.number("cpu.upper")),
            Some(Some(0.75))
        );
        crate::__unbind(3);
        assert!(crate::__view(3, call_args(0.5).0, call_args(0.5).1).is_none());
        assert!(crate::__view(7, call_args(0.5).0, call_args(0.5).1).is_none());
    })
    .join()
    .expect("test thread");
}

#[test]
fn container_ids_and_shared_strings_read_as_text() {
    let id = ContainerId::from_number(0x0123_4567_89ab_cdef);
    assert_eq!((id.as_str(), id.len()), ("0123456789abcdef", 16));
    assert_eq!(id.number(), 0x0123_4567_89ab_cdef);
    assert_eq!(&id[..12], "0123456789ab", "what docker ps shows");
    assert_eq!(format!("{id} {id:?}"), "0123456789abcdef \"0123456789abcdef\"");
    assert_eq!(ContainerId::from("0123456789abcdef"), id, "compared as text");
    assert_eq!(ContainerId::from("web.1").number(), 0);
    let name = crate::SharedStr::from("web");
    let owned = String::from("web");
    assert_eq!(name, "web");
    assert_eq!("web", name);
    assert_eq!(name, owned);
    assert_eq!(name.to_uppercase(), "WEB");
    assert_eq!(String::from(name.clone()), "web");
}
