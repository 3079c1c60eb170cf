//! Events, service state and decisions as the daemon sees them.
//!
//! These types mirror the WIT contract (`wit/policy.wit`) one to one and carry
//! serde derives whose field names are the WIT names, so the JSON a user
//! writes for `host policy run --event ... --state ...` reads like the WIT.
//! The probes produce [`Event`]s, the Swarm side produces [`State`]s, and only
//! `policy::bindings` converts them to the generated component types: nothing
//! outside `policy` knows about wasmtime.

use serde::{Deserialize, Serialize};

/// What was measured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// CPU utilisation over the probe window.
    Cpu,
    /// Memory in use (memory cgroup usage).
    Memory,
    /// Open TCP connections accepted by the container.
    Connections,
    /// A measurement the contract does not name yet.
    Other(String),
}

impl Metric {
    /// The WIT case name, used in logs, metrics and settings keys.
    pub fn name(&self) -> &str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Connections => "connections",
            Metric::Other(name) => name,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The unit of [`Event::value`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// A fraction of the container's limit.
    FractionOfLimit,
    /// CPU cores.
    Cores,
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
    /// A unit the contract does not name yet.
    Other(String),
}

/// Which way a value crossed a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From below to at or above the threshold.
    Up,
    /// From at or above to below the threshold.
    Down,
}

/// A threshold crossing detected in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Crossing {
    /// The threshold crossed, in the event's unit.
    pub threshold: f64,
    /// Which way.
    pub direction: Direction,
}

/// Why an event was pushed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A periodic window summary.
    Sample,
    /// A threshold crossing, pushed at once.
    Crossing(Crossing),
}

/// One measurement of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Event {
    /// What was measured.
    pub metric: Metric,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit of `value`.
    pub unit: Unit,
    /// Why it was pushed.
    pub kind: EventKind,
    /// Docker container id.
    pub container_id: String,
    /// Swarm service id.
    pub service_id: String,
    /// Swarm service name.
    pub service_name: String,
    /// CLOCK_MONOTONIC nanoseconds when the kernel measured it.
    pub timestamp_ns: u64,
}

/// What the daemon knows about a service when it asks a policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct State {
    /// Replicas in the current service spec.
    pub current_replicas: u32,
    /// `autoscale.min`.
    pub min_replicas: u32,
    /// `autoscale.max`.
    pub max_replicas: u32,
    /// When the daemon last scaled this service (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub last_scale_ns: Option<u64>,
    /// `autoscale.*` labels without the prefix, in label order.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
}

/// What a policy asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    /// Replicas the service should run.
    pub target_replicas: u32,
    /// Why, for the audit log.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_uses_wit_names() {
        let json = r#"{
            "metric": "cpu", "value": 0.93, "unit": "fraction-of-limit",
            "kind": {"crossing": {"threshold": 0.8, "direction": "up"}},
            "container-id": "c1", "service-id": "s1", "service-name": "web",
            "timestamp-ns": 42
        }"#;
        let event: Event = serde_json::from_str(json).expect("valid event json");
        assert_eq!(event.metric, Metric::Cpu);
        assert_eq!(event.unit, Unit::FractionOfLimit);
        assert_eq!(event.kind, EventKind::Crossing(Crossing { threshold: 0.8, direction: Direction::Up }));
        assert_eq!(event.service_name, "web");
        let back = serde_json::to_value(&event).expect("serialise");
        assert_eq!(back["container-id"], "c1");
        assert_eq!(back["timestamp-ns"], 42);
    }

    #[test]
    fn other_metric_and_sample_kind_round_trip() {
        let json = r#"{"metric": {"other": "disk-io"}, "value": 1.0, "unit": {"other": "iops"},
            "kind": "sample", "container-id": "", "service-id": "", "service-name": "",
            "timestamp-ns": 0}"#;
        let event: Event = serde_json::from_str(json).expect("valid event json");
        assert_eq!(event.metric, Metric::Other("disk-io".into()));
        assert_eq!(event.metric.name(), "disk-io");
        assert_eq!(event.kind, EventKind::Sample);
    }

    #[test]
    fn state_settings_are_pairs_and_optional_fields_default() {
        let json = r#"{"current-replicas": 2, "min-replicas": 1, "max-replicas": 5,
            "settings": [["cpu.upper", "0.8"]]}"#;
        let state: State = serde_json::from_str(json).expect("valid state json");
        assert_eq!(state.last_scale_ns, None);
        assert_eq!(state.settings, vec![("cpu.upper".to_string(), "0.8".to_string())]);
    }
}
