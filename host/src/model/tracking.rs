//! What the daemon asks a probe to watch: which containers, and the
//! thresholds whose crossings the probe pushes at once.
//!
//! The Swarm side derives these from a service's labels; the probes turn
//! them into kernel map entries (eBPF) or userspace checks (cgroupfs).
//! Neither side imports the other: both speak these types.

use std::time::Duration;

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
    /// How often and how much the container may push.
    pub bounds: EventBounds,
}

/// Bounds on what one container pushes, so that a service hovering at a
/// threshold cannot flood the daemon, nor one container fill the ring buffer
/// every container shares. The defaults suit any service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventBounds {
    /// Hysteresis of the connection thresholds, in connections: after an
    /// upward crossing of `connections.upper` the count must fall below
    /// `upper - hysteresis` to cross back down, and after a downward crossing
    /// of `connections.lower` reach `lower + hysteresis` to cross back up.
    /// `None` (default): a tenth of the threshold, at least 1.
    pub connection_hysteresis: Option<f64>,
    /// Least time between two crossings of one connection threshold of the
    /// container (default 100 ms); a crossing within it waits, at most until
    /// the first window close after the gap.
    pub connection_min_gap: Duration,
    /// Most crossing events the container pushes per CPU window (default
    /// 16; 0: no bound). A crossing over it waits for the next window.
    /// Samples do not count: the sample interval bounds them.
    pub events_per_window: u32,
}

impl Default for EventBounds {
    fn default() -> Self {
        EventBounds {
            connection_hysteresis: None,
            connection_min_gap: Duration::from_millis(100),
            events_per_window: 16,
        }
    }
}

impl EventBounds {
    /// The connection hysteresis to apply to `band`: the configured one, or
    /// a tenth of the larger threshold, at least 1 connection.
    pub fn connection_hysteresis_for(&self, band: &Band) -> f64 {
        self.connection_hysteresis.unwrap_or_else(|| {
            let reference = band.upper.or(band.lower).unwrap_or(0.0);
            (reference / 10.0).round().max(1.0)
        })
    }
}

/// A container the probe should account, with its thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// Full Docker container id (64 hex characters).
    pub container_id: String,
    /// When to push crossing events.
    pub thresholds: Thresholds,
}

impl std::fmt::Display for Band {
    /// `off`, `<= 0.2`, `>= 0.8`, or `0.2..0.8`, for log lines people read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.lower, self.upper) {
            (None, None) => f.write_str("off"),
            (Some(lower), None) => write!(f, "<= {lower}"),
            (None, Some(upper)) => write!(f, ">= {upper}"),
            (Some(lower), Some(upper)) => write!(f, "{lower}..{upper}"),
        }
    }
}
