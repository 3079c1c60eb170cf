//! `threshold`: one step out when the service runs hot, one step in when it
//! runs cold everywhere, nothing in between.
//!
//! It decides on the service view (the aggregate over the replicas that
//! report), not on the value of the event that triggered the call: a single
//! idle replica behind a busy service does not scale it in, and replicas
//! still warming up are left out of the aggregate by the daemon.
//!
//! Settings (service labels `autoscale.<name>`), all optional:
//! - `<metric>.upper`, `<metric>.lower` for `cpu` (a fraction of the CPU
//!   limit, or cores without one), `memory` (bytes: `512Mi`, `1G`) and
//!   `connections` (per replica): the band. A metric with at least one of the
//!   two is watched. `lower` must be below `upper`.
//! - `step` (default 1): replicas added or removed per decision.
//! - `aggregate` (`mean` or `max`, default `mean`): which figure of the
//!   service view is compared with the band.
//!
//! The rule: scale out by `step` when any watched metric is at or above its
//! upper; scale in by `step` only when every watched metric that has a lower
//! is at or below it (and none is at or above its upper); a metric with a
//! lower but no reporting replica blocks scale-in. No replica reporting (all
//! warming up): no decision. Every event is judged again, so a service that
//! stays hot keeps stepping out, at the pace the daemon's cooldowns allow,
//! until `autoscale.max`.

use autoscaler_sdk::{Aggregate, Decision, Event, Figure, Policy, SettingSpec, State, export_policy, warn};

/// The exported policy.
pub struct Threshold;

/// A metric the policy can watch: its name and where its aggregate is.
struct Watched {
    /// The metric's name, the prefix of its settings.
    name: &'static str,
    /// The setting holding the upper threshold.
    upper: &'static str,
    /// The setting holding the lower threshold.
    lower: &'static str,
    /// The metric's aggregate in the state.
    aggregate: fn(&State) -> Option<&Aggregate>,
}

/// Every metric the policy watches, in the order reasons name them.
const WATCHED: [Watched; 3] = [
    Watched { name: "cpu", upper: "cpu.upper", lower: "cpu.lower", aggregate: State::cpu },
    Watched { name: "memory", upper: "memory.upper", lower: "memory.lower", aggregate: State::memory },
    Watched {
        name: "connections",
        upper: "connections.upper",
        lower: "connections.lower",
        aggregate: State::connections,
    },
];

impl Policy for Threshold {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::quantity("cpu.upper")
                .doc("scale out at or above this CPU (fraction of the limit, or cores without one)"),
            SettingSpec::quantity("cpu.lower").doc("scale in at or below this CPU (same unit as cpu.upper)"),
            SettingSpec::quantity("memory.upper")
                .doc("scale out at or above this memory per replica (bytes: 512Mi, 1G)"),
            SettingSpec::quantity("memory.lower").doc("scale in at or below this memory per replica (bytes)"),
            SettingSpec::quantity("connections.upper")
                .doc("scale out at or above this many open connections per replica"),
            SettingSpec::quantity("connections.lower")
                .doc("scale in at or below this many open connections per replica"),
            SettingSpec::number("step")
                .default("1")
                .doc("replicas added or removed per decision (a whole number >= 1)"),
            SettingSpec::text("aggregate")
                .default("mean")
                .doc("which figure over the reporting replicas is compared: mean or max"),
        ]
    }

    fn decide(_event: Event, state: State) -> Option<Decision> {
        decide(&state)
    }
}

export_policy!(Threshold);

/// The decision rule, on the service's state (the event only says that
/// something changed: the service view decides).
fn decide(state: &State) -> Option<Decision> {
    let use_max = match state.text("aggregate") {
        None | Some("mean") => false,
        Some("max") => true,
        Some(other) => {
            warn!("{}: autoscale.aggregate is {other:?}; write mean or max. No decision.", state.service_name);
            return None;
        }
    };
    let figure = if use_max { "max" } else { "mean" };
    let step = match state.number("step") {
        Some(step) if step >= 1.0 && step.fract() == 0.0 && step <= f64::from(u32::MAX) => step as i64,
        Some(step) => {
            warn!("{}: autoscale.step is {step}; write a whole number >= 1. No decision.", state.service_name);
            return None;
        }
        None => 1,
    };

    // The first metric at or above its upper, and whether every metric with
    // a lower is at or below it.
    let mut over: Option<(&Watched, f64, f64)> = None;
    let mut any_lower = false;
    let mut all_below = true;
    for watched in &WATCHED {
        let (upper, lower) = (state.number(watched.upper), state.number(watched.lower));
        if let (Some(upper), Some(lower)) = (upper, lower)
            && lower >= upper
        {
            warn!(
                "{}: autoscale.{} ({lower}) must be below autoscale.{} ({upper}). No decision.",
                state.service_name, watched.lower, watched.upper
            );
            return None;
        }
        if upper.is_none() && lower.is_none() {
            continue;
        }
        any_lower |= lower.is_some();
        let Some(aggregate) = (watched.aggregate)(state).filter(|a| a.reporting > 0) else {
            // Nothing measured: cannot tell it is low.
            all_below &= lower.is_none();
            continue;
        };
        let value = if use_max { aggregate.value.max } else { aggregate.value.mean };
        if let Some(upper) = upper
            && value >= upper
            && over.is_none()
        {
            over = Some((watched, value, upper));
        }
        all_below &= lower.is_none_or(|lower| value <= lower);
    }

    let current = state.current_replicas;
    let wanted = match over {
        Some(_) => i64::from(current) + step,
        None if any_lower && all_below => i64::from(current) - step,
        None => return None,
    };
    let target = state.clamp(wanted);
    if target == current {
        return None; // at a bound: no reason to build
    }
    // Built with `push_str` and `Figure::push_to`, not `write!`: a reason is
    // made on every decision, and core::fmt costs a component about two
    // thousand instructions a call.
    let mut reason = String::with_capacity(96);
    if let Some((watched, value, upper)) = over {
        for part in [watched.name, " ", figure, " "] {
            reason.push_str(part);
        }
        Figure(value).push_to(&mut reason);
        for part in [" >= ", watched.upper, " "] {
            reason.push_str(part);
        }
        Figure(upper).push_to(&mut reason);
    } else {
        reason.push_str("every lower reached:");
        for watched in &WATCHED {
            let Some(lower) = state.number(watched.lower) else { continue };
            let value = (watched.aggregate)(state).map_or(0.0, |a| if use_max { a.value.max } else { a.value.mean });
            for part in [" ", watched.name, " ", figure, " "] {
                reason.push_str(part);
            }
            Figure(value).push_to(&mut reason);
            reason.push_str(" <= ");
            Figure(lower).push_to(&mut reason);
            reason.push(',');
        }
        reason.pop();
    }
    reason.push_str(": ");
    Figure(f64::from(current)).push_to(&mut reason);
    reason.push_str(" -> ");
    Figure(f64::from(target)).push_to(&mut reason);
    Some(Decision::scale(target, reason))
}

#[cfg(test)]
mod tests;
