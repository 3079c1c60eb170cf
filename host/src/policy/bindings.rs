//! The only place `bindgen!` runs: host-side bindings for every contract
//! version the daemon supports, plus conversions between the daemon's
//! [`crate::model`] types and the generated ones. Everything else in the
//! crate uses `crate::model`.
//!
//! - [`v0_3`]: `wit/policy.wit`, the current contract
//!   (`autoscaler:policy@0.3.0`): the service's id, name and settings go to
//!   the policy once per binding ([`convert_v0_3::service`]), and a call
//!   carries no string or list;
//! - [`v0_2`]: `wit/v0.2/policy.wit`, frozen, for components built against
//!   0.2.0: the service's strings and settings on every call;
//! - [`v0_1`]: `wit/v0.1/policy.wit`, frozen, for components built against
//!   0.1.0.
//!
//! Components of every version keep loading and running unchanged. One
//! linker carries the `host` import of all three; a component is bound to
//! the newest version whose world it fits.

use crate::model;

/// Bindings of contract 0.1.0 (frozen).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "policy",
    });
}

/// Bindings of contract 0.2.0 (frozen in `wit/v0.2`).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "policy",
    });
}

/// Bindings of contract 0.3.0 (current).
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
    });
}

/// The world every version defines, for messages and `policy check`.
pub const WORLD: &str = "autoscaler:policy/policy";
/// The newest contract version these bindings implement.
pub const CONTRACT_VERSION: &str = "0.3.0";
/// Every contract version the daemon runs, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];
/// Prefix of every import name this package defines.
pub const PACKAGE_PREFIX: &str = "autoscaler:policy/";

/// Conversions shared by every version, written once per generated module.
macro_rules! common_conversions {
    ($wit:path) => {
        use $wit as wit;

        impl From<&model::Metric> for wit::Metric {
            fn from(metric: &model::Metric) -> Self {
                // The frozen contracts name three metrics; any other
                // crosses as `other`.
                match metric.name() {
                    "cpu" => wit::Metric::Cpu,
                    "memory" => wit::Metric::Memory,
                    "connections" => wit::Metric::Connections,
                    name => wit::Metric::Other(name.to_string()),
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
    };
}

/// The event of 0.1 and 0.2, which carries the container id and the
/// service's id and name as strings.
macro_rules! event_with_strings {
    () => {
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

/// The types 0.2 and 0.3 share: the service view, typed settings and
/// their declaration, decisions with an action.
macro_rules! service_view_conversions {
    () => {
        fn stats(s: &model::Stats) -> wit::Stats {
            wit::Stats { mean: s.mean, min: s.min, max: s.max, sum: s.sum }
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
    };
}

mod convert_v0_1 {
    use super::{model, v0_1};
    common_conversions!(v0_1::autoscaler::policy::types);
    event_with_strings!();

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
    event_with_strings!();
    service_view_conversions!();

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
}

pub use convert_v0_2::Args as ArgsV0_2;

mod convert_v0_3 {
    use super::{model, v0_3};
    common_conversions!(v0_3::autoscaler::policy::types);
    service_view_conversions!();

    /// The replica as 0.3 names it: the first 16 hex digits of the
    /// container id as a number, the first digit highest. An id with fewer
    /// (hand-written ids in tests and `host policy run`) is read up to its
    /// first character that is not a hex digit and padded with zeros, so
    /// that the policy's `{:016x}` still starts with it.
    pub fn container(id: &str) -> u64 {
        let mut number = 0u64;
        let mut digits = 0;
        // Bytes, not chars: `char::to_digit` on a decoded char made this a
        // third of converting an event.
        for &byte in id.as_bytes().iter().take(16) {
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'a'..=b'f' => byte - b'a' + 10,
                b'A'..=b'F' => byte - b'A' + 10,
                _ => break,
            };
            number = number << 4 | u64::from(digit);
            digits += 1;
        }
        number.checked_shl(4 * (16 - digits)).unwrap_or(0)
    }

    /// The event of a 0.3 `decide`: no strings, the replica by number.
    pub fn event(event: &model::Event) -> wit::Event {
        wit::Event {
            metric: (&event.metric).into(),
            value: event.value,
            unit: (&event.unit).into(),
            kind: kind(&event.kind),
            container: container(&event.container_id),
            timestamp_ns: event.timestamp_ns,
        }
    }

    /// The state of a 0.3 `decide`: the three metrics the contract names in
    /// their own fields (the first aggregate of each), any other in
    /// `other-metrics`, left none when there is none so that no list is
    /// lowered. Nothing here allocates unless there are other metrics.
    pub fn state(state: &model::State) -> wit::State {
        let (mut cpu, mut memory, mut connections, mut others) = (None, None, None, Vec::new());
        for a in &state.metrics {
            let slot = match a.metric.name() {
                "cpu" => &mut cpu,
                "memory" => &mut memory,
                "connections" => &mut connections,
                _ => {
                    others.push(aggregate(a));
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(aggregate(a));
            }
        }
        wit::State {
            current_replicas: state.current_replicas,
            min_replicas: state.min_replicas,
            max_replicas: state.max_replicas,
            now_ns: state.now_ns,
            last_scale_up_ns: state.last_scale_up_ns,
            last_scale_down_ns: state.last_scale_down_ns,
            hold_until_ns: state.hold_until_ns,
            cpu,
            memory,
            connections,
            other_metrics: (!others.is_empty()).then_some(others),
        }
    }

    /// What `bind-service` tells the policy about a service, once per binding.
    pub fn service(handle: u32, entry: &crate::policy::services::Entry) -> wit::Service {
        wit::Service {
            handle,
            id: entry.id.clone(),
            name: entry.name.clone(),
            settings: entry.settings.iter().map(|v| v.as_ref().map(Into::into)).collect(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_container_is_its_first_sixteen_hex_digits() {
            let id = "4f1c0a7d2b9e4c3aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
            assert_eq!(container(id), 0x4f1c_0a7d_2b9e_4c3a);
            assert_eq!(format!("{:016x}", container(id)), &id[..16]);
            assert_eq!(format!("{:016x}", container("0123abcd")), "0123abcd00000000");
            assert_eq!(container("c1"), 0xc100_0000_0000_0000);
            assert_eq!(container("web.1"), 0);
            assert_eq!(container("ABCDEF0123456789ffff"), 0xabcd_ef01_2345_6789);
            assert_eq!(container(""), 0);
        }

        #[test]
        fn the_three_metrics_get_their_fields_and_others_the_list() {
            let state = model::State::replicas(2, 1, 5).with_cpu(&[0.5]).with_metric(
                model::Metric::CONNECTIONS,
                model::Unit::Count,
                &[3.0],
                1,
            );
            let wit = self::state(&state);
            assert_eq!(wit.cpu.as_ref().map(|a| a.value.mean), Some(0.5));
            assert_eq!(wit.connections.as_ref().map(|a| a.warming), Some(1));
            assert!(wit.memory.is_none() && wit.other_metrics.is_none());
            let state = state.with_metric(model::Metric::named("gpu"), model::Unit::Count, &[1.0], 0);
            let others = self::state(&state).other_metrics.expect("gpu");
            assert!(matches!(&others[..], [wit::Aggregate { metric: wit::Metric::Other(name), .. }] if name == "gpu"));
        }
    }
}

pub use convert_v0_3::{event as event_v0_3, service as service_v0_3, state as state_v0_3};
