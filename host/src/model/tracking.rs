//! What the daemon asks a probe to watch: which containers, and the
//! thresholds whose crossings the probe pushes at once.
//!
//! The Swarm side derives these from a service's labels; the probes turn
//! them into kernel map entries (eBPF) or userspace checks (cgroupfs).
//! Neither side imports the other: both speak these types.

use std::time::Duration;

use super::metrics::{MAX_METRICS, METRICS, Metric, MetricDef};

/// Upper and lower threshold of one metric; `None` means not watched.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Band {
    /// Crossing upward pushes an event at once.
    pub upper: Option<f64>,
    /// Crossing downward pushes an event at once.
    pub lower: Option<f64>,
}

/// Per-container thresholds, one [`Band`] per metric of the table
/// ([`METRICS`]), in the units the probe reports: CPU as a fraction of the
/// container's limit (or cores without a limit), memory in bytes,
/// connections as a count of open connections.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Thresholds {
    /// Index: [`MetricDef::index`] (the kernel id). Unused entries stay off.
    bands: [Band; MAX_METRICS],
    /// How often and how much the container may push.
    pub bounds: EventBounds,
}

impl Thresholds {
    /// The band of `metric`; off for a metric the table does not know.
    pub fn band(&self, metric: &Metric) -> Band {
        metric.def().map_or_else(Band::default, |def| self.band_of(def))
    }

    /// The band of a row of the table.
    pub fn band_of(&self, def: &MetricDef) -> Band {
        self.bands.get(def.index()).copied().unwrap_or_default()
    }

    /// Set the band of `metric`; false (and nothing set) for a metric the
    /// table does not know.
    pub fn set(&mut self, metric: &Metric, band: Band) -> bool {
        match metric.def().and_then(|def| self.bands.get_mut(def.index())) {
            Some(slot) => {
                *slot = band;
                true
            }
            None => false,
        }
    }

    /// The same with `metric`'s band set (tests, builders).
    pub fn with(mut self, metric: &Metric, band: Band) -> Thresholds {
        self.set(metric, band);
        self
    }

    /// The same with other event bounds (tests, builders).
    pub fn with_bounds(mut self, bounds: EventBounds) -> Thresholds {
        self.bounds = bounds;
        self
    }

    /// Every metric of the table with its band, set or not, in table order.
    pub fn bands(&self) -> impl Iterator<Item = (&'static MetricDef, Band)> + '_ {
        METRICS.iter().map(|def| (def, self.band_of(def)))
    }

    /// Whether no band is set.
    pub fn is_off(&self) -> bool {
        self.bands.iter().all(|b| b.upper.is_none() && b.lower.is_none())
    }
}

impl std::fmt::Display for Thresholds {
    /// `cpu 0.2..0.8, connections >= 100`: the watched metrics only (the
    /// table has many), or `no thresholds`, for log lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut watched = self.bands().filter(|(_, band)| band.upper.is_some() || band.lower.is_some()).peekable();
        if watched.peek().is_none() {
            return f.write_str("no thresholds");
        }
        for (i, (def, band)) in watched.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {band}", def.name)?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_kept_per_table_metric_and_unknown_names_are_refused() {
        let mut t = Thresholds::default();
        assert!(t.is_off());
        for def in METRICS {
            assert!(t.set(&def.metric(), Band { upper: Some(f64::from(def.kernel_id) + 1.0), lower: None }));
        }
        for def in METRICS {
            assert_eq!(t.band(&def.metric()).upper, Some(f64::from(def.kernel_id) + 1.0));
        }
        assert!(!t.set(&Metric::named("gpu"), Band { upper: Some(1.0), lower: None }));
        assert_eq!(t.band(&Metric::named("gpu")), Band::default());
        let t = Thresholds::default().with(&Metric::CPU, Band { upper: Some(0.8), lower: Some(0.2) });
        assert_eq!(t.to_string(), "cpu 0.2..0.8");
        assert_eq!(Thresholds::default().to_string(), "no thresholds");
    }
}
