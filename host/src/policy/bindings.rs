//! The only place `bindgen!` runs: host-side bindings for every contract
//! version the daemon supports, plus conversions between the daemon's
//! [`crate::model`] types and the generated ones. Everything else in the
//! crate uses `crate::model`.
//!
//! - [`v0_2`]: `wit/v0.2/policy.wit`, the current contract
//!   (`autoscaler:policy@0.2.0`), frozen in its own folder as 0.1 is;
//! - [`v0_1`]: `wit/v0.1/policy.wit`, frozen, for components built against
//!   0.1.0: they keep loading and running unchanged.
//!
//! One linker carries the `host` import of both versions; a component is
//! bound to the newest version whose world it fits.

use crate::model;

/// Bindings of contract 0.1.0 (frozen).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "policy",
    });
}

/// Bindings of contract 0.2.0 (current, frozen in `wit/v0.2`).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "policy",
    });
}

/// The world every version defines, for messages and `policy check`.
pub const WORLD: &str = "autoscaler:policy/policy";
/// The newest contract version these bindings implement.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// Every contract version the daemon runs, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];
/// Prefix of every import name this package defines.
pub const PACKAGE_PREFIX: &str = "autoscaler:policy/";

/// Conversions shared by both versions, written once per generated module.
macro_rules! common_conversions {
    ($wit:path) => {
        use $wit as wit;

        impl From<&model::Metric> for wit::Metric {
            fn from(metric: &model::Metric) -> Self {
                match metric {
                    model::Metric::Cpu => wit::Metric::Cpu,
                    model::Metric::Memory => wit::Metric::Memory,
                    model::Metric::Connections => wit::Metric::Connections,
                    model::Metric::Other(name) => wit::Metric::Other(name.clone()),
                }
            }
        }

        impl From<&model::Unit> for wit::Unit {
            fn from(unit: &model::Unit) -> Self {
                match unit {
                    model::Unit::FractionOfLimit => wit::Unit::FractionOfLimit,
                    model::Unit::Cores => wit::Unit::Cores,
                    model::Unit::Bytes => wit::Unit::Bytes,
                    model::Unit::Count => wit::Unit::Count,
                    model::Unit::Other(name) => wit::Unit::Other(name.clone()),
                }
            }
        }

        fn kind(kind: &model::EventKind) -> wit::EventKind {
            match kind {
                model::EventKind::Sample => wit::EventKind::Sample,
                model::EventKind::Crossing(c) => wit::EventKind::Crossing(wit::Crossing {
                    threshold: c.threshold,
                    direction: match c.direction {
                        model::Direction::Up => wit::Direction::Up,
                        model::Direction::Down => wit::Direction::Down,
                    },
                }),
            }
        }

        impl From<&model::Event> for wit::Event {
            fn from(event: &model::Event) -> Self {
                wit::Event {
                    metric: (&event.metric).into(),
                    value: event.value,
                    unit: (&event.unit).into(),
                    kind: kind(&event.kind),
                    container_id: event.container_id.clone(),
                    service_id: event.service_id.clone(),
                    service_name: event.service_name.clone(),
                    timestamp_ns: event.timestamp_ns,
                }
            }
        }
    };
}

mod convert_v0_1 {
    use super::{model, v0_1};
    common_conversions!(v0_1::autoscaler::policy::types);

    impl From<&model::State> for wit::State {
        fn from(state: &model::State) -> Self {
            wit::State {
                current_replicas: state.current_replicas,
                min_replicas: state.min_replicas,
                max_replicas: state.max_replicas,
                last_scale_ns: state.last_scale_ns(),
                settings: state.settings.clone(),
            }
        }
    }

    impl From<wit::Decision> for model::Decision {
        fn from(decision: wit::Decision) -> Self {
            model::Decision::scale(decision.target_replicas, decision.reason)
        }
    }
}

mod convert_v0_2 {
    use super::{model, v0_2};
    common_conversions!(v0_2::autoscaler::policy::types);

    fn stats(s: &model::Stats) -> wit::Stats {
        wit::Stats { mean: s.mean, min: s.min, max: s.max, sum: s.sum }
    }

    impl From<&model::SettingValue> for wit::SettingValue {
        fn from(value: &model::SettingValue) -> Self {
            match value {
                model::SettingValue::Number(n) => wit::SettingValue::Number(*n),
                model::SettingValue::DurationNs(ns) => wit::SettingValue::DurationNs(*ns),
                model::SettingValue::Flag(b) => wit::SettingValue::Flag(*b),
                model::SettingValue::Text(t) => wit::SettingValue::Text(t.clone()),
            }
        }
    }

    /// The state as a 0.2 policy sees it, with `settings` already resolved
    /// against its declaration.
    pub fn state(state: &model::State, settings: &[Option<model::SettingValue>]) -> wit::State {
        wit::State {
            current_replicas: state.current_replicas,
            min_replicas: state.min_replicas,
            max_replicas: state.max_replicas,
            now_ns: state.now_ns,
            last_scale_up_ns: state.last_scale_up_ns,
            last_scale_down_ns: state.last_scale_down_ns,
            hold_until_ns: state.hold_until_ns,
            metrics: state.metrics.iter().map(aggregate).collect(),
            settings: settings.iter().map(|v| v.as_ref().map(Into::into)).collect(),
        }
    }

    fn aggregate(a: &model::Aggregate) -> wit::Aggregate {
        wit::Aggregate {
            metric: (&a.metric).into(),
            unit: (&a.unit).into(),
            reporting: a.reporting,
            warming: a.warming,
            value: stats(&a.value),
            of_limit: a.of_limit.as_ref().map(stats),
            window_ns: a.window_ns,
        }
    }

    /// The arguments of a 0.2 `decide`, kept from one call to the next so
    /// that converting the daemon's event and state reuses their strings
    /// and lists instead of allocating them anew on every call.
    #[derive(Default)]
    pub struct Args {
        converted: Option<(wit::Event, wit::State)>,
    }

    impl Args {
        /// Fill the arguments from `event` and `state` (with `settings`
        /// already resolved against the declaration) and lend them out.
        pub fn fill(
            &mut self,
            event: &model::Event,
            state: &model::State,
            settings: &[Option<model::SettingValue>],
        ) -> (&wit::Event, &wit::State) {
            let (e, s) = self.converted.get_or_insert_with(|| (event.into(), self::state(state, settings)));
            e.metric = (&event.metric).into();
            e.value = event.value;
            e.unit = (&event.unit).into();
            e.kind = kind(&event.kind);
            e.container_id.clone_from(&event.container_id);
            e.service_id.clone_from(&event.service_id);
            e.service_name.clone_from(&event.service_name);
            e.timestamp_ns = event.timestamp_ns;
            s.current_replicas = state.current_replicas;
            s.min_replicas = state.min_replicas;
            s.max_replicas = state.max_replicas;
            s.now_ns = state.now_ns;
            s.last_scale_up_ns = state.last_scale_up_ns;
            s.last_scale_down_ns = state.last_scale_down_ns;
            s.hold_until_ns = state.hold_until_ns;
            s.metrics.clear();
            s.metrics.extend(state.metrics.iter().map(aggregate));
            s.settings.clear();
            s.settings.extend(settings.iter().map(|v| v.as_ref().map(Into::into)));
            (e, s)
        }
    }

    impl std::fmt::Debug for Args {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Args").field("converted", &self.converted.is_some()).finish()
        }
    }

    impl From<wit::Decision> for model::Decision {
        fn from(decision: wit::Decision) -> Self {
            match decision.action {
                wit::Action::Scale(n) => model::Decision::scale(n, decision.reason),
                wit::Action::Hold(ns) => model::Decision::hold(ns, decision.reason),
            }
        }
    }

    impl From<wit::SettingSpec> for model::SettingSpec {
        fn from(spec: wit::SettingSpec) -> Self {
            model::SettingSpec {
                name: spec.name,
                kind: match spec.kind {
                    wit::SettingType::Number => model::SettingType::Number,
                    wit::SettingType::Quantity => model::SettingType::Quantity,
                    wit::SettingType::Duration => model::SettingType::Duration,
                    wit::SettingType::Flag => model::SettingType::Flag,
                    wit::SettingType::Text => model::SettingType::Text,
                },
                required: spec.required,
                default: spec.default,
                doc: spec.doc,
            }
        }
    }
}

pub use convert_v0_2::Args as ArgsV0_2;
