//! When a policy's failures quarantine it: too many failed calls in a row,
//! or too many of its recent calls failed (a policy that fails 4 calls in 5
//! never fails 5 in a row, yet is instantiated afresh after every failure
//! and decides almost nothing).

/// Calls the failure rate is judged over.
pub const WINDOW: u32 = 20;

/// Failed calls among the last [`WINDOW`] that quarantine a policy (3 in 4).
pub const WINDOW_FAILURES: u32 = 15;

/// A policy's recent calls: each call's outcome, newest in the lowest bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    /// Bit `i` set: the call `i` calls ago failed.
    failed: u32,
    /// Calls recorded, up to [`WINDOW`].
    calls: u32,
    /// Failed calls in a row, ending with the newest.
    in_a_row: u32,
}

/// Why a policy was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// This many failed calls in a row.
    InARow(u32),
    /// `failed` of its last `of` calls failed.
    Rate { failed: u32, of: u32 },
}

impl std::fmt::Display for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quarantine::InARow(n) => write!(f, "{n} failed calls in a row"),
            Quarantine::Rate { failed, of } => write!(f, "{failed} of its last {of} calls failed"),
        }
    }
}

impl Recent {
    /// Record one call's outcome.
    pub fn record(&mut self, failed: bool) {
        let mask = (1u32 << WINDOW) - 1;
        self.failed = ((self.failed << 1) | u32::from(failed)) & mask;
        self.calls = (self.calls + 1).min(WINDOW);
        self.in_a_row = if failed { self.in_a_row.saturating_add(1) } else { 0 };
    }

    /// Failed calls in a row, ending with the newest.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }

    /// Failed calls among the last [`WINDOW`] (or fewer, at first).
    pub fn failed(&self) -> u32 {
        self.failed.count_ones()
    }

    /// Whether these calls quarantine the policy: `max_in_a_row` failures
    /// in a row, or [`WINDOW_FAILURES`] of the last [`WINDOW`] calls (judged
    /// once that many calls were made).
    pub fn verdict(&self, max_in_a_row: u32) -> Option<Quarantine> {
        if self.in_a_row >= max_in_a_row.max(1) {
            Some(Quarantine::InARow(self.in_a_row))
        } else if self.calls >= WINDOW && self.failed() >= WINDOW_FAILURES {
            Some(Quarantine::Rate { failed: self.failed(), of: WINDOW })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pattern: impl IntoIterator<Item = bool>, max_in_a_row: u32) -> Option<(usize, Quarantine)> {
        let mut recent = Recent::default();
        for (i, failed) in pattern.into_iter().enumerate() {
            recent.record(failed);
            if let Some(q) = recent.verdict(max_in_a_row) {
                return Some((i + 1, q));
            }
        }
        None
    }

    /// Fail, fail, fail, fail, succeed: forever.
    fn four_in_five(calls: usize) -> impl Iterator<Item = bool> {
        (0..calls).map(|i| i % 5 != 4)
    }

    #[test]
    fn failing_four_calls_in_five_is_quarantined_within_the_window() {
        let (after, why) = run(four_in_five(1000), 5).expect("quarantined");
        assert_eq!(after, WINDOW as usize, "judged as soon as the window is full");
        assert_eq!(why, Quarantine::Rate { failed: 16, of: WINDOW });
        assert_eq!(why.to_string(), "16 of its last 20 calls failed");
    }

    #[test]
    fn failures_in_a_row_still_quarantine_at_once() {
        let (after, why) = run([false, false, true, true, true, true, true], 5).expect("quarantined");
        assert_eq!((after, why), (7, Quarantine::InARow(5)));
        assert_eq!(why.to_string(), "5 failed calls in a row");
    }

    #[test]
    fn a_policy_that_fails_now_and_then_keeps_running() {
        // Half its calls fail: under the rate, never 5 in a row.
        assert_eq!(run((0..10_000).map(|i| i % 2 == 0), 5), None);
        // 14 of every 20, in runs of 4.
        let pattern = (0..10_000).map(|i| {
            let k = i % 20;
            k < 14 && k % 5 != 4
        });
        assert_eq!(run(pattern, 5), None);
        // Early calls: 4 failures in the first 5 are judged only later.
        assert_eq!(run(four_in_five(19), 5), None);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut recent = Recent::default();
        for _ in 0..14 {
            recent.record(true);
            recent.record(false);
        }
        assert_eq!(recent.failed(), 10);
        for _ in 0..WINDOW {
            recent.record(false);
        }
        assert_eq!(recent.failed(), 0);
        assert_eq!(recent.verdict(5), None);
    }
}
