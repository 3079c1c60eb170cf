//! The trace format shared by `host --record` and `host replay`, and the
//! [`Recorder`] the daemon appends to.
//!
//! A trace is a text file of JSON lines, appended to and never rewritten.
//! Version 3 is positional, so that an hour of a busy service stays a few
//! MB and reads back in well under a second:
//!
//! - `{"header": {...}}` each time a daemon starts recording: format
//!   version, contract version, the daemon's default cooldowns and decision
//!   age, the wall clock and the monotonic clock at that moment (the base of
//!   the time deltas that follow);
//! - `{"service": [N, ID, NAME, POLICY, LABELS]}` before the first record of
//!   a service and again whenever its policy or its `autoscale.*` labels
//!   (without the prefix) change: a replay parses them for its own policy,
//!   as the daemon parses them into `state.settings`;
//! - `{"container": [N, ID]}` before the first record of a container;
//! - one array per call the daemon made: `[SERVICE, CONTAINER, DT, TOOK,
//!   AGE, METRIC, VALUE, UNIT, CROSSING, REPLICAS, MIN, MAX, UP, DOWN, HOLD,
//!   AGGREGATES, DECISION]`: DT is `now-ns` minus the previous record's (or
//!   the header's clock), TOOK the time from `now-ns` to the answer
//!   (`decided-ns`, the clock the actuator's cooldowns use), AGE `now-ns`
//!   minus the event's timestamp; UP, DOWN and HOLD are relative to
//!   `now-ns` (null when absent); CROSSING is `[threshold, "u"|"d"]` or null
//!   for a periodic sample; an aggregate is `[METRIC, UNIT, REPORTING,
//!   WARMING, [MEAN, MIN, MAX, SUM], OF-LIMIT, WINDOW-NS]`; DECISION is what
//!   the live policy answered (null for none or a failure). A metric is its
//!   name in the daemon's metric table (`"cpu"`), as the contract passes it;
//!   a unit is a one-letter code for the contract's cases (`f`raction of
//!   limit, `c`ores, `b`ytes, cou`n`t, `r`ate per second, `s`econds) or
//!   `{"o": NAME}`.
//!
//! Version 2 (contract 0.x) wrote metrics as one-letter codes; its traces
//! are refused with a message (record them again, or convert them: the
//! shipped ones in `examples/traces/` were converted).
//!
//! Only what the daemon actually passed to a policy is recorded: the
//! recorder runs when the answer comes back ([`crate::daemon`]), so an
//! event replaced in the decider's queue by a newer one of the same service
//! (coalescing) is not in the trace, as it was never decided on. Floats are
//! written in the shortest form that reads back to the same `f64`, so a
//! replay sees bit for bit what the live policy saw.
//!
//! A torn last line (a daemon killed mid-write) is reported and skipped by
//! the reader. Invariant: recording never fails the event loop. Write
//! errors are counted and logged (the first, then one line when recording
//! stops after [`MAX_WRITE_ERRORS`] in a row).

mod lines;
mod read;
mod recorder;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::model::{Decision, Event, State};
use crate::swarm::ActuatorOptions;
use crate::swarm::labels::UpRate;
pub use read::read;
pub use recorder::Recorder;

/// The value of `format` in every header.
pub const FORMAT: &str = "autoscaler-trace";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 3;
/// Write errors in a row after which a [`Recorder`] stops.
pub const MAX_WRITE_ERRORS: u32 = 5;
/// How long records may sit in the write buffer (monotonic ns).
const FLUSH_EVERY_NS: u64 = 1_000_000_000;

/// What a daemon says about itself when it starts recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version, [`VERSION`] when written by this build.
    pub version: u32,
    /// The contract version of the daemon that recorded it (`1.0.0`).
    /// Informational: a trace holds the daemon's own event and state, from
    /// which the contract's arguments are made.
    pub contract: String,
    /// Wall clock when recording started, ns since the Unix epoch.
    pub started_unix_ns: u64,
    /// CLOCK_MONOTONIC ns at the same moment: the clock of every timestamp.
    pub started_monotonic_ns: u64,
    /// The daemon's `--cooldown-up`, ns (services without `autoscale.cooldown.up`).
    pub cooldown_up_ns: u64,
    /// The daemon's `--cooldown-down`, ns.
    pub cooldown_down_ns: u64,
    /// The daemon's `--max-decision-age`, ns.
    pub max_decision_age_ns: u64,
    /// The daemon's `--rate-up` and `--rate-period` (`100%,4 per 15s`);
    /// absent: none (and in traces of daemons before the rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_up: Option<(String, u64)>,
    /// The daemon's `--stabilization-down`, ns (0: none).
    #[serde(default)]
    pub stabilization_down_ns: u64,
}

impl Header {
    /// A header for a daemon running with `options`, its clock at `monotonic_ns`.
    pub fn new(options: &ActuatorOptions, monotonic_ns: u64) -> Header {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            contract: crate::policy::CONTRACT_VERSION.to_string(),
            started_unix_ns: u64::try_from(crate::model::unix_ns()).unwrap_or(0),
            started_monotonic_ns: monotonic_ns,
            cooldown_up_ns: ns(options.cooldown_up),
            cooldown_down_ns: ns(options.cooldown_down),
            max_decision_age_ns: ns(options.max_decision_age),
            rate_up: options.rate_up.map(|rate| (rate.value(), ns(rate.period))),
            stabilization_down_ns: ns(options.stabilization_down),
        }
    }

    /// The actuator options the recording daemon ran with (not dry-run).
    pub fn actuator_options(&self) -> ActuatorOptions {
        let d = std::time::Duration::from_nanos;
        ActuatorOptions {
            dry_run: false,
            max_decision_age: d(self.max_decision_age_ns),
            cooldown_up: d(self.cooldown_up_ns),
            cooldown_down: d(self.cooldown_down_ns),
            rate_up: self.rate_up.as_ref().and_then(|(value, period)| UpRate::parse(value, d(*period)).ok()),
            stabilization_down: d(self.stabilization_down_ns),
        }
    }
}

/// One call the daemon made, as the policy saw it, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The policy the service was bound to (`autoscale.policy`).
    pub policy: String,
    /// The service's `autoscale.*` labels without the prefix, sorted by
    /// name: what its settings were parsed from.
    pub labels: Labels,
    /// The event passed to `decide`.
    pub event: Event,
    /// The state passed to `decide`, with the service's id and name but no
    /// settings: a replay parses `labels` for its own policy.
    pub state: State,
    /// CLOCK_MONOTONIC ns when the policy answered: the time the actuator
    /// judges the decision at (cooldowns, holds).
    pub decided_ns: u64,
    /// What the live policy answered; `None` for no decision or a failure.
    pub decision: Option<Decision>,
}
/// `autoscale.*` labels without the prefix, sorted by name.
pub type Labels = Vec<(String, String)>;
/// A trace read whole: the first header and every record, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The first header of the file (a daemon that restarted adds more; they
    /// differ only in their clocks and options, and the first one is used).
    pub header: Header,
    /// Every record, in the order they were written.
    pub records: Vec<Record>,
    /// Lines that did not parse and were skipped: at most one, the last, in
    /// a trace whose daemon was killed while writing.
    pub torn_lines: usize,
}
