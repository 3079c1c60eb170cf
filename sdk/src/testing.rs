//! Builders for unit-testing a policy natively, with `cargo test`.
//!
//! [`EventBuilder`] makes the event that triggers a call; [`StateBuilder`]
//! makes the service view and the settings. [`StateBuilder::build_for`]
//! places the settings in the order the policy declared them and applies
//! the declared defaults, parsing label text by the daemon's rules, so that
//! the state is the one the daemon would pass for those labels. It also
//! tells the SDK which settings the policy declared (for this test's
//! thread), so that [`State::number`] and friends work as in the component.
//!
//! ```
//! use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
//! use autoscaler_sdk::{Decision, Event, Policy, SettingSpec, State};
//!
//! struct Busy;
//! impl Policy for Busy {
//!     fn settings() -> Vec<SettingSpec> {
//!         vec![SettingSpec::number("cpu.upper").default("0.8")]
//!     }
//!     fn decide(_event: Event, state: State) -> Option<Decision> {
//!         let mean = state.cpu()?.value.mean;
//!         (mean >= state.number("cpu.upper")?).then(|| Decision::scale(state.current_replicas + 1, "busy"))
//!     }
//! }
//!
//! let event = EventBuilder::cpu(0.93).crossing_up(0.8).container("c1").build();
//! let state = StateBuilder::new().service("web").replicas(2, 1, 5).cpu_mean(0.9, 2).label("cpu.upper", "0.85").build_for::<Busy>();
//! assert_eq!(state.number("cpu.upper"), Some(0.85));
//! assert_eq!(Busy::decide(event, state).and_then(|d| d.target()), Some(3));
//! ```
//!
//! The builders panic with a clear message on a test's mistake (a setting
//! the policy does not declare, a label that does not parse, a required
//! setting left out); [`StateBuilder::try_build_for`] returns it instead.
//!
//! [`decide_as_component`] calls a policy through the functions
//! [`export_policy!`](crate::export_policy) generated, as the daemon calls
//! the component.

use std::time::Duration;

use crate::declared::declare_settings;
use crate::settings::{BOOL_FORMS, parse_bool, parse_duration, parse_number, parse_quantity};
use crate::state::container_number;
use crate::{
    Aggregate, Crossing, Decision, Direction, Event, EventKind, Policy, SettingSpec, SettingType, SettingValue, State,
    Stats, Unit, metric,
};

/// The clock reading both builders use unless told otherwise: one hour
/// after boot, so that "some time ago" never goes below zero.
pub const DEFAULT_NOW_NS: u64 = 3_600_000_000_000;

/// Builds an [`Event`]. Defaults: a periodic sample from container `c1` at
/// [`DEFAULT_NOW_NS`]. `event.container` is the number of the container id
/// given, as the daemon reads it (`c1` is `0xc100000000000000`).
#[derive(Debug, Clone)]
pub struct EventBuilder {
    /// The event being built.
    event: Event,
}

impl EventBuilder {
    /// An event of the metric named `metric` with `value` in `unit`.
    pub fn new(metric: &str, value: f64, unit: Unit) -> Self {
        EventBuilder {
            event: Event {
                metric: metric.to_string(),
                value,
                unit,
                kind: EventKind::Sample,
                container: container_number("c1"),
                timestamp_ns: DEFAULT_NOW_NS,
            },
        }
    }

    /// CPU as a fraction of the container's limit.
    pub fn cpu(value: f64) -> Self {
        Self::new(metric::CPU, value, Unit::FractionOfLimit)
    }

    /// Memory in bytes.
    pub fn memory(bytes: f64) -> Self {
        Self::new(metric::MEMORY, bytes, Unit::Bytes)
    }

    /// Open connections.
    pub fn connections(count: f64) -> Self {
        Self::new(metric::CONNECTIONS, count, Unit::Count)
    }

    /// Another unit (for example [`Unit::Cores`] for a CPU without a limit).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.event.unit = unit;
        self
    }

    /// A crossing of `threshold` upwards.
    pub fn crossing_up(mut self, threshold: f64) -> Self {
        self.event.kind = EventKind::Crossing(Crossing { threshold, direction: Direction::Up });
        self
    }

    /// A crossing of `threshold` downwards.
    pub fn crossing_down(mut self, threshold: f64) -> Self {
        self.event.kind = EventKind::Crossing(Crossing { threshold, direction: Direction::Down });
        self
    }

    /// The container, by its id (hex digits; `container` is their number).
    pub fn container(mut self, id: &str) -> Self {
        self.event.container = container_number(id);
        self
    }

    /// The kernel timestamp.
    pub fn timestamp_ns(mut self, ns: u64) -> Self {
        self.event.timestamp_ns = ns;
        self
    }

    /// The event.
    pub fn build(self) -> Event {
        self.event
    }
}

/// A setting value given to a [`StateBuilder`].
#[derive(Debug, Clone)]
enum Given {
    /// Label text, parsed by the declared type as the daemon would.
    Label(String),
    /// An already typed value, checked against the declared type.
    Value(SettingValue),
}

/// Builds a [`State`]. Defaults: service `web` (id `s1`), 1 replica within
/// `[1, 10]`, the clock at [`DEFAULT_NOW_NS`], never scaled, no hold, no
/// metrics, no labels.
#[derive(Debug, Clone)]
pub struct StateBuilder {
    /// The state without its settings, which `build_for` places.
    state: State,
    /// Settings given by name, in the order given.
    given: Vec<(String, Given)>,
    /// Replicas warming up, set on every aggregate when built.
    warming: Option<u32>,
}

impl Default for StateBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StateBuilder {
    /// A state with the defaults above.
    pub fn new() -> Self {
        StateBuilder {
            state: State {
                service_id: "s1".into(),
                service_name: "web".into(),
                settings: Vec::new(),
                current_replicas: 1,
                min_replicas: 1,
                max_replicas: 10,
                now_ns: DEFAULT_NOW_NS,
                last_scale_up_ns: None,
                last_scale_down_ns: None,
                hold_until_ns: None,
                metrics: Vec::new(),
            },
            given: Vec::new(),
            warming: None,
        }
    }

    /// The service name.
    pub fn service(mut self, name: &str) -> Self {
        self.state.service_name = name.into();
        self
    }

    /// The service id.
    pub fn service_id(mut self, id: &str) -> Self {
        self.state.service_id = id.into();
        self
    }

    /// Current, min and max replicas.
    pub fn replicas(mut self, current: u32, min: u32, max: u32) -> Self {
        self.state.current_replicas = current;
        self.state.min_replicas = min;
        self.state.max_replicas = max;
        self
    }

    /// The clock.
    pub fn now_ns(mut self, ns: u64) -> Self {
        self.state.now_ns = ns;
        self
    }

    /// The daemon last raised the replicas `ago` before now.
    pub fn last_scale_up_ago(mut self, ago: Duration) -> Self {
        self.state.last_scale_up_ns = Some(self.state.now_ns.saturating_sub(nanos(ago)));
        self
    }

    /// The daemon last lowered the replicas `ago` before now.
    pub fn last_scale_down_ago(mut self, ago: Duration) -> Self {
        self.state.last_scale_down_ns = Some(self.state.now_ns.saturating_sub(nanos(ago)));
        self
    }

    /// Scale-in is held for `remaining` from now.
    pub fn hold_for(mut self, remaining: Duration) -> Self {
        self.state.hold_until_ns = Some(self.state.now_ns.saturating_add(nanos(remaining)));
        self
    }

    /// The latest CPU value (fraction of the limit) of each reporting replica.
    pub fn cpu(self, values: &[f64]) -> Self {
        self.values(metric::CPU, Unit::FractionOfLimit, values)
    }

    /// The latest memory value (bytes) of each reporting replica.
    pub fn memory(self, values: &[f64]) -> Self {
        self.values(metric::MEMORY, Unit::Bytes, values)
    }

    /// The latest connection count of each reporting replica.
    pub fn connections(self, values: &[f64]) -> Self {
        self.values(metric::CONNECTIONS, Unit::Count, values)
    }

    /// `reporting` replicas all at CPU `mean`.
    pub fn cpu_mean(self, mean: f64, reporting: u32) -> Self {
        self.values(metric::CPU, Unit::FractionOfLimit, &vec![mean; reporting as usize])
    }

    /// `reporting` replicas all at memory `mean` bytes.
    pub fn memory_mean(self, mean: f64, reporting: u32) -> Self {
        self.values(metric::MEMORY, Unit::Bytes, &vec![mean; reporting as usize])
    }

    /// `reporting` replicas all at `mean` connections.
    pub fn connections_mean(self, mean: f64, reporting: u32) -> Self {
        self.values(metric::CONNECTIONS, Unit::Count, &vec![mean; reporting as usize])
    }

    /// The aggregate of the metric named `metric` in `unit` over the latest
    /// values of the reporting replicas (mean, min, max, sum as the daemon
    /// computes them; all 0 without values). Keeps the metric's `warming`
    /// count.
    pub fn values(mut self, metric: &str, unit: Unit, values: &[f64]) -> Self {
        let aggregate = self.aggregate_mut(metric);
        aggregate.unit = unit;
        aggregate.reporting = u32::try_from(values.len()).unwrap_or(u32::MAX);
        aggregate.value = stats(values);
        self
    }

    /// `count` more replicas are running but still warming up: counted in
    /// `warming` of every aggregate and left out of the values given (the
    /// daemon leaves them out of the values).
    pub fn warming(mut self, count: u32) -> Self {
        self.warming = Some(count);
        self
    }

    /// A whole aggregate, replacing the one of its metric (for `of-limit`,
    /// other units or metrics).
    pub fn aggregate(mut self, aggregate: Aggregate) -> Self {
        self.state.metrics.retain(|a| a.metric != aggregate.metric);
        self.state.metrics.push(aggregate);
        self
    }

    /// The label `autoscale.<name>=<text>`, parsed by the declared type.
    pub fn label(self, name: &str, text: &str) -> Self {
        self.given(name, Given::Label(text.to_string()))
    }

    /// A `number` or `quantity` setting.
    pub fn setting_number(self, name: &str, value: f64) -> Self {
        self.given(name, Given::Value(SettingValue::Number(value)))
    }

    /// A `duration` setting.
    pub fn setting_duration(self, name: &str, value: Duration) -> Self {
        self.given(name, Given::Value(SettingValue::DurationNs(nanos(value))))
    }

    /// A `flag` setting.
    pub fn setting_flag(self, name: &str, value: bool) -> Self {
        self.given(name, Given::Value(SettingValue::Flag(value)))
    }

    /// A `text` setting.
    pub fn setting_text(self, name: &str, value: &str) -> Self {
        self.given(name, Given::Value(SettingValue::Text(value.to_string())))
    }

    /// The state policy `P` would get: settings in `P`'s declared order,
    /// defaults applied. Declares `P`'s settings for this thread.
    ///
    /// # Panics
    ///
    /// When [`try_build_for`](Self::try_build_for) returns an error.
    pub fn build_for<P: Policy>(self) -> State {
        match self.try_build_for::<P>() {
            Ok(state) => state,
            Err(err) => panic!("{err}"),
        }
    }

    /// [`build_for`](Self::build_for), with the daemon's refusal as an error:
    /// a setting `P` does not declare, a value that does not parse or has
    /// another type, a required setting without a value.
    pub fn try_build_for<P: Policy>(self) -> Result<State, String> {
        let specs = P::settings();
        if let Some((name, _)) = self.given.iter().find(|(name, _)| !specs.iter().any(|s| s.name == *name)) {
            let declared: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!("setting {name:?} is not declared by the policy (it declares {declared:?})"));
        }
        let mut state = self.state;
        if let Some(count) = self.warming {
            state.metrics.iter_mut().for_each(|aggregate| aggregate.warming = count);
        }
        state.settings = specs.iter().map(|spec| resolve(spec, &self.given)).collect::<Result<Vec<_>, _>>()?;
        declare_settings(specs);
        Ok(state)
    }

    /// Record a setting, replacing an earlier one of the same name.
    fn given(mut self, name: &str, value: Given) -> Self {
        self.given.retain(|(n, _)| n != name);
        self.given.push((name.to_string(), value));
        self
    }

    /// The aggregate of `metric`, added with no values if missing.
    fn aggregate_mut(&mut self, metric: &str) -> &mut Aggregate {
        let metrics = &mut self.state.metrics;
        let at = match metrics.iter().position(|a| a.metric == metric) {
            Some(at) => at,
            None => {
                metrics.push(Aggregate {
                    metric: metric.to_string(),
                    unit: Unit::Count,
                    reporting: 0,
                    warming: 0,
                    value: stats(&[]),
                    of_limit: None,
                    window_ns: 1_000_000_000,
                });
                metrics.len() - 1
            }
        };
        &mut metrics[at]
    }
}

/// Decide as the component would: through the `decide` that
/// [`export_policy!`](crate::export_policy) generated, which declares the
/// policy's settings first when this thread (an instance) has none yet.
/// A new thread stands for a new instance, where the daemon did not call
/// `settings()`.
pub fn decide_as_component<P: crate::bindings::Guest>(event: Event, state: State) -> Option<Decision> {
    P::decide(event, state)
}

/// The value of `spec` from what was given, else its default.
fn resolve(spec: &SettingSpec, given: &[(String, Given)]) -> Result<Option<SettingValue>, String> {
    let name = &spec.name;
    match given.iter().find(|(n, _)| n == name).map(|(_, g)| g) {
        Some(Given::Label(text)) => {
            parse(spec.kind, text).map(Some).map_err(|e| format!("label autoscale.{name}={text:?} {e}"))
        }
        Some(Given::Value(value)) if fits(spec.kind, value) => Ok(Some(value.clone())),
        Some(Given::Value(value)) => {
            Err(format!("setting {name:?} is declared as {} but was given {value:?}", spec.kind.name()))
        }
        None => match &spec.default {
            Some(text) => parse(spec.kind, text)
                .map(Some)
                .map_err(|e| format!("the policy's default for {name:?} ({text:?}) {e}")),
            None if spec.required => Err(format!("label autoscale.{name} is required by the policy and missing")),
            None => Ok(None),
        },
    }
}

/// Parse label text as the daemon does for a setting of type `kind`.
fn parse(kind: SettingType, text: &str) -> Result<SettingValue, String> {
    match kind {
        SettingType::Number => parse_number(text).map(SettingValue::Number).ok_or_else(|| "is not a number".into()),
        SettingType::Quantity => parse_quantity(text)
            .map(SettingValue::Number)
            .ok_or_else(|| "is not a quantity (0.8, 2k, 1.5G, 512Mi)".into()),
        SettingType::Duration => parse_duration(text).map(|d| SettingValue::DurationNs(nanos(d))),
        SettingType::Flag => parse_bool(text).map(SettingValue::Flag).ok_or_else(|| format!("is not {BOOL_FORMS}")),
        SettingType::Text => Ok(SettingValue::Text(text.to_string())),
    }
}

/// Whether a typed value is the case the declared type delivers.
fn fits(kind: SettingType, value: &SettingValue) -> bool {
    matches!(
        (kind, value),
        (SettingType::Number | SettingType::Quantity, SettingValue::Number(_))
            | (SettingType::Duration, SettingValue::DurationNs(_))
            | (SettingType::Flag, SettingValue::Flag(_))
            | (SettingType::Text, SettingValue::Text(_))
    )
}

/// Mean, min, max and sum of `values`; all 0 for none.
fn stats(values: &[f64]) -> Stats {
    if values.is_empty() {
        return Stats { mean: 0.0, min: 0.0, max: 0.0, sum: 0.0 };
    }
    let sum: f64 = values.iter().sum();
    Stats {
        mean: sum / values.len() as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        sum,
    }
}

/// A duration in nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
