//! The only place `bindgen!` runs: host-side bindings for `wit/policy.wit`,
//! plus conversions between the daemon's [`crate::model`] types and the
//! generated ones. Everything else in the crate uses `crate::model`.

use crate::model;

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "policy",
});

pub use autoscaler::policy::host::Level;
pub use autoscaler::policy::types as wit;

/// The package this daemon implements, for messages and `policy check`.
pub const WORLD: &str = "autoscaler:policy/policy";
/// The contract version these bindings were generated from.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// Prefix of every import name this package defines.
pub const PACKAGE_PREFIX: &str = "autoscaler:policy/";

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

impl From<&model::EventKind> for wit::EventKind {
    fn from(kind: &model::EventKind) -> Self {
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
}

impl From<&model::Event> for wit::Event {
    fn from(event: &model::Event) -> Self {
        wit::Event {
            metric: (&event.metric).into(),
            value: event.value,
            unit: (&event.unit).into(),
            kind: (&event.kind).into(),
            container_id: event.container_id.clone(),
            service_id: event.service_id.clone(),
            service_name: event.service_name.clone(),
            timestamp_ns: event.timestamp_ns,
        }
    }
}

impl From<&model::State> for wit::State {
    fn from(state: &model::State) -> Self {
        wit::State {
            current_replicas: state.current_replicas,
            min_replicas: state.min_replicas,
            max_replicas: state.max_replicas,
            last_scale_ns: state.last_scale_ns,
            settings: state.settings.clone(),
        }
    }
}

impl From<wit::Decision> for model::Decision {
    fn from(decision: wit::Decision) -> Self {
        model::Decision { target_replicas: decision.target_replicas, reason: decision.reason }
    }
}
