//! What the daemon asks a probe to watch: which containers, and the
//! thresholds whose crossings the probe pushes at once.
//!
//! The Swarm side derives these from a service's labels; the probes turn
//! them into kernel map entries (eBPF) or userspace checks (cgroupfs).
//! Neither side imports the other: both speak these types.

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
