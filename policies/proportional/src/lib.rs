//! `proportional`: the Kubernetes HPA rule,
//! `desired = ceil(current * mean / target)`, over the mean of the replicas
//! that report (the daemon leaves out replicas still warming up, as the HPA
//! leaves out pods that are not ready).
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

    fn decide(event: Event, state: State) -> Option<Decision> {
        decide(&event, &state)
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
    /// The count it asks for, before the bounds.
    desired: i64,
}

/// The decision rule, on borrowed values.
fn decide(event: &Event, state: &State) -> Option<Decision> {
    let tolerance = state.number("tolerance").unwrap_or(0.1);
    if !(0.0..1.0).contains(&tolerance) {
        warn!(
            "{}: autoscale.tolerance is {tolerance}; write a number from 0 to below 1. No decision.",
            event.service_name
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
            warn!("{}: autoscale.{setting} is {target}; it must be above 0. No decision.", event.service_name);
            return None;
        }
        let Some(aggregate) = aggregate(state).filter(|a| a.reporting > 0) else { continue };
        let mean = aggregate.value.mean;
        if !mean.is_finite() || mean < 0.0 {
            continue;
        }
        let ratio = mean / target;
        let desired = if (ratio - 1.0).abs() <= tolerance {
            i64::from(current)
        } else {
            // Saturate absurd ratios before converting; clamp handles the bounds.
            let desired = (f64::from(current) * ratio).ceil();
            if desired >= i64::MAX as f64 { i64::MAX } else { desired as i64 }
        };
        if best.as_ref().is_none_or(|b| desired > b.desired) {
            best = Some(Proposal { metric, mean, target, desired });
        }
    }
    let best = best?;
    let replicas = state.clamp(best.desired);
    if replicas == current {
        return None;
    }
    let mut reason = String::with_capacity(96);
    let ratio = best.mean / best.target;
    let _ = write!(
        reason,
        "{} mean {} / target {} = {}: ceil({current} * {}) = {}",
        best.metric,
        Figure(best.mean),
        Figure(best.target),
        Figure(ratio),
        Figure(ratio),
        best.desired
    );
    if i64::from(replicas) != best.desired {
        let _ = write!(reason, ", bounded to {replicas}");
    }
    Some(Decision::scale(replicas, reason))
}

#[cfg(test)]
mod tests;
