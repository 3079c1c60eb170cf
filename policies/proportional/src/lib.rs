//! `proportional`: the Kubernetes HPA rule,
//! `desired = ceil(current * value / target)`, skipped while `value / target`
//! is within a tolerance of 1.0.
//!
//! Settings (service labels `autoscale.<key>`):
//! - `<metric>.target` for `cpu`, `memory`, `connections`: the value each
//!   container should run at (for example `cpu.target=0.5`: half its CPU
//!   limit). Events of a metric without a target are ignored.
//! - `tolerance` (default 0.1): no change while the ratio is within 1 ± tolerance.
//!
//! Each event carries one container's value; behind Swarm's load balancer it
//! stands for the service's average, which is what HPA divides by.

use autoscaler_sdk::{Decision, Event, Policy, State, export_policy, warn};

/// Default tolerance, as in Kubernetes (`--horizontal-pod-autoscaler-tolerance`).
const DEFAULT_TOLERANCE: f64 = 0.1;

/// The exported policy.
pub struct Proportional;

impl Policy for Proportional {
    fn decide(event: Event, state: State) -> Option<Decision> {
        decide(&event, &state)
    }
}

export_policy!(Proportional);

/// The decision rule, separate from the export so it can be unit-tested.
pub fn decide(event: &Event, state: &State) -> Option<Decision> {
    let metric = event.metric_name();
    let target = match state.number(&format!("{metric}.target")) {
        Ok(Some(target)) if target > 0.0 => target,
        Ok(None) => return None,
        Ok(Some(_)) => {
            warn!("{}: {metric}.target must be above 0", event.service_name);
            return None;
        }
        Err(err) => {
            warn!("{}: {err}", event.service_name);
            return None;
        }
    };
    let tolerance = match state.number("tolerance") {
        Ok(Some(t)) if (0.0..1.0).contains(&t) => t,
        Ok(None) => DEFAULT_TOLERANCE,
        Ok(Some(_)) | Err(_) => {
            warn!("{}: tolerance must be a number in [0, 1); using {DEFAULT_TOLERANCE}", event.service_name);
            DEFAULT_TOLERANCE
        }
    };
    if state.current_replicas == 0 || !event.value.is_finite() || event.value < 0.0 {
        return None;
    }
    let ratio = event.value / target;
    if (ratio - 1.0).abs() <= tolerance {
        return None;
    }
    let desired = (f64::from(state.current_replicas) * ratio).ceil();
    // Saturate absurd ratios before converting; clamp handles the bounds.
    let desired = if desired >= i64::MAX as f64 { i64::MAX } else { desired as i64 };
    let replicas = state.clamp(desired);
    if replicas == state.current_replicas {
        return None;
    }
    Some(Decision::new(
        replicas,
        format!(
            "{metric} {:.3} vs target {target} (ratio {ratio:.2}): ceil({} * {ratio:.2}) = {desired}, bounded to {replicas}",
            event.value, state.current_replicas
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::decide;
    use autoscaler_sdk::{Event, EventKind, Metric, State, Unit};

    fn event(value: f64) -> Event {
        Event {
            metric: Metric::Cpu,
            value,
            unit: Unit::FractionOfLimit,
            kind: EventKind::Sample,
            container_id: "c".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            timestamp_ns: 1,
        }
    }

    fn state(current: u32, settings: &[(&str, &str)]) -> State {
        State {
            current_replicas: current,
            min_replicas: 1,
            max_replicas: 10,
            last_scale_ns: None,
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const TARGET: &[(&str, &str)] = &[("cpu.target", "0.5")];

    #[test]
    fn hpa_rule_scales_out() {
        // ceil(2 * 0.9 / 0.5) = ceil(3.6) = 4
        let d = decide(&event(0.9), &state(2, TARGET)).expect("decision");
        assert_eq!(d.target_replicas, 4);
        assert!(d.reason.contains("ratio 1.80"), "{}", d.reason);
    }

    #[test]
    fn hpa_rule_scales_in() {
        // ceil(4 * 0.1 / 0.5) = ceil(0.8) = 1
        assert_eq!(decide(&event(0.1), &state(4, TARGET)).map(|d| d.target_replicas), Some(1));
        // ceil(4 * 0.3 / 0.5) = ceil(2.4) = 3
        assert_eq!(decide(&event(0.3), &state(4, TARGET)).map(|d| d.target_replicas), Some(3));
    }

    #[test]
    fn within_tolerance_does_nothing() {
        assert_eq!(decide(&event(0.54), &state(2, TARGET)), None);
        assert_eq!(decide(&event(0.46), &state(2, TARGET)), None);
        let wide = state(2, &[("cpu.target", "0.5"), ("tolerance", "0.5")]);
        assert_eq!(decide(&event(0.7), &wide), None);
    }

    #[test]
    fn bounded_by_max_and_min() {
        assert_eq!(decide(&event(100.0), &state(2, TARGET)).map(|d| d.target_replicas), Some(10));
        assert_eq!(decide(&event(f64::MAX), &state(2, TARGET)).map(|d| d.target_replicas), Some(10));
        assert_eq!(decide(&event(0.0), &state(1, TARGET)), None);
    }

    #[test]
    fn missing_or_bad_target_is_ignored() {
        assert_eq!(decide(&event(0.9), &state(2, &[])), None);
        assert_eq!(decide(&event(0.9), &state(2, &[("cpu.target", "0")])), None);
        assert_eq!(decide(&event(0.9), &state(2, &[("cpu.target", "half")])), None);
        assert_eq!(decide(&event(f64::NAN), &state(2, TARGET)), None);
    }
}
