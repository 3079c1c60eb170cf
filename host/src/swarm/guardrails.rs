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

use std::time::Duration;

use super::labels::ServiceConfig;
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
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            dry_run: false,
            max_decision_age: Duration::from_secs(10),
            cooldown_up: Duration::from_secs(10),
            cooldown_down: Duration::from_secs(60),
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
        }
    }
}

/// A service's scale history, CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// The last scale-up.
    pub last_up_ns: Option<u64>,
    /// The last scale-down.
    pub last_down_ns: Option<u64>,
    /// Scale-in is refused until then (a policy's `hold`).
    pub hold_until_ns: Option<u64>,
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
        } else if to < from {
            self.last_down_ns = Some(now_ns);
        }
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
}

impl std::fmt::Display for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Adjustment::ClampedToMax { asked, max } => write!(f, "clamped to max {max} (asked {asked})"),
            Adjustment::ClampedToMin { asked, min } => write!(f, "clamped to min {min} (asked {asked})"),
            Adjustment::StepLimited { asked, allowed, step_max } => {
                write!(f, "step limit {step_max}: {asked} -> {allowed}")
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
/// service's history and the clock `now_ns` (staleness only: cooldowns and
/// holds count to `request.decided_ns`). Pure: no I/O, no clock.
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
    let age = Duration::from_nanos(now_ns.saturating_sub(request.event.timestamp_ns));
    let at = request.decided_ns;
    let since = |t: u64| Duration::from_nanos(at.saturating_sub(t));
    let skip = if age > max_age {
        Some(Skip::Stale { age, bound: max_age })
    } else if current != request.seen {
        Some(Skip::ReplicasChanged { seen: request.seen, now: current })
    } else if target == current {
        Some(Skip::Unchanged { current })
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const AGE: Duration = Duration::from_secs(10);

    fn limits() -> Limits {
        Limits {
            min: 1,
            max: 5,
            cooldown_up: Duration::from_secs(10),
            cooldown_down: Duration::from_secs(60),
            step_max: None,
        }
    }

    fn request(seen: u32, event_ns: u64) -> Request {
        Request {
            policy: "threshold".into(),
            event: Event::cpu(0.9).at(event_ns),
            decision: Decision::scale(0, "test"),
            seen,
            decided_ns: event_ns,
        }
    }

    fn last(ns: u64) -> History {
        History { last_up_ns: Some(ns), ..History::default() }
    }

    #[test]
    fn applies_a_plain_decision() {
        let j = judge(&request(2, 100 * SEC), 3, &limits(), 2, &History::default(), 100 * SEC, AGE);
        assert_eq!(j, Judgement { target: 3, adjustments: vec![], skip: None });
    }

    #[test]
    fn clamps_to_bounds_whatever_the_policy_says() {
        let none = History::default();
        let j = judge(&request(2, 0), 50, &limits(), 2, &none, 0, AGE);
        assert_eq!(j.target, 5);
        assert_eq!(j.adjustments, [Adjustment::ClampedToMax { asked: 50, max: 5 }]);
        assert_eq!(j.skip, None);
        let j = judge(&request(2, 0), 0, &limits(), 2, &none, 0, AGE);
        assert_eq!(j.target, 1);
        assert_eq!(j.adjustments, [Adjustment::ClampedToMin { asked: 0, min: 1 }]);
        // Clamped onto the current value: nothing to do.
        let j = judge(&request(5, 0), 9, &limits(), 5, &none, 0, AGE);
        assert_eq!(j.skip, Some(Skip::Unchanged { current: 5 }));
    }

    #[test]
    fn step_limit_bounds_each_change() {
        let none = History::default();
        let l = Limits { step_max: Some(2), ..limits() };
        let j = judge(&request(1, 0), 5, &l, 1, &none, 0, AGE);
        assert_eq!(j.target, 3);
        assert_eq!(j.adjustments, [Adjustment::StepLimited { asked: 5, allowed: 3, step_max: 2 }]);
        let l = Limits { step_max: Some(1), ..limits() };
        assert_eq!(judge(&request(5, 0), 1, &l, 5, &none, 0, AGE).target, 4);
    }

    #[test]
    fn cooldowns_are_separate_for_up_and_down() {
        let h = last(100 * SEC);
        // 5 s after a scale: up waits 10 s, down waits 60 s.
        let j = judge(&request(2, 105 * SEC), 3, &limits(), 2, &h, 105 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Up, remaining: Duration::from_secs(5) }));
        let j = judge(&request(2, 110 * SEC), 3, &limits(), 2, &h, 110 * SEC, AGE);
        assert_eq!(j.skip, None, "up cooldown over after 10 s");
        let j = judge(&request(2, 110 * SEC), 1, &limits(), 2, &h, 110 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Down, remaining: Duration::from_secs(50) }));
        let j = judge(&request(2, 160 * SEC), 1, &limits(), 2, &h, 160 * SEC, AGE);
        assert_eq!(j.skip, None, "down cooldown over after 60 s");
    }

    #[test]
    fn a_hold_refuses_scale_in_but_not_scale_out() {
        let h = History { hold_until_ns: Some(130 * SEC), ..History::default() };
        let j = judge(&request(3, 100 * SEC), 2, &limits(), 3, &h, 100 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::Held { remaining: Duration::from_secs(30) }));
        assert_eq!(judge(&request(3, 100 * SEC), 4, &limits(), 3, &h, 100 * SEC, AGE).skip, None);
        assert_eq!(judge(&request(3, 131 * SEC), 2, &limits(), 3, &h, 131 * SEC, AGE).skip, None, "hold ran out");
    }

    #[test]
    fn stale_decisions_and_changed_replicas_are_not_applied() {
        let none = History::default();
        let j = judge(&request(2, 100 * SEC), 3, &limits(), 2, &none, 111 * SEC, AGE);
        assert!(matches!(j.skip, Some(Skip::Stale { .. })), "{j:?}");
        // An operator scaled to 4 after the policy saw 2: 3 would undo it.
        let j = judge(&request(2, 100 * SEC), 3, &limits(), 4, &none, 100 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::ReplicasChanged { seen: 2, now: 4 }));
    }

    #[test]
    fn cooldowns_count_between_decisions_not_to_the_actuators_clock() {
        // Scaled on a decision at 100 s; the next decision at 109.99 s is
        // judged by the actuator a little later, at 110.02 s: still cooling.
        let h = last(100 * SEC);
        let mut r = request(2, 109 * SEC);
        r.decided_ns = 109_990_000_000;
        let j = judge(&r, 3, &limits(), 2, &h, 110_020_000_000, AGE);
        assert_eq!(j.skip, Some(Skip::Cooldown { way: Way::Up, remaining: Duration::from_millis(10) }));
        r.decided_ns = 110 * SEC;
        assert_eq!(judge(&r, 3, &limits(), 2, &h, 110_500_000_000, AGE).skip, None);
        // Staleness is the actuator's clock: a decision that waited is stale.
        let j = judge(&r, 3, &limits(), 2, &h, 120 * SEC, AGE);
        assert!(matches!(j.skip, Some(Skip::Stale { .. })), "{j:?}");
    }

    #[test]
    fn history_records_the_direction() {
        let mut h = History::default();
        h.record(1, 3, 5);
        h.record(3, 2, 9);
        h.record(2, 2, 11);
        assert_eq!((h.last_up_ns, h.last_down_ns, h.last_scale_ns()), (Some(5), Some(9), Some(9)));
    }
}
