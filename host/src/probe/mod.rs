//! Probes: per-container CPU, memory and connection accounting, pushed as
//! [`ProbeEvent`]s. Two implementations share this interface:
//! - `ebpf` (default): kernel programs push through a ring buffer;
//! - `cgroupfs`: reads cgroup files on an interval; the fallback for hosts
//!   without BPF rights and the pull-based baseline benchmarks compare with.
//!
//! Invariant: probes know containers and cgroups, not services or policies.
//! The event loop tells a probe which containers to track and with which
//! thresholds; the probe says nothing about anything else.

use std::time::Duration;

use crate::model::{EventKind, Metric, Unit};

/// Upper and lower threshold of one metric; `None` means not watched.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Band {
    /// Crossing upward pushes an event at once.
    pub upper: Option<f64>,
    /// Crossing downward pushes an event at once.
    pub lower: Option<f64>,
}

/// Per-container thresholds, in the units the probe reports: CPU as a
/// fraction of the container's limit (or cores without a limit), memory in
/// bytes, connections as a count of open connections.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    /// CPU band.
    pub cpu: Band,
    /// Memory band.
    pub memory: Band,
    /// Open connections band.
    pub connections: Band,
}

/// A container the probe should account, with its thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// Full Docker container id (64 hex characters).
    pub container_id: String,
    /// When to push crossing events.
    pub thresholds: Thresholds,
}

/// One measurement of one tracked container.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeEvent {
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

/// Which probe to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// eBPF programs pushing through a ring buffer.
    Ebpf,
    /// Reading cgroupfs every `interval`.
    Cgroupfs {
        /// Time between two reads of every tracked container.
        interval: Duration,
    },
}

/// Probe settings; defaults in [`Default`].
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Which probe.
    pub kind: ProbeKind,
    /// CPU utilisation window (default 100 ms).
    pub window: Duration,
    /// Least time between two periodic samples of one container (default 1 s).
    pub sample_interval: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            kind: ProbeKind::Ebpf,
            window: Duration::from_millis(100),
            sample_interval: Duration::from_millis(1000),
        }
    }
}
