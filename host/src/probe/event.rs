//! What a probe hands the daemon: [`ProbeEvent`], either a [`Reading`] of a
//! metric of the table (the only kind that reaches the service view and a
//! policy) or a [`Signal`] for the daemon itself (scale to zero's wake and
//! parked-port events, the busy signal of accepted connections, a
//! container's memory limit). A signal is never a measurement: it has no
//! metric name, so no code path can mistake it for one.

use crate::model::{EventKind, Metric, Unit};

/// One thing a probe pushed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEvent {
    /// A measurement of one container.
    Reading(Reading),
    /// A control signal, never handed to a policy.
    Signal(Signal),
}

/// One measurement of one tracked container, of a metric of the table
/// ([`crate::model::METRICS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Full Docker container id.
    pub container_id: String,
    /// What was measured.
    pub metric: Metric,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit of `value`.
    pub unit: Unit,
    /// Periodic sample or threshold crossing.
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds when it was measured.
    pub timestamp_ns: u64,
}

/// A control signal: something the daemon acts on itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// TCP connections the container accepted since its previous sample
    /// (eBPF probe only): scale to zero counts a replica that accepted one
    /// as busy, even if the connection closed before the sample.
    Accepted {
        /// Full Docker container id.
        container_id: String,
        /// Connections accepted.
        count: u64,
        /// CLOCK_MONOTONIC ns of the sample.
        timestamp_ns: u64,
    },
    /// The container's memory limit (with its samples, when it has one):
    /// the service view's `of-limit` of memory.
    MemoryLimit {
        /// Full Docker container id.
        container_id: String,
        /// The limit, bytes.
        bytes: u64,
        /// CLOCK_MONOTONIC ns of the sample.
        timestamp_ns: u64,
    },
    /// The first connection to a frozen container, pushed once per
    /// [`super::ProbeHandle::set_wake`] arming.
    Wake {
        /// Full Docker container id.
        container_id: String,
        /// CLOCK_MONOTONIC ns when the kernel established the connection.
        timestamp_ns: u64,
    },
    /// A connection attempt to a parked port was held
    /// ([`super::ProbeHandle::park`]); at most one per port per 100 ms.
    PortSyn {
        /// The port.
        port: u16,
        /// CLOCK_MONOTONIC ns of the attempt.
        timestamp_ns: u64,
    },
    /// A socket started listening on a parked port.
    PortListen {
        /// The port.
        port: u16,
        /// CLOCK_MONOTONIC ns of the listen.
        timestamp_ns: u64,
    },
}

impl Signal {
    /// Its name, for logs and the `autoscaler_events_total` series.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Accepted { .. } => "accepted-connections",
            Signal::MemoryLimit { .. } => "memory-limit",
            Signal::Wake { .. } => "wake",
            Signal::PortSyn { .. } => "port-syn",
            Signal::PortListen { .. } => "port-listen",
        }
    }

    /// The container it is about; parked-port signals name a port instead.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Signal::Accepted { container_id, .. }
            | Signal::MemoryLimit { container_id, .. }
            | Signal::Wake { container_id, .. } => Some(container_id),
            Signal::PortSyn { .. } | Signal::PortListen { .. } => None,
        }
    }

    /// CLOCK_MONOTONIC ns when the kernel saw it.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Signal::Accepted { timestamp_ns, .. }
            | Signal::MemoryLimit { timestamp_ns, .. }
            | Signal::Wake { timestamp_ns, .. }
            | Signal::PortSyn { timestamp_ns, .. }
            | Signal::PortListen { timestamp_ns, .. } => *timestamp_ns,
        }
    }
}

impl ProbeEvent {
    /// A name for counting it: the metric's row name (`other` for a name
    /// the table does not know, so a series never gets a label per name),
    /// or the signal's.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeEvent::Reading(r) => r.metric.def().map_or("other", |def| def.name),
            ProbeEvent::Signal(s) => s.name(),
        }
    }

    /// The container it is about, if any.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            ProbeEvent::Reading(r) => Some(&r.container_id),
            ProbeEvent::Signal(s) => s.container_id(),
        }
    }

    /// CLOCK_MONOTONIC ns when it was measured or seen.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            ProbeEvent::Reading(r) => r.timestamp_ns,
            ProbeEvent::Signal(s) => s.timestamp_ns(),
        }
    }
}

impl From<Reading> for ProbeEvent {
    fn from(reading: Reading) -> Self {
        ProbeEvent::Reading(reading)
    }
}

impl From<Signal> for ProbeEvent {
    fn from(signal: Signal) -> Self {
        ProbeEvent::Signal(signal)
    }
}
