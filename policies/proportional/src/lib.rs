//! `proportional`: the Kubernetes HPA rule,
//! `desired = ceil(reporting * mean / target)`, over the mean of the
//! replicas that report (the daemon leaves out replicas still warming up, as
//! the HPA leaves out pods that are not ready), with the HPA's caution about
//! the replicas it cannot see (Kubernetes `replica_calculator.go`):
//! - on a scale-out, replicas still warming up count as using nothing, and
//!   so do running replicas with no reading in the window (missing);
//! - on a scale-in, missing replicas count as using exactly the target;
//! - if counting them that way turns the direction round or brings the
//!   ratio within tolerance, the count stays.
//!
//! So a burst on the replicas that report does not multiply the whole
//! service while new replicas start, and a replica that went quiet is not
//! read as idle.
//!
//! Settings (service labels `autoscale.<name>`):
//! - `<metric>.target` for `cpu` (a fraction of the CPU limit, or cores
//!   without one), `memory` (bytes: `512Mi`) and `connections`: the value
//!   each replica should run at on average (for example `cpu.target=0.5`:
//!   half its CPU limit). Metrics without a target are not looked at.
//! - `tolerance` (default 0.1): a metric whose `mean / target` is within
//!   1 ± tolerance asks for the current count.
//!
//! With several targets, each metric proposes a count and the largest wins,
//! as in the HPA: one metric can scale out on its own, scale-in needs all.
//! No replica reporting: no decision.

use std::fmt::Write as _;

use autoscaler_sdk::{Aggregate, Decision, Event, Figure, Policy, SettingSpec, State, export_policy, warn};

/// Default tolerance, as in Kubernetes (`--horizontal-pod-autoscaler-tolerance`).
const DEFAULT_TOLERANCE: &str = "0.1";

/// The exported policy.
pub struct Proportional;

/// Where a metric's aggregate is in the state.
type AggregateOf = fn(&State) -> Option<&Aggregate>;

/// The metrics with a target: the setting's name, the metric's name and
/// where its aggregate is.
const TARGETS: [(&str, &str, AggregateOf); 3] = [
    ("cpu.target", "cpu", State::cpu),
    ("memory.target", "memory", State::memory),
    ("connections.target", "connections", State::connections),
];

impl Policy for Proportional {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::quantity("cpu.target")
                .doc("mean CPU per replica to aim for (fraction of the limit, or cores without one)"),
            SettingSpec::quantity("memory.target").doc("mean memory per replica to aim for (bytes: 512Mi, 1G)"),
            SettingSpec::quantity("connections.target").doc("mean open connections per replica to aim for"),
            SettingSpec::number("tolerance")
                .default(DEFAULT_TOLERANCE)
                .doc("no change while mean / target is within 1 +- tolerance (0 to below 1)"),
        ]
    }

    fn decide(_event: Event, state: State) -> Option<Decision> {
        decide(&state)
    }
}

export_policy!(Proportional);

/// One metric's proposal.
struct Proposal {
    /// The metric's name.
    metric: &'static str,
    /// The mean over the reporting replicas.
    mean: f64,
    /// The target.
    target: f64,
    /// `mean / target`, after counting warming and missing replicas.
    ratio: f64,
    /// The replicas the ratio is multiplied by.
    counted: u32,
    /// How many warming and missing replicas were counted, if any were.
    adjusted: Option<(u32, u32)>,
    /// The count it asks for, before the bounds.
    desired: i64,
}

/// The decision rule, on the service's state (the event only says that
/// something changed: the service view decides).
fn decide(state: &State) -> Option<Decision> {
    let tolerance = state.number("tolerance").unwrap_or(0.1);
    if !(0.0..1.0).contains(&tolerance) {
        warn!(
            "{}: autoscale.tolerance is {tolerance}; write a number from 0 to below 1. No decision.",
            state.service_name
        );
        return None;
    }
    let current = state.current_replicas;
    if current == 0 {
        return None; // nothing to multiply; waking a service is the daemon's job
    }
    let mut best: Option<Proposal> = None;
    for (setting, metric, aggregate) in TARGETS {
        let Some(target) = state.number(setting) else { continue };
        if target <= 0.0 {
            warn!("{}: autoscale.{setting} is {target}; it must be above 0. No decision.", state.service_name);
            return None;
        }
        let Some(aggregate) = aggregate(state).filter(|a| a.reporting > 0) else { continue };
        let Some(proposal) = hpa(metric, aggregate, target, current, tolerance) else { continue };
        if best.as_ref().is_none_or(|b| proposal.desired > b.desired) {
            best = Some(proposal);
        }
    }
    let best = best?;
    let replicas = state.clamp(best.desired);
    if replicas == current {
        return None;
    }
    let mut reason = String::with_capacity(128);
    let _ = write!(reason, "{} mean {} / target {}", best.metric, Figure(best.mean), Figure(best.target));
    if let Some((warming, missing)) = best.adjusted {
        let _ = write!(reason, ", counting {warming} warming and {missing} missing");
    }
    let _ =
        write!(reason, " = {}: ceil({} * {}) = {}", Figure(best.ratio), best.counted, Figure(best.ratio), best.desired);
    if i64::from(replicas) != best.desired {
        let _ = write!(reason, ", bounded to {replicas}");
    }
    Some(Decision::scale(replicas, reason))
}

/// The HPA's replica count for one metric: `None` if its mean is not a
/// usable number.
fn hpa(metric: &'static str, aggregate: &Aggregate, target: f64, current: u32, tolerance: f64) -> Option<Proposal> {
    let mean = aggregate.value.mean;
    if !mean.is_finite() || mean < 0.0 {
        return None;
    }
    let reporting = aggregate.reporting;
    let ratio = mean / target;
    let warming = aggregate.warming;
    let missing = current.saturating_sub(reporting.saturating_add(warming));
    let out_with_warming = warming > 0 && ratio > 1.0;
    let stay = |ratio: f64, counted: u32, adjusted| Proposal {
        metric,
        mean,
        target,
        ratio,
        counted,
        adjusted,
        desired: i64::from(current),
    };
    if !out_with_warming && missing == 0 {
        if (ratio - 1.0).abs() <= tolerance {
            return Some(stay(ratio, reporting, None));
        }
        let desired = ceil(ratio * f64::from(reporting));
        return Some(Proposal { desired, ..stay(ratio, reporting, None) });
    }
    // Count the replicas the view cannot see, the cautious way round.
    let mut total = mean * f64::from(reporting);
    let mut counted = reporting;
    let mut missing_counted = 0;
    if missing > 0 && ratio != 1.0 {
        if ratio < 1.0 {
            total += target * f64::from(missing);
        }
        counted += missing;
        missing_counted = missing;
    }
    let warming_counted = if out_with_warming { warming } else { 0 };
    counted += warming_counted;
    let adjusted_ratio = total / f64::from(counted) / target;
    let adjusted = Some((warming_counted, missing_counted));
    let turned = (ratio < 1.0 && adjusted_ratio > 1.0) || (ratio > 1.0 && adjusted_ratio < 1.0);
    if (adjusted_ratio - 1.0).abs() <= tolerance || turned {
        return Some(stay(adjusted_ratio, counted, adjusted));
    }
    let desired = ceil(adjusted_ratio * f64::from(counted));
    if (adjusted_ratio < 1.0 && desired > i64::from(current)) || (adjusted_ratio > 1.0 && desired < i64::from(current))
    {
        return Some(stay(adjusted_ratio, counted, adjusted));
    }
    Some(Proposal { desired, ..stay(adjusted_ratio, counted, adjusted) })
}

/// `x` rounded up without the float error of the ratio
/// (`ceil(3 * 0.8 / 0.6)` is 4, not 5): the SDK's HPA helper.
fn ceil(x: f64) -> i64 {
    autoscaler_sdk::hpa::ceil(x)
}

#[cfg(test)]
mod tests;
