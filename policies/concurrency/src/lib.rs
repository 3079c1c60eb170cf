//! `concurrency`: Knative's rule, on demand the kernel measures.
//!
//! Demand is the requests a service holds: the larger of those in flight
//! (received, not yet answered) and the connections waiting in its
//! replicas' accept queues, each summed over the replicas that report
//! ([`State::demand`]). Not their sum: a queued connection whose request
//! has arrived is in both counts (docs/demand.md). A CPU rule sees a replica at
//! its limit the same whether it is asked for 1.1x or 10x what it serves;
//! demand keeps growing past saturation, so the rule can ask for the count
//! the load needs in one decision.
//!
//! The rule (Knative's KPA, `pkg/autoscaler/scaling/autoscaler.go`):
//! - `desired = ceil(demand / inflight.target)` over two windows: the
//!   stable window (`stable.window`, default 60s) and the panic window
//!   (`panic.window`, default 6s), each the mean of the demand seen in it;
//! - with `request-rate.target` set, also `ceil(rate / request-rate.target)`
//!   (requests per second one replica serves well), and the larger count
//!   wins: arrivals, unlike concurrency, do not grow with the time a queue
//!   has waited;
//! - panic: when the panic window asks for at least `panic.threshold`
//!   (default 2) times the current count, the service scales to it at once
//!   and does not scale in until the panic window has asked for less for a
//!   whole stable window; the panic count is the larger of the panic
//!   window's mean and the newest demand;
//! - settling: a step's first events see part of it (its clients connect
//!   over a few ms; an event 13 ms into a step of 10 requests saw 3), and
//!   the up-cooldown then holds the next step back. So a panic that would
//!   raise the replicas first waits `panic.settle` (default 500ms) from
//!   the first call that wanted it, deciding nothing, then asks on what a
//!   call after it sees: one decision for the whole step. Not on the peak
//!   seen meanwhile: a service view sums each replica's latest figure, and
//!   on a short spike (a replica's stale figure beside the new ones) the
//!   peak over-asks. A call whose panic count asks for no more than the
//!   current count ends the settling; the next rise starts it over;
//! - otherwise the stable window's count, and a scale-in only to the
//!   largest count asked within `scale-down.delay` (default 0s, as Knative);
//! - with `cpu.gate` set, demand scales a service out only while its CPU
//!   (the mean over its replicas, a fraction of the limit) is at or above
//!   the gate. In a chain of services every caller holds its requests
//!   while it waits for the one that is saturated, and on a saturated host
//!   every service's requests wait for the CPU: their demand rises though
//!   more of them would not help. Below the gate the count holds (or
//!   follows `request-rate.target`, arrivals being no such echo); scale-in
//!   is not gated. Not for services bound by something other than CPU
//!   (I/O, a fixed worker pool): leave it unset there, as by default.
//!
//! Settings (service labels `autoscale.<name>`):
//! - `inflight.target` (default 10): requests each replica should hold on
//!   average (Knative's container-concurrency target);
//! - `request-rate.target` (optional): requests per second per replica;
//! - `stable.window`, `panic.window`, `panic.threshold`, `panic.settle`,
//!   `scale-down.delay`;
//! - `cpu.gate` (optional, a fraction of the CPU limit, e.g. `0.8`).
//!
//! No demand metric reported (the probe does not measure it for this
//! service): no decision.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use autoscaler_sdk::series::{PerService, Series};
use autoscaler_sdk::{Decision, Event, Figure, Policy, SettingSpec, State, export_policy, warn};

#[cfg(test)]
mod tests;

/// The exported policy.
pub struct Concurrency;

/// Services remembered at once by one instance.
const MAX_SERVICES: usize = 4096;

/// Demand samples closer than this merge (events of one burst).
const RESOLUTION_NS: u64 = 100_000_000;

/// What the rule remembers of one service.
#[derive(Debug)]
struct Memory {
    /// Demand (the larger of in flight and queued) over time.
    demand: Series,
    /// Request rate over time (when a rate target is set).
    rate: Series,
    /// Counts the stable rule asked for, for the scale-down delay.
    asked: Series,
    /// When the panic window last asked for `panic.threshold` x current.
    panic_since_ns: Option<u64>,
    /// When the panic rule first wanted more replicas than the current
    /// count, while it waits for the demand to settle.
    settle_since_ns: Option<u64>,
}

thread_local! {
    /// Per service id. A policy instance runs one call at a time.
    static MEMORY: RefCell<PerService<Memory>> = RefCell::new(PerService::new(MAX_SERVICES));
}

impl Policy for Concurrency {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::number("inflight.target")
                .default("10")
                .doc("requests in flight (and queued) per replica to aim for, above 0"),
            SettingSpec::number("request-rate.target").doc("requests per second one replica serves well (optional)"),
            SettingSpec::duration("stable.window").default("60s").doc("window of the stable count"),
            SettingSpec::duration("panic.window").default("6s").doc("window of the panic count"),
            SettingSpec::number("panic.threshold")
                .default("2")
                .doc("panic when the panic count reaches this many times the current count"),
            SettingSpec::duration("panic.settle")
                .default("500ms")
                .doc("before a panic scale-up, wait this long for a rising demand to settle"),
            SettingSpec::duration("scale-down.delay")
                .default("0s")
                .doc("scale in only to the largest count asked within this time"),
            SettingSpec::number("cpu.gate")
                .doc("scale out on demand only while the CPU mean is at least this fraction of the limit (optional)"),
        ]
    }

    fn decide(_event: Event, state: State) -> Option<Decision> {
        MEMORY.with(|memory| decide(&state, &mut memory.borrow_mut()))
    }
}

export_policy!(Concurrency);

/// The settings of one call, checked.
struct Settings {
    target: f64,
    rate_target: Option<f64>,
    stable_ns: u64,
    panic_ns: u64,
    panic_threshold: f64,
    settle_ns: u64,
    delay_ns: u64,
    cpu_gate: Option<f64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn settings(state: &State) -> Option<Settings> {
    let s = Settings {
        target: state.number("inflight.target").unwrap_or(10.0),
        rate_target: state.number("request-rate.target"),
        stable_ns: nanos(state.duration("stable.window").unwrap_or(Duration::from_secs(60))),
        panic_ns: nanos(state.duration("panic.window").unwrap_or(Duration::from_secs(6))),
        panic_threshold: state.number("panic.threshold").unwrap_or(2.0),
        settle_ns: nanos(state.duration("panic.settle").unwrap_or(Duration::from_millis(500))),
        delay_ns: nanos(state.duration("scale-down.delay").unwrap_or_default()),
        cpu_gate: state.number("cpu.gate"),
    };
    let bad = if s.target.is_nan() || s.target <= 0.0 {
        Some("inflight.target must be above 0")
    } else if s.rate_target.is_some_and(|r| r.is_nan() || r <= 0.0) {
        Some("request-rate.target must be above 0")
    } else if s.panic_ns == 0 || s.panic_ns > s.stable_ns {
        Some("panic.window must be above 0 and at most stable.window")
    } else if s.panic_threshold.is_nan() || s.panic_threshold < 1.0 {
        Some("panic.threshold must be at least 1")
    } else if s.settle_ns > s.panic_ns {
        Some("panic.settle must be at most panic.window")
    } else if s.cpu_gate.is_some_and(|g| g.is_nan() || g <= 0.0) {
        Some("cpu.gate must be above 0")
    } else {
        None
    };
    if let Some(problem) = bad {
        warn!("{}: {problem}. No decision.", state.service_name);
        return None;
    }
    Some(s)
}

/// `ceil(x)` as a count; huge or broken figures give `i64::MAX` (clamped later).
fn count(x: f64) -> i64 {
    if x.is_finite() { x.ceil().max(0.0) as i64 } else { i64::MAX }
}

/// The decision rule.
fn decide(state: &State, memory: &mut PerService<Memory>) -> Option<Decision> {
    let s = settings(state)?;
    let current = state.current_replicas;
    if current == 0 {
        return None; // waking a service is the daemon's job
    }
    state.inflight().filter(|a| a.reporting > 0)?;
    let demand = state.demand()?;
    let rate = s.rate_target.and(state.request_rate()).filter(|a| a.reporting > 0).map(|a| a.value.sum);
    let now = state.now_ns;

    let m = memory.entry(&state.service_id, || Memory {
        demand: Series::new(RESOLUTION_NS),
        rate: Series::new(RESOLUTION_NS),
        asked: Series::new(RESOLUTION_NS),
        panic_since_ns: None,
        settle_since_ns: None,
    });
    m.demand.push(now, demand, s.stable_ns);
    if let Some(rate) = rate {
        m.rate.push(now, rate, s.stable_ns);
    }

    // The count each window asks for: demand over the concurrency target,
    // and arrivals over the rate target when there is one.
    let wanted = |window_ns: u64, latest: bool| -> (i64, f64) {
        let since = now.saturating_sub(window_ns);
        let mut mean = m.demand.mean_since(since).unwrap_or(demand);
        if latest {
            mean = mean.max(demand);
        }
        let mut n = count(mean / s.target);
        if let (Some(target), Some(rate_now)) = (s.rate_target, rate) {
            let mut r = m.rate.mean_since(since).unwrap_or(rate_now);
            if latest {
                r = r.max(rate_now);
            }
            n = n.max(count(r / target));
        }
        (n, mean)
    };
    let (stable, stable_demand) = wanted(s.stable_ns, false);
    let (panic, panic_demand) = wanted(s.panic_ns, true);

    if panic as f64 >= s.panic_threshold * f64::from(current) {
        m.panic_since_ns = Some(now);
    }
    let panicking = m.panic_since_ns.is_some_and(|since| now.saturating_sub(since) < s.stable_ns);
    if !panicking {
        m.panic_since_ns = None;
    }

    // A panic scale-up waits for the step to settle, then asks once.
    if panicking && panic > i64::from(current) {
        let since = *m.settle_since_ns.get_or_insert(now);
        if now.saturating_sub(since) < s.settle_ns {
            return None;
        }
    } else {
        m.settle_since_ns = None;
    }

    let mut reason = String::with_capacity(160);
    let desired = if panicking {
        // Never scale in while panicking.
        let desired = panic.max(i64::from(current));
        let _ = write!(
            reason,
            "panic: demand {} in the last {} s / inflight.target {} asks {}",
            Figure(panic_demand),
            s.panic_ns / 1_000_000_000,
            Figure(s.target),
            panic
        );
        desired
    } else {
        m.asked.push(now, stable as f64, s.delay_ns.max(1));
        let mut desired = stable;
        if stable < i64::from(current) && s.delay_ns > 0 {
            let held = m.asked.max_since(now.saturating_sub(s.delay_ns)).map_or(stable, count);
            desired = desired.max(held);
        }
        let _ = write!(
            reason,
            "demand {} over {} s / inflight.target {} asks {}",
            Figure(stable_demand),
            s.stable_ns / 1_000_000_000,
            Figure(s.target),
            stable
        );
        if desired != stable {
            let _ = write!(reason, ", held at {desired} by scale-down.delay");
        }
        desired
    };
    if let (Some(target), Some(rate)) = (s.rate_target, rate) {
        let _ = write!(reason, " (rate {} / request-rate.target {})", Figure(rate), Figure(target));
    }
    let desired = gate(state, &s, desired, rate, &mut reason);
    let replicas = state.clamp(desired);
    if replicas == current {
        return None;
    }
    let _ = write!(reason, ": {current} -> {replicas}");
    Some(Decision::scale(replicas, reason))
}

/// `cpu.gate`: a scale-out asked by demand holds while the service's CPU
/// mean is under the gate (its requests wait on something other than its
/// own CPU), unless arrivals alone ask for more. No CPU reading: no gate.
fn gate(state: &State, s: &Settings, desired: i64, rate: Option<f64>, reason: &mut String) -> i64 {
    let current = i64::from(state.current_replicas);
    let (Some(gate), Some(cpu)) = (s.cpu_gate, state.cpu().filter(|a| a.reporting > 0)) else { return desired };
    if desired <= current || cpu.value.mean >= gate {
        return desired;
    }
    let by_rate = match (s.rate_target, rate) {
        (Some(target), Some(rate)) => count(rate / target),
        _ => 0,
    };
    let held = desired.min(by_rate.max(current));
    let _ = write!(reason, ", held at {held}: cpu mean {} under cpu.gate {}", Figure(cpu.value.mean), Figure(gate));
    held
}
