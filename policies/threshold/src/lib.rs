//! `threshold`: one step out above an upper threshold, one step in below a
//! lower one, nothing in between.
//!
//! Settings (service labels `autoscale.<key>`):
//! - `<metric>.upper`, `<metric>.lower` for `cpu`, `memory`, `connections`:
//!   the band. `lower` must be below `upper`; the gap is the hysteresis that
//!   keeps the service from flapping. Memory accepts `512Mi`, `1G`, ...
//!   Without both, events of that metric are ignored.
//! - `step` (default 1): replicas added or removed per decision.
//!
//! Every event (crossing or periodic sample) is judged on its value, so a
//! service that stays hot keeps stepping out, at the pace the daemon's
//! cooldowns allow, until it reaches `autoscale.max`.

use autoscaler_sdk::{Decision, Event, Policy, State, export_policy, warn};

/// The exported policy.
pub struct Threshold;

impl Policy for Threshold {
    fn decide(event: Event, state: State) -> Option<Decision> {
        decide(&event, &state)
    }
}

export_policy!(Threshold);

/// The decision rule, separate from the export so it can be unit-tested.
pub fn decide(event: &Event, state: &State) -> Option<Decision> {
    let metric = event.metric_name();
    let (upper, lower) = match (state.number(&format!("{metric}.upper")), state.number(&format!("{metric}.lower"))) {
        (Ok(Some(upper)), Ok(Some(lower))) => (upper, lower),
        (Ok(_), Ok(_)) => return None, // no band for this metric
        (Err(err), _) | (_, Err(err)) => {
            warn!("{}: {err}", event.service_name);
            return None;
        }
    };
    if lower >= upper {
        warn!(
            "{}: {metric}.lower ({lower}) must be below {metric}.upper ({upper}); ignoring {metric}",
            event.service_name
        );
        return None;
    }
    let step = match state.number("step") {
        Ok(Some(step)) if step >= 1.0 => step as i64,
        Ok(None) => 1,
        Ok(Some(_)) | Err(_) => {
            warn!("{}: step must be a whole number >= 1; using 1", event.service_name);
            1
        }
    };
    let current = i64::from(state.current_replicas);
    let (wanted, relation, bound) = if event.value >= upper {
        (current + step, "at or above upper", upper)
    } else if event.value <= lower {
        (current - step, "at or below lower", lower)
    } else {
        return None;
    };
    let target = state.clamp(wanted);
    if target == state.current_replicas {
        return None;
    }
    Some(Decision::new(
        target,
        format!("{metric} {:.3} {relation} {bound}: {} -> {target}", event.value, state.current_replicas),
    ))
}

#[cfg(test)]
mod tests {
    use super::decide;
    use autoscaler_sdk::{Event, EventKind, Metric, State, Unit};

    fn event(metric: Metric, value: f64) -> Event {
        Event {
            metric,
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
            max_replicas: 4,
            last_scale_ns: None,
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const BAND: &[(&str, &str)] = &[("cpu.upper", "0.8"), ("cpu.lower", "0.2")];

    #[test]
    fn steps_out_above_upper() {
        let d = decide(&event(Metric::Cpu, 0.95), &state(2, BAND)).expect("decision");
        assert_eq!(d.target_replicas, 3);
        assert!(d.reason.contains("above upper"), "{}", d.reason);
    }

    #[test]
    fn steps_in_below_lower() {
        let d = decide(&event(Metric::Cpu, 0.05), &state(3, BAND)).expect("decision");
        assert_eq!(d.target_replicas, 2);
    }

    #[test]
    fn holds_inside_the_band() {
        assert_eq!(decide(&event(Metric::Cpu, 0.5), &state(2, BAND)), None);
        assert_eq!(decide(&event(Metric::Cpu, 0.79), &state(2, BAND)), None);
        assert_eq!(decide(&event(Metric::Cpu, 0.21), &state(2, BAND)), None);
    }

    #[test]
    fn respects_min_and_max() {
        assert_eq!(decide(&event(Metric::Cpu, 0.99), &state(4, BAND)), None);
        assert_eq!(decide(&event(Metric::Cpu, 0.01), &state(1, BAND)), None);
    }

    #[test]
    fn step_setting_is_used_and_clamped() {
        let s = state(1, &[("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("step", "2")]);
        assert_eq!(decide(&event(Metric::Cpu, 0.9), &s).map(|d| d.target_replicas), Some(3));
        let s = state(3, &[("cpu.upper", "0.8"), ("cpu.lower", "0.2"), ("step", "5")]);
        assert_eq!(decide(&event(Metric::Cpu, 0.9), &s).map(|d| d.target_replicas), Some(4));
    }

    #[test]
    fn other_metrics_use_their_own_band_and_units() {
        let s = state(1, &[("memory.upper", "256Mi"), ("memory.lower", "64Mi")]);
        let mut e = event(Metric::Memory, 300.0 * 1024.0 * 1024.0);
        e.unit = Unit::Bytes;
        assert_eq!(decide(&e, &s).map(|d| d.target_replicas), Some(2));
        // No connections band configured: ignored.
        assert_eq!(decide(&event(Metric::Connections, 1e6), &s), None);
    }

    #[test]
    fn inverted_or_malformed_band_is_ignored() {
        let inverted = state(2, &[("cpu.upper", "0.2"), ("cpu.lower", "0.8")]);
        assert_eq!(decide(&event(Metric::Cpu, 0.95), &inverted), None);
        let malformed = state(2, &[("cpu.upper", "high"), ("cpu.lower", "0.2")]);
        assert_eq!(decide(&event(Metric::Cpu, 0.95), &malformed), None);
    }
}
