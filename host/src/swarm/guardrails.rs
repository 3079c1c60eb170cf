//! The guardrails every decision passes, whatever the policy returned: a
//! pure function of the decision, the service's limits, its replicas and
//! scale history, and the clock. No I/O, no clock of its own: [`judge`] is
//! tested with made-up times.
//!
//! - clamp to `[autoscale.min, autoscale.max]`, then limit the change to
//!   `autoscale.step.max` replicas;
//! - refuse a decision whose triggering event is older than
//!   `--max-decision-age`, or that was made on a replica count that is no
//!   longer current (an operator scaled by hand);
//! - cooldowns: a scale-up waits `cooldown.up` and a scale-down waits
//!   `cooldown.down` after the last scale action of either kind;
//! - a scale-up rate in the Kubernetes HPA's style (`autoscale.rate.up`,
//!   [`UpRate`]): at most so many replicas more than the service had at the
//!   start of the last `rate.period`, counting the scale-ups within it;
//! - scale-down stabilisation, the HPA's too (`autoscale.stabilization.down`):
//!   a scale-down goes no lower than the highest count the policy asked for
//!   within the window. What the policy "asked for" is every scale decision's
//!   target (clamped to the bounds) and, for every call it answered with no
//!   decision, the count it then saw ([`History::asked`]): the HPA's
//!   recommendation at each sync. Push policies answer on every reading, so
//!   the window sees a steady high load as a steady high recommendation;
//! - a `hold` decision refuses scale-in until it runs out.
//!
//! Cooldowns and holds are measured between decisions: from the time the
//! policy answered that led to the last scale (or hold) to the time the
//! policy answered now ([`Request::decided_ns`]), not from when Docker
//! took the update to when the actuator got round to the next one. The
//! outcome is then a function of what the policy was asked and answered,
//! so `host replay` over a recorded trace, calling this same function,
//! reaches the verdicts the live actuator reached; the few milliseconds a
//! write takes no longer decide whether a cooldown ran out. Only the
//! staleness bound uses the actuator's own clock.

use std::collections::VecDeque;
use std::time::Duration;

use super::labels::{ServiceConfig, UpRate};
use crate::model::{Decision, Event};
use crate::units::human_duration;

/// Daemon-wide actuator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ActuatorOptions {
    /// Judge and audit, never write.
    pub dry_run: bool,
    /// Decisions whose triggering event is older than this are dropped.
    pub max_decision_age: Duration,
    /// Cooldown after a scale action before a scale-up, unless the service
    /// sets `autoscale.cooldown.up`.
    pub cooldown_up: Duration,
    /// Cooldown after a scale action before a scale-down, unless the
    /// service sets `autoscale.cooldown.down`.
    pub cooldown_down: Duration,
    /// Scale-up rate limit, unless the service sets `autoscale.rate.up`;
    /// `None`: no limit.
    pub rate_up: Option<UpRate>,
    /// Scale-down stabilisation window, unless the service sets
    /// `autoscale.stabilization.down`; zero: none.
    pub stabilization_down: Duration,
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            dry_run: false,
            max_decision_age: Duration::from_secs(10),
            cooldown_up: Duration::from_secs(10),
            cooldown_down: Duration::from_secs(60),
            rate_up: None,
            stabilization_down: Duration::ZERO,
        }
    }
}

/// The guardrails of one service, defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Least time from the last scale action to a scale-up.
    pub cooldown_up: Duration,
    /// Least time from the last scale action to a scale-down.
    pub cooldown_down: Duration,
    /// Most replicas added or removed at once.
    pub step_max: Option<u32>,
    /// The scale-up rate limit; `None`: no limit.
    pub rate_up: Option<UpRate>,
    /// The scale-down stabilisation window; zero: none.
    pub stabilization_down: Duration,
}

impl Limits {
    /// A service's limits, with the daemon's default cooldowns where the
    /// service sets none.
    pub fn new(config: &ServiceConfig, options: &ActuatorOptions) -> Limits {
        Limits {
            // The spec never goes below one replica: a service at zero
            // (`autoscale.min=0`) keeps one, frozen (daemon/zero.rs).
            min: config.min.max(1),
            max: config.max,
            cooldown_up: config.cooldown_up.unwrap_or(options.cooldown_up),
            cooldown_down: config.cooldown_down.unwrap_or(options.cooldown_down),
            step_max: config.step_max,
            rate_up: config
                .rate_up
                .or(options.rate_up.map(|rate| UpRate { period: config.rate_period.unwrap_or(rate.period), ..rate }))
                .filter(|rate| !rate.is_unlimited()),
            stabilization_down: config.stabilization_down.unwrap_or(options.stabilization_down),
        }
    }
}

/// How far back a [`History`] keeps scale-ups and what was asked for: the
/// longest rate period or stabilisation window it can serve.
pub const HISTORY_HORIZON: Duration = Duration::from_secs(3600);

/// A service's scale history, CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// The last scale-up.
    pub last_up_ns: Option<u64>,
    /// The last scale-down.
    pub last_down_ns: Option<u64>,
    /// Scale-in is refused until then (a policy's `hold`).
    pub hold_until_ns: Option<u64>,
    /// Scale-ups within [`HISTORY_HORIZON`], (ns, replicas added), oldest
    /// first: the rate limit counts them.
    pub ups: VecDeque<(u64, u32)>,
    /// What the policy asked for within [`HISTORY_HORIZON`], (ns, replicas),
    /// oldest first, each entry higher than every later one (an entry
    /// followed by a higher or equal one can never be the highest of a
    /// window again): the highest since a time is the first entry at or
    /// after it. At most one entry per distinct count.
    pub asked: VecDeque<(u64, u32)>,
}

impl History {
    /// The last scale action of either kind.
    pub fn last_scale_ns(&self) -> Option<u64> {
        self.last_up_ns.max(self.last_down_ns)
    }

    /// Record a scale from `from` to `to` at `now_ns`.
    pub fn record(&mut self, from: u32, to: u32, now_ns: u64) {
        if to > from {
            self.last_up_ns = Some(now_ns);
            self.ups.push_back((now_ns, to - from));
            let horizon = now_ns.saturating_sub(nanos(HISTORY_HORIZON));
            while self.ups.front().is_some_and(|(at, _)| *at < horizon) || self.ups.len() > 64 {
                self.ups.pop_front();
            }
        } else if to < from {
            self.last_down_ns = Some(now_ns);
        }
    }

    /// Record that the policy asked for `replicas` at `at_ns` (a scale
    /// decision's target within the bounds, or the count it kept by
    /// answering nothing).
    pub fn asked(&mut self, at_ns: u64, replicas: u32) {
        while self.asked.back().is_some_and(|(_, n)| *n <= replicas) {
            self.asked.pop_back();
        }
        self.asked.push_back((at_ns, replicas));
        let horizon = at_ns.saturating_sub(nanos(HISTORY_HORIZON));
        while self.asked.len() > 1 && self.asked.front().is_some_and(|(at, _)| *at < horizon) {
            self.asked.pop_front();
        }
    }

    /// The highest count asked for at or after `since_ns`.
    pub fn highest_asked_since(&self, since_ns: u64) -> Option<u32> {
        self.asked.iter().find(|(at, _)| *at >= since_ns).map(|(_, n)| *n)
    }

    /// Replicas added by scale-ups after `since_ns`, and when the first of
    /// those was.
    pub fn added_since(&self, since_ns: u64) -> (u32, Option<u64>) {
        let within = self.ups.iter().filter(|(at, _)| *at > since_ns);
        let first = within.clone().next().map(|(at, _)| *at);
        (within.map(|(_, n)| *n).fold(0, u32::saturating_add), first)
    }
}

/// What the guardrails judge: one decision of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The policy that decided.
    pub policy: String,
    /// The event the policy decided on; it names the service.
    pub event: Event,
    /// What it decided.
    pub decision: Decision,
    /// The replicas the policy saw (`State::current_replicas`).
    pub seen: u32,
    /// CLOCK_MONOTONIC ns when the policy answered.
    pub decided_ns: u64,
}

impl Request {
    /// The Swarm service id.
    pub fn service_id(&self) -> &str {
        &self.event.service_id
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        &self.event.service_name
    }
}

/// Something a guardrail changed in a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// Above `autoscale.max`.
    ClampedToMax {
        /// What was asked.
        asked: u32,
        /// The bound.
        max: u32,
    },
    /// Below `autoscale.min`.
    ClampedToMin {
        /// What was asked.
        asked: u32,
        /// The bound.
        min: u32,
    },
    /// More than `autoscale.step.max` away from the current replicas.
    StepLimited {
        /// The target before the limit.
        asked: u32,
        /// The target after it.
        allowed: u32,
        /// The limit.
        step_max: u32,
    },
    /// More than `autoscale.rate.up` allows within its period.
    RateLimited {
        /// The target before the limit.
        asked: u32,
        /// The target after it.
        allowed: u32,
        /// The limit.
        rate: UpRate,
    },
    /// Below the highest count asked for within `autoscale.stabilization.down`.
    Stabilized {
        /// The target before the window.
        asked: u32,
        /// The target after it.
        allowed: u32,
        /// The window.
        window: Duration,
    },
}

impl std::fmt::Display for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Adjustment::ClampedToMax { asked, max } => write!(f, "clamped to max {max} (asked {asked})"),
            Adjustment::ClampedToMin { asked, min } => write!(f, "clamped to min {min} (asked {asked})"),
            Adjustment::StepLimited { asked, allowed, step_max } => {
                write!(f, "step limit {step_max}: {asked} -> {allowed}")
            }
            Adjustment::RateLimited { asked, allowed, rate } => write!(f, "rate.up {rate}: {asked} -> {allowed}"),
            Adjustment::Stabilized { asked, allowed, window } => {
                write!(f, "stabilization.down {}: {asked} -> {allowed}", human_duration(*window))
            }
        }
    }
}

/// A direction of scaling, for cooldowns and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// More replicas.
    Up,
    /// Fewer replicas.
    Down,
}

impl std::fmt::Display for Way {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Way::Up => "up",
            Way::Down => "down",
        })
    }
}

/// Why a decision is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The triggering event is older than the bound.
    Stale {
        /// Its age.
        age: Duration,
        /// The bound.
        bound: Duration,
    },
    /// The replicas changed since the policy looked (an operator, or our
    /// own previous update): the decision is stale.
    ReplicasChanged {
        /// What the policy saw.
        seen: u32,
        /// What the spec says now.
        now: u32,
    },
    /// After the guardrails the target is the current replica count.
    Unchanged {
        /// The current replicas.
        current: u32,
    },
    /// Too soon after the last scale action.
    Cooldown {
        /// Which cooldown.
        way: Way,
        /// Time still to wait.
        remaining: Duration,
    },
    /// The scale-up rate limit allows no more replicas yet.
    RateLimited {
        /// Time until the first scale-up of the period leaves it.
        remaining: Duration,
    },
    /// A count at least the current one was asked for within the
    /// stabilisation window.
    Stabilizing {
        /// The highest count asked for within it.
        highest: u32,
        /// The window.
        window: Duration,
    },
    /// Scale-in is held by an earlier `hold` decision.
    Held {
        /// Time the hold still runs.
        remaining: Duration,
    },
    /// A newer decision arrived before this one was handled.
    Superseded,
    /// The service is gone, or is no longer a replicated service.
    ServiceGone,
    /// The daemon stopped before the decision was handled.
    ShuttingDown,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Stale { age, bound } => {
                write!(f, "stale: the event is {} old (bound {})", human_duration(*age), human_duration(*bound))
            }
            Skip::ReplicasChanged { seen, now } => {
                write!(f, "replicas changed since the policy decided ({seen} -> {now}); the newer value stands")
            }
            Skip::Unchanged { current } => write!(f, "already at {current} replicas"),
            Skip::Cooldown { way, remaining } => write!(f, "cooldown.{way}: {} to go", human_duration(*remaining)),
            Skip::RateLimited { remaining } => {
                write!(f, "rate.up: no more replicas for {}", human_duration(*remaining))
            }
            Skip::Stabilizing { highest, window } => {
                write!(f, "stabilization.down: {highest} replicas asked for within {}", human_duration(*window))
            }
            Skip::Held { remaining } => {
                write!(f, "scale-in held by the policy for {} more", human_duration(*remaining))
            }
            Skip::Superseded => write!(f, "superseded by a newer decision"),
            Skip::ServiceGone => write!(f, "the service is gone or no longer replicated"),
            Skip::ShuttingDown => write!(f, "the daemon stopped before it was applied"),
        }
    }
}

impl Skip {
    /// The kind of skip, without its figures: the audit writes one record
    /// per run of skips of the same kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::Stale { .. } => "stale",
            Skip::ReplicasChanged { .. } => "replicas-changed",
            Skip::Unchanged { .. } => "unchanged",
            Skip::Cooldown { way: Way::Up, .. } => "cooldown-up",
            Skip::Cooldown { .. } => "cooldown-down",
            Skip::RateLimited { .. } => "rate-up",
            Skip::Stabilizing { .. } => "stabilizing",
            Skip::Held { .. } => "held",
            Skip::Superseded => "superseded",
            Skip::ServiceGone => "service-gone",
            Skip::ShuttingDown => "shutting-down",
        }
    }

    /// Skips that every busy service produces all the time (a cooldown
    /// running, a target already reached, a newer decision): the text log
    /// shows them at debug level only.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Skip::Cooldown { .. }
                | Skip::RateLimited { .. }
                | Skip::Stabilizing { .. }
                | Skip::Unchanged { .. }
                | Skip::Superseded
                | Skip::ReplicasChanged { .. }
                | Skip::Held { .. }
        )
    }
}

/// The guardrails' verdict on one scale decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The target after clamping and the step limit.
    pub target: u32,
    /// What the guardrails changed.
    pub adjustments: Vec<Adjustment>,
    /// `None`: apply `target`. `Some`: do not, and why.
    pub skip: Option<Skip>,
}

/// Judge a decision to scale to `asked` against the current replicas, the
/// service's history and the clock `now_ns` (staleness only: cooldowns,
/// rates, windows and holds count to `request.decided_ns`). Pure: no I/O,
/// no clock. The caller records `asked` in the history
/// ([`History::asked`]) after judging.
pub fn judge(
    request: &Request,
    asked: u32,
    limits: &Limits,
    current: u32,
    history: &History,
    now_ns: u64,
    max_age: Duration,
) -> Judgement {
    let mut adjustments = Vec::new();
    let mut target = asked;
    if target > limits.max {
        adjustments.push(Adjustment::ClampedToMax { asked, max: limits.max });
        target = limits.max;
    }
    if target < limits.min {
        adjustments.push(Adjustment::ClampedToMin { asked, min: limits.min });
        target = limits.min;
    }
    if let Some(step_max) = limits.step_max {
        let allowed = if target > current {
            target.min(current.saturating_add(step_max))
        } else {
            target.max(current.saturating_sub(step_max))
        };
        if allowed != target {
            adjustments.push(Adjustment::StepLimited { asked: target, allowed, step_max });
            target = allowed;
        }
    }
    let at = request.decided_ns;
    // Why a rate or a window brought the target back to the current count.
    let mut limited = None;
    if let Some(rate) = limits.rate_up.filter(|_| target > current) {
        let (added, first) = history.added_since(at.saturating_sub(nanos(rate.period)));
        let allowed = rate.allowed(current.saturating_sub(added)).max(current);
        if allowed < target {
            adjustments.push(Adjustment::RateLimited { asked: target, allowed, rate });
            target = allowed;
            let leaves = first.map_or(0, |t| t.saturating_add(nanos(rate.period)));
            limited = Some(Skip::RateLimited { remaining: Duration::from_nanos(leaves.saturating_sub(at)) });
        }
    }
    let window = limits.stabilization_down;
    if target < current && !window.is_zero() {
        let highest = history.highest_asked_since(at.saturating_sub(nanos(window)));
        if let Some(highest) = highest.filter(|h| *h > target) {
            let allowed = highest.min(current);
            adjustments.push(Adjustment::Stabilized { asked: target, allowed, window });
            target = allowed;
            limited = Some(Skip::Stabilizing { highest, window });
        }
    }
    let age = Duration::from_nanos(now_ns.saturating_sub(request.event.timestamp_ns));
    let since = |t: u64| Duration::from_nanos(at.saturating_sub(t));
    let skip = if age > max_age {
        Some(Skip::Stale { age, bound: max_age })
    } else if current != request.seen {
        Some(Skip::ReplicasChanged { seen: request.seen, now: current })
    } else if target == current {
        Some(limited.unwrap_or(Skip::Unchanged { current }))
    } else {
        let (way, cooldown) =
            if target > current { (Way::Up, limits.cooldown_up) } else { (Way::Down, limits.cooldown_down) };
        match (history.last_scale_ns().map(since), history.hold_until_ns) {
            (Some(since), _) if since < cooldown => Some(Skip::Cooldown { way, remaining: cooldown - since }),
            (_, Some(until)) if way == Way::Down && until > at => {
                Some(Skip::Held { remaining: Duration::from_nanos(until - at) })
            }
            _ => None,
        }
    };
    Judgement { target, adjustments, skip }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
