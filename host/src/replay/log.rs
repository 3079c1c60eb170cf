//! A policy's log lines during a replay, rate-limited against the trace's
//! time, not the wall clock: a replay runs an hour of calls in a fraction of
//! a second, and the daemon's budget (lines and bytes per second, per
//! policy, [`crate::policy::LogRate`]) counted on the wall clock would drop
//! nearly every line. Here it counts as the live daemon would have: the
//! same rate, refilled by the time between the recorded calls. What is
//! dropped is counted and said.

use crate::policy::LogRate;

/// One policy's token bucket on trace time.
#[derive(Debug, Clone)]
pub struct TraceLog {
    rate: LogRate,
    lines: f64,
    bytes: f64,
    /// Trace time of the last refill, ns.
    at_ns: Option<u64>,
    /// Lines admitted, with the trace time (ns since the trace start) they
    /// were logged at.
    pub kept: Vec<(u64, String)>,
    /// Lines over the budget.
    pub dropped: u64,
}

impl TraceLog {
    /// A full bucket of `rate`.
    pub fn new(rate: LogRate) -> TraceLog {
        TraceLog {
            rate,
            lines: f64::from(rate.lines_per_sec),
            bytes: f64::from(rate.bytes_per_sec),
            at_ns: None,
            kept: Vec::new(),
            dropped: 0,
        }
    }

    /// Count `line`, logged at trace time `t_ns`: kept if the budget allows.
    pub fn push(&mut self, t_ns: u64, line: String) {
        let elapsed = self.at_ns.map_or(0.0, |at| t_ns.saturating_sub(at) as f64 / 1e9);
        self.at_ns = Some(t_ns.max(self.at_ns.unwrap_or(0)));
        let (lines, bytes) = (f64::from(self.rate.lines_per_sec), f64::from(self.rate.bytes_per_sec));
        self.lines = (self.lines + elapsed * lines).min(lines);
        self.bytes = (self.bytes + elapsed * bytes).min(bytes);
        let cost = line.len() as f64;
        if self.lines >= 1.0 && self.bytes >= cost {
            self.lines -= 1.0;
            self.bytes -= cost;
            self.kept.push((t_ns, line));
        } else {
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_with_trace_time() {
        let mut log = TraceLog::new(LogRate { lines_per_sec: 2, bytes_per_sec: 1000 });
        for _ in 0..3 {
            log.push(0, "x".into());
        }
        assert_eq!((log.kept.len(), log.dropped), (2, 1), "two lines a second");
        log.push(500_000_000, "half a second refills one".into());
        log.push(500_000_000, "but not two".into());
        assert_eq!((log.kept.len(), log.dropped), (3, 2));
        for s in 10..20 {
            log.push(s * 1_000_000_000, "one a second is always kept".into());
        }
        assert_eq!((log.kept.len(), log.dropped), (13, 2));
        let long = "y".repeat(1001);
        log.push(60_000_000_000, long);
        assert_eq!(log.dropped, 3, "over the byte budget");
    }
}
