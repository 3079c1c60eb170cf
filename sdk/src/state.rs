//! Convenience methods on the contract's types: typed settings and the
//! service view on [`State`], constructors on [`Decision`], small helpers
//! on [`Event`].

use std::time::Duration;

use crate::declared::position;
use crate::{Action, Aggregate, Crossing, Decision, Event, EventKind, SettingValue, State};

/// The names of the metrics the daemon measures today, as `event.metric`
/// and `aggregate.metric` carry them. Metrics are data: a daemon may send
/// names this list does not have yet (a policy ignores those it does not
/// know), and a new metric adds a name here and its accessor on [`State`](crate::State)
/// below, never a contract version.
pub mod metric {
    /// CPU utilisation over the probe window: a fraction of the limit, or
    /// cores without a limit.
    pub const CPU: &str = "cpu";
    /// Memory in use (memory cgroup usage), bytes.
    pub const MEMORY: &str = "memory";
    /// Open TCP connections accepted by the replica, a count.
    pub const CONNECTIONS: &str = "connections";
    /// Connections waiting in the replica's listening sockets' accept
    /// queues: demand it has not started on, a count.
    pub const QUEUE: &str = "queue";
    /// Requests received and not yet answered (concurrency), a count.
    pub const INFLIGHT: &str = "inflight";
    /// Requests that arrived per second over the probe's sample window.
    pub const REQUEST_RATE: &str = "request-rate";
    /// Response time, median over the sample window, seconds.
    pub const RESPONSE_TIME_P50: &str = "response-time-p50";
    /// Response time, 95th percentile over the sample window, seconds.
    pub const RESPONSE_TIME_P95: &str = "response-time-p95";
    /// Response time, 99th percentile over the sample window, seconds.
    pub const RESPONSE_TIME_P99: &str = "response-time-p99";
}

impl State {
    /// The value of declared setting `name`: the label's value parsed to the
    /// declared type, else the declared default, else `None`.
    #[inline]
    pub fn setting(&self, name: &str) -> Option<&SettingValue> {
        self.settings.get(position(name)?)?.as_ref()
    }

    /// A `number` or `quantity` setting (`0.8`, `512Mi` as 536870912.0).
    #[inline]
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.setting(name)? {
            SettingValue::Number(value) => Some(*value),
            other => mismatch(name, "number", other),
        }
    }

    /// A `duration` setting.
    #[inline]
    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.setting(name)? {
            SettingValue::DurationNs(ns) => Some(Duration::from_nanos(*ns)),
            other => mismatch(name, "duration", other),
        }
    }

    /// A `flag` setting.
    #[inline]
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.setting(name)? {
            SettingValue::Flag(value) => Some(*value),
            other => mismatch(name, "flag", other),
        }
    }

    /// A `text` setting, as written in the label.
    #[inline]
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.setting(name)? {
            SettingValue::Text(value) => Some(value),
            other => mismatch(name, "text", other),
        }
    }

    /// The service-wide aggregate of the metric named `name` (see
    /// [`metric`]), if the daemon measures it for this service.
    #[inline]
    pub fn metric(&self, name: &str) -> Option<&Aggregate> {
        self.metrics.iter().find(|a| a.metric == name)
    }

    /// The service-wide CPU aggregate.
    #[inline]
    pub fn cpu(&self) -> Option<&Aggregate> {
        self.metric(metric::CPU)
    }

    /// The service-wide memory aggregate.
    #[inline]
    pub fn memory(&self) -> Option<&Aggregate> {
        self.metric(metric::MEMORY)
    }

    /// The service-wide connections aggregate.
    #[inline]
    pub fn connections(&self) -> Option<&Aggregate> {
        self.metric(metric::CONNECTIONS)
    }

    /// Requests waiting in the accept queues over the service's replicas.
    #[inline]
    pub fn queue(&self) -> Option<&Aggregate> {
        self.metric(metric::QUEUE)
    }

    /// Requests in flight (received, not yet answered) over the replicas.
    #[inline]
    pub fn inflight(&self) -> Option<&Aggregate> {
        self.metric(metric::INFLIGHT)
    }

    /// Requests per second arriving at the service's replicas.
    #[inline]
    pub fn request_rate(&self) -> Option<&Aggregate> {
        self.metric(metric::REQUEST_RATE)
    }

    /// The requests the service holds: the larger of the requests in flight
    /// and the connections queued, summed over the reporting replicas;
    /// `None` when neither is reported.
    ///
    /// Not their sum: `inflight` counts a request from the arrival of its
    /// data, accept-queue time included, so a queued connection whose
    /// request has arrived is in both (docs/demand.md). `queue` is larger
    /// only when connections wait with no request yet (a SYN backlog, a
    /// client that has not sent), which `inflight` cannot see.
    pub fn demand(&self) -> Option<f64> {
        let sum = |a: Option<&Aggregate>| a.filter(|a| a.reporting > 0).map(|a| a.value.sum);
        match (sum(self.inflight()), sum(self.queue())) {
            (None, None) => None,
            (inflight, queue) => Some(inflight.unwrap_or(0.0).max(queue.unwrap_or(0.0))),
        }
    }

    /// The response time percentile `p` (50, 95 or 99) over the replicas, seconds.
    #[inline]
    pub fn response_time(&self, p: u8) -> Option<&Aggregate> {
        self.metric(match p {
            50 => metric::RESPONSE_TIME_P50,
            95 => metric::RESPONSE_TIME_P95,
            _ => metric::RESPONSE_TIME_P99,
        })
    }

    /// The aggregate of the metric named `name`, to change it (in tests).
    pub fn metric_mut(&mut self, name: &str) -> Option<&mut Aggregate> {
        self.metrics.iter_mut().find(|a| a.metric == name)
    }

    /// Clamp a wished-for replica count to this service's `[min, max]`.
    pub fn clamp(&self, replicas: i64) -> u32 {
        let lo = i64::from(self.min_replicas);
        let hi = i64::from(self.max_replicas.max(self.min_replicas));
        // The clamped value lies within two u32s, so the conversion holds.
        u32::try_from(replicas.clamp(lo, hi)).unwrap_or(self.min_replicas)
    }

    /// Time since the daemon last raised the replicas; `None` if it never has.
    pub fn since_last_scale_up(&self) -> Option<Duration> {
        self.last_scale_up_ns.map(|then| Duration::from_nanos(self.now_ns.saturating_sub(then)))
    }

    /// Time since the daemon last lowered the replicas; `None` if it never has.
    pub fn since_last_scale_down(&self) -> Option<Duration> {
        self.last_scale_down_ns.map(|then| Duration::from_nanos(self.now_ns.saturating_sub(then)))
    }

    /// How much longer scale-in is held by an earlier `hold`; `None` if no
    /// hold is in force.
    pub fn hold_remaining(&self) -> Option<Duration> {
        self.hold_until_ns.filter(|until| *until > self.now_ns).map(|until| Duration::from_nanos(until - self.now_ns))
    }
}

/// A setting read as another type than it was declared with: a bug in the
/// policy. Loud in native debug builds (unit tests), `None` in the component.
fn mismatch<T>(name: &str, wanted: &str, found: &SettingValue) -> Option<T> {
    #[cfg(all(debug_assertions, not(target_family = "wasm")))]
    panic!("setting {name:?} is read as a {wanted} but holds {found:?}; read it as declared");
    #[cfg(not(all(debug_assertions, not(target_family = "wasm"))))]
    {
        let _ = (name, wanted, found);
        None
    }
}

impl Decision {
    /// Run `replicas` replicas, with a reason for the audit log.
    pub fn scale(replicas: u32, reason: impl Into<String>) -> Self {
        Decision { action: Action::Scale(replicas), reason: reason.into() }
    }

    /// Keep the current count and refuse any scale-in for `duration` (a
    /// stabilisation window; scale-out stays possible). Durations beyond
    /// `u64::MAX` nanoseconds (584 years) saturate.
    pub fn hold(duration: Duration, reason: impl Into<String>) -> Self {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Decision { action: Action::Hold(ns), reason: reason.into() }
    }

    /// The replica count asked for, if this is a scale decision.
    pub fn target(&self) -> Option<u32> {
        match self.action {
            Action::Scale(replicas) => Some(replicas),
            Action::Hold(_) => None,
        }
    }

    /// The hold asked for, if this is a hold decision.
    pub fn held_for(&self) -> Option<Duration> {
        match self.action {
            Action::Hold(ns) => Some(Duration::from_nanos(ns)),
            Action::Scale(_) => None,
        }
    }
}

impl Event {
    /// The crossing, if this event is one.
    pub fn crossing(&self) -> Option<&Crossing> {
        match &self.kind {
            EventKind::Crossing(c) => Some(c),
            EventKind::Sample => None,
        }
    }

    /// The metric's name as used in setting names: `cpu`, `memory`,
    /// `connections`, or the name of a newer metric.
    pub fn metric_name(&self) -> &str {
        &self.metric
    }

    /// The replica's id as text: the first 16 hex digits of its Docker
    /// container id (the first 12 are what `docker ps` shows).
    pub fn container_id(&self) -> String {
        format!("{:016x}", self.container)
    }
}

/// The contract's number for a container id: its first 16 hex digits, the
/// first highest; a shorter id (or one with a character that is not a hex
/// digit) is read up to there and padded with zeros, as the daemon reads
/// the ids it is given.
pub(crate) fn container_number(id: &str) -> u64 {
    let mut number = 0u64;
    let mut digits = 0;
    for digit in id.chars().take(16).map_while(|c| c.to_digit(16)) {
        number = number << 4 | u64::from(digit);
        digits += 1;
    }
    number.checked_shl(4 * (16 - digits)).unwrap_or(0)
}
