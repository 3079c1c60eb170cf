//! `latency`: keep the service's response time under its objective,
//! stepping by what the demand says the service needs.
//!
//! The kernel measures each replica's response-time percentiles (from a
//! request's arrival, accept queue included, to the first byte of its
//! answer), the requests in flight and queued, and the arrival rate. The
//! rule reads the worst replica's percentile (`latency.percentile`, default
//! 95) against `latency.target`:
//! - over the target: the count the demand needs, never one replica at a
//!   time when the demand is many times what the service holds. The need is
//!   the largest of: one more replica; `ceil(rate / request-rate.target)`
//!   when that target is set; `ceil(demand / capacity)`, where demand is the
//!   larger of in flight and queued ([`State::demand`]: a queued request
//!   whose data arrived is in both) and capacity is the most demand per replica the
//!   service held within the objective in the last `memory` (default 10m),
//!   learned as it runs; without either, twice the current count at most
//!   (`current * p / target`, as a ratio rule would, capped at 2x);
//! - under `scale-in.below` (default 0.5) times the target: the count the
//!   demand fits in at the learned capacity and rate target, if fewer than
//!   now; with nothing learned, one fewer;
//! - in between: no change.
//!
//! Settings (service labels `autoscale.<name>`):
//! - `latency.target` (required): a duration, `200ms`;
//! - `latency.percentile` (default 95): 50, 95 or 99;
//! - `request-rate.target` (optional): requests per second one replica
//!   serves within the objective;
//! - `scale-in.below` (default 0.5), `memory` (default 10m).
//!
//! No response time reported for the service: no decision.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use autoscaler_sdk::series::{PerService, Series};
use autoscaler_sdk::{Decision, Event, Figure, Policy, SettingSpec, State, export_policy, warn};

#[cfg(test)]
mod tests;

/// The exported policy.
pub struct Latency;

/// Services remembered at once by one instance.
const MAX_SERVICES: usize = 4096;

/// Capacity samples closer than this merge.
const RESOLUTION_NS: u64 = 1_000_000_000;

thread_local! {
    /// Per service id: demand per replica seen while within the objective.
    static CAPACITY: RefCell<PerService<Series>> = RefCell::new(PerService::new(MAX_SERVICES));
}

impl Policy for Latency {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::duration("latency.target").required().doc("response time to stay under: 200ms"),
            SettingSpec::number("latency.percentile").default("95").doc("which percentile: 50, 95 or 99"),
            SettingSpec::number("request-rate.target").doc("requests per second one replica serves within the target"),
            SettingSpec::number("scale-in.below")
                .default("0.5")
                .doc("scale in when the percentile is under this fraction of the target (0 to below 1)"),
            SettingSpec::duration("memory").default("10m").doc("how long a learned capacity counts"),
        ]
    }

    fn decide(_event: Event, state: State) -> Option<Decision> {
        CAPACITY.with(|c| decide(&state, &mut c.borrow_mut()))
    }
}

export_policy!(Latency);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `ceil(x)` as a count; huge or broken figures give `i64::MAX` (clamped later).
fn count(x: f64) -> i64 {
    if x.is_finite() { x.ceil().max(0.0) as i64 } else { i64::MAX }
}

/// The decision rule.
fn decide(state: &State, capacity: &mut PerService<Series>) -> Option<Decision> {
    let target = state.duration("latency.target")?.as_secs_f64();
    let percentile = state.number("latency.percentile").unwrap_or(95.0);
    let rate_target = state.number("request-rate.target");
    let below = state.number("scale-in.below").unwrap_or(0.5);
    let memory_ns = nanos(state.duration("memory").unwrap_or(Duration::from_secs(600)));
    let problem = if target.is_nan() || target <= 0.0 {
        Some("latency.target must be above 0")
    } else if ![50.0, 95.0, 99.0].contains(&percentile) {
        Some("latency.percentile must be 50, 95 or 99")
    } else if rate_target.is_some_and(|r| r.is_nan() || r <= 0.0) {
        Some("request-rate.target must be above 0")
    } else if !(0.0..1.0).contains(&below) {
        Some("scale-in.below must be from 0 to below 1")
    } else {
        None
    };
    if let Some(problem) = problem {
        warn!("{}: {problem}. No decision.", state.service_name);
        return None;
    }
    let current = state.current_replicas;
    if current == 0 {
        return None;
    }
    let p = state.response_time(percentile as u8).filter(|a| a.reporting > 0)?.value.max;
    let inflight = state.inflight().filter(|a| a.reporting > 0);
    let reporting = inflight.map_or(current, |a| a.reporting).max(1);
    let demand = state.demand().unwrap_or(0.0);
    let rate = state.request_rate().filter(|a| a.reporting > 0).map(|a| a.value.sum);
    let now = state.now_ns;

    let learned = capacity.entry(&state.service_id, || Series::new(RESOLUTION_NS));
    if p <= target && inflight.is_some() {
        learned.push(now, demand / f64::from(reporting), memory_ns);
    }
    let held = learned.max_since(now.saturating_sub(memory_ns)).filter(|c| *c > 0.0);

    let mut reason = String::with_capacity(160);
    let _ = write!(reason, "p{percentile} {} s vs latency.target {} s", Figure(p), Figure(target));
    let need_by_demand = held.map(|c| count(demand / c));
    let need_by_rate = rate_target.zip(rate).map(|(t, r)| count(r / t));
    let desired = if p > target {
        let mut desired = i64::from(current) + 1;
        if let Some(n) = need_by_demand {
            let _ = write!(
                reason,
                "; demand {} / {} held per replica asks {n}",
                Figure(demand),
                Figure(held.unwrap_or_default())
            );
            desired = desired.max(n);
        }
        if let Some(n) = need_by_rate {
            let _ = write!(reason, "; rate {} asks {n}", Figure(rate.unwrap_or_default()));
            desired = desired.max(n);
        }
        if need_by_demand.is_none() && need_by_rate.is_none() {
            let n = count(f64::from(current) * (p / target).min(2.0));
            let _ = write!(reason, "; nothing learned yet, ratio asks {n}");
            desired = desired.max(n);
        }
        desired
    } else if p < below * target && current > 1 {
        let fits = need_by_demand.into_iter().chain(need_by_rate).max();
        match fits {
            Some(n) if n < i64::from(current) => {
                let _ = write!(reason, "; the demand fits in {n}");
                n.max(1)
            }
            Some(_) => return None,
            None => {
                let _ = write!(reason, "; under {} of the target", Figure(below));
                i64::from(current) - 1
            }
        }
    } else {
        return None;
    };
    let replicas = state.clamp(desired);
    if replicas == current {
        return None;
    }
    let _ = write!(reason, ": {current} -> {replicas}");
    Some(Decision::scale(replicas, reason))
}
