//! Events, service state and decisions as the daemon sees them.
//!
//! These types mirror the WIT contract (`wit/policy.wit`,
//! `autoscaler:policy@1.0.0`) and carry serde derives whose field names are
//! the WIT names, so the JSON a user writes for `host policy run --event ...
//! --state ...` (and a replay's output) reads like the WIT. Two differences,
//! both for the daemon's own use: an [`Event`] names its container by the
//! full Docker id and also carries its service's id and name (the policy workers'
//! queues, the actuator and the audit key on them); the WIT event has the
//! container as a number and the service only in `state`. The probes produce
//! [`Event`]s, the Swarm side produces [`State`]s, and only
//! `policy::bindings` converts them to the generated component types:
//! nothing outside `policy` knows about wasmtime.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use super::metrics::Metric;

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
    /// Events per second.
    PerSecond,
    /// Seconds.
    Seconds,
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
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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

/// Mean, min, max and sum of the latest values of the counted replicas.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Sum.
    pub sum: f64,
}

impl Stats {
    /// The statistics of `values`; all zero when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stats {
        let (mut n, mut sum, mut min, mut max) = (0u32, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return Stats::default();
        }
        Stats { mean: sum / f64::from(n), min, max, sum }
    }
}

/// One metric over a service's running replicas: the service view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Aggregate {
    /// What was measured.
    pub metric: Metric,
    /// The unit of `value`.
    pub unit: Unit,
    /// Replicas counted: running, warmed up, measured within the window.
    pub reporting: u32,
    /// Replicas still warming up, left out of `value`.
    pub warming: u32,
    /// The latest values of the reporting replicas.
    pub value: Stats,
    /// The same as a fraction of each replica's limit, for absolute units
    /// when every reporting replica has a limit.
    #[serde(default)]
    pub of_limit: Option<Stats>,
    /// How long a replica's latest value counts, ns.
    pub window_ns: u64,
}

/// The type of a setting a policy declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingType {
    /// A plain number.
    Number,
    /// A number with an optional SI or binary suffix.
    Quantity,
    /// A duration with a unit, delivered in ns.
    Duration,
    /// A boolean.
    Flag,
    /// Free text.
    Text,
}

impl SettingType {
    /// The WIT name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            SettingType::Number => "number",
            SettingType::Quantity => "quantity",
            SettingType::Duration => "duration",
            SettingType::Flag => "flag",
            SettingType::Text => "text",
        }
    }
}

/// A setting a policy reads: the label `autoscale.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SettingSpec {
    /// The label without the `autoscale.` prefix.
    pub name: String,
    /// How its value is parsed.
    pub kind: SettingType,
    /// A service that uses the policy without it is refused.
    pub required: bool,
    /// The value used when the label is absent, as a label would say it.
    pub default: Option<String>,
    /// One line for people.
    pub doc: String,
}

/// A parsed setting value; the case follows the declared type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingValue {
    /// `number` and `quantity` settings.
    Number(f64),
    /// `duration` settings, ns.
    DurationNs(u64),
    /// `flag` settings.
    Flag(bool),
    /// `text` settings.
    Text(String),
}

/// The settings a policy declared, parsed for one service, in declared
/// order: one shared list per (service labels, policy version), so that
/// every state of the service carries it by reference.
pub type Settings = Arc<[Option<SettingValue>]>;

/// What the daemon knows about a service when it asks a policy.
///
/// The service's id and name are also in [`Event`], where the daemon's
/// queues, actuator and audit read them; a hand-written state (`host
/// policy run`) may leave them out and gets the event's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct State {
    /// The Swarm service id.
    #[serde(default)]
    pub service_id: String,
    /// The Swarm service name.
    #[serde(default)]
    pub service_name: String,
    /// The settings the policy declared, parsed from the service's
    /// `autoscale.*` labels (else the declared default, else none), in the
    /// order the policy declared them. Resolved once per (labels, policy
    /// version) by the daemon and shared by every state of the service.
    #[serde(default, with = "shared_list")]
    pub settings: Settings,
    /// Replicas in the current service spec.
    pub current_replicas: u32,
    /// `autoscale.min`.
    pub min_replicas: u32,
    /// `autoscale.max`.
    pub max_replicas: u32,
    /// Now, CLOCK_MONOTONIC ns (0 in hand-written states: the policy runner
    /// fills in the clock).
    #[serde(default)]
    pub now_ns: u64,
    /// When the daemon last raised the replicas (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub last_scale_up_ns: Option<u64>,
    /// When the daemon last lowered the replicas (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub last_scale_down_ns: Option<u64>,
    /// Until when scale-in is held by this policy's `hold` (CLOCK_MONOTONIC ns).
    #[serde(default)]
    pub hold_until_ns: Option<u64>,
    /// The service view: one aggregate per metric.
    #[serde(default)]
    pub metrics: Vec<Aggregate>,
}

/// Serde for a shared list (`Arc<[T]>`) as a plain JSON list, without
/// serde's `rc` feature (a feature change would rebuild wasmtime).
mod shared_list {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(list: &Arc<[T]>, serializer: S) -> Result<S::Ok, S::Error> {
        list[..].serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<[T]>, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Arc::from)
    }
}

impl State {
    /// When the daemon last changed the replicas, in either direction.
    pub fn last_scale_ns(&self) -> Option<u64> {
        self.last_scale_up_ns.max(self.last_scale_down_ns)
    }

    /// The aggregate of `metric`, if the service has one.
    pub fn aggregate(&self, metric: &Metric) -> Option<&Aggregate> {
        self.metrics.iter().find(|a| &a.metric == metric)
    }
}

/// What a policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Run this many replicas.
    Scale(u32),
    /// Keep the current count and refuse scale-in for this long, ns.
    Hold(u64),
}

/// What a policy asked for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    /// Scale to a count, or hold.
    pub action: Action,
    /// Why, for the audit log; at most [`MAX_REASON_BYTES`] are kept.
    pub reason: String,
}

/// The longest reason kept from a policy; a longer one is cut on a
/// character boundary and marked.
pub const MAX_REASON_BYTES: usize = 1024;

impl Decision {
    /// A decision to run `replicas`.
    pub fn scale(replicas: u32, reason: impl Into<String>) -> Decision {
        Decision { action: Action::Scale(replicas), reason: reason.into() }.bounded()
    }

    /// A decision to hold scale-in for `for_ns` nanoseconds.
    pub fn hold(for_ns: u64, reason: impl Into<String>) -> Decision {
        Decision { action: Action::Hold(for_ns), reason: reason.into() }.bounded()
    }

    /// The target replica count, for a scale decision.
    pub fn target(&self) -> Option<u32> {
        match self.action {
            Action::Scale(n) => Some(n),
            Action::Hold(_) => None,
        }
    }

    /// This decision with its reason cut to [`MAX_REASON_BYTES`] on a
    /// character boundary, marked `… (cut)` when cut.
    pub fn bounded(mut self) -> Decision {
        if self.reason.len() > MAX_REASON_BYTES {
            const MARK: &str = "… (cut)";
            let mut end = MAX_REASON_BYTES - MARK.len();
            while !self.reason.is_char_boundary(end) {
                end -= 1;
            }
            self.reason.truncate(end);
            self.reason.push_str(MARK);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_fields_are_refused() {
        let json = r#"{"curent-replicas": 2, "min-replicas": 1, "max-replicas": 5}"#;
        let err = serde_json::from_str::<State>(json).expect_err("unknown field").to_string();
        assert!(err.contains("curent-replicas"), "{err}");
    }

    #[test]
    fn stats_and_reasons_are_bounded() {
        let s = Stats::of([1.0, 0.0, 0.5]);
        assert_eq!((s.mean, s.min, s.max, s.sum), (0.5, 0.0, 1.0, 1.5));
        assert_eq!(Stats::of([]), Stats::default());
        let long = Decision::scale(3, "é".repeat(4000));
        assert!(long.reason.len() <= MAX_REASON_BYTES && long.reason.ends_with("(cut)"), "{}", long.reason.len());
        assert_eq!(Decision::scale(3, "short").reason, "short");
        assert_eq!(Decision::hold(5, "x").target(), None);
    }

    #[test]
    fn event_json_uses_wit_names() {
        let json = r#"{
            "metric": "cpu", "value": 0.93, "unit": "fraction-of-limit",
            "kind": {"crossing": {"threshold": 0.8, "direction": "up"}},
            "container-id": "c1", "service-id": "s1", "service-name": "web",
            "timestamp-ns": 42
        }"#;
        let event: Event = serde_json::from_str(json).expect("valid event json");
        assert_eq!(event.metric, Metric::CPU);
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
        assert_eq!(event.metric, Metric::named("disk-io"));
        assert_eq!(event.metric.name(), "disk-io");
        assert_eq!(event.kind, EventKind::Sample);
    }

    #[test]
    fn state_settings_are_typed_values_and_optional_fields_default() {
        let json = r#"{"current-replicas": 2, "min-replicas": 1, "max-replicas": 5,
            "settings": [{"number": 0.8}, null, {"duration-ns": 3000000000}]}"#;
        let state: State = serde_json::from_str(json).expect("valid state json");
        assert_eq!(state.last_scale_ns(), None);
        assert_eq!(state.service_id, "");
        assert_eq!(
            state.settings[..],
            [Some(SettingValue::Number(0.8)), None, Some(SettingValue::DurationNs(3_000_000_000))]
        );
        let back = serde_json::to_value(&state).expect("serialise");
        assert_eq!(back["settings"][0]["number"], 0.8);
        let empty: State =
            serde_json::from_str(r#"{"current-replicas": 2, "min-replicas": 1, "max-replicas": 5}"#).expect("json");
        assert!(empty.settings.is_empty());
    }
}
