//! Short constructors for events and states, for the daemon's tests,
//! benchmarks and `host replay`-style tools: one place instead of struct
//! literals repeated across crates. Policy authors have the same in the
//! SDK's `testing` module.

use super::contract::{Aggregate, Crossing, Direction, Event, EventKind, Metric, Settings, State, Stats, Unit};

impl Event {
    /// A periodic sample of `metric` at `value` in `unit`, for container
    /// `c1` of service `s1` (`web`), at time 0.
    pub fn sample(metric: Metric, value: f64, unit: Unit) -> Event {
        Event {
            metric,
            value,
            unit,
            kind: EventKind::Sample,
            container_id: "c1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            timestamp_ns: 0,
        }
    }

    /// A CPU sample as a fraction of the limit.
    pub fn cpu(value: f64) -> Event {
        Event::sample(Metric::Cpu, value, Unit::FractionOfLimit)
    }

    /// This event as a crossing of `threshold` in `direction`.
    pub fn crossing(mut self, threshold: f64, direction: Direction) -> Event {
        self.kind = EventKind::Crossing(Crossing { threshold, direction });
        self
    }

    /// This event about `container` of service `id` named `name`.
    pub fn of(mut self, container: &str, id: &str, name: &str) -> Event {
        self.container_id = container.into();
        self.service_id = id.into();
        self.service_name = name.into();
        self
    }

    /// This event measured at `timestamp_ns`.
    pub fn at(mut self, timestamp_ns: u64) -> Event {
        self.timestamp_ns = timestamp_ns;
        self
    }
}

impl State {
    /// Service `s1` (`web`, as [`Event::sample`]'s) at `current` replicas
    /// within `[min, max]`, no history, no settings.
    pub fn replicas(current: u32, min: u32, max: u32) -> State {
        State {
            service_id: "s1".into(),
            service_name: "web".into(),
            current_replicas: current,
            min_replicas: min,
            max_replicas: max,
            ..State::default()
        }
    }

    /// This state for service `id` named `name`.
    pub fn of(mut self, id: &str, name: &str) -> State {
        self.service_id = id.into();
        self.service_name = name.into();
        self
    }

    /// This state with these parsed settings (in the policy's declared
    /// order: `LoadedPolicy::resolve` makes them from labels).
    pub fn with_settings(mut self, settings: Settings) -> State {
        self.settings = settings;
        self
    }

    /// This state with an aggregate of `metric` over `values`, one per
    /// reporting replica, plus `warming` replicas left out.
    pub fn with_metric(mut self, metric: Metric, unit: Unit, values: &[f64], warming: u32) -> State {
        self.metrics.retain(|a| a.metric != metric);
        self.metrics.push(Aggregate {
            metric,
            unit,
            reporting: u32::try_from(values.len()).unwrap_or(u32::MAX),
            warming,
            value: Stats::of(values.iter().copied()),
            of_limit: None,
            window_ns: 3_000_000_000,
        });
        self
    }

    /// This state with a CPU aggregate (fraction of the limit) over `values`.
    pub fn with_cpu(self, values: &[f64]) -> State {
        self.with_metric(Metric::Cpu, Unit::FractionOfLimit, values, 0)
    }
}
