//! __NAME__: a scaling policy for the Docker Swarm autoscaler (contract 1.0.0).
//!
//! The rule to start from: add a replica while the service's mean CPU is at
//! or above `cpu.upper`, remove one while it is at or below `cpu.lower`,
//! nothing in between. Change `settings` and `decide` to your rule.
//!
//! - build: `./build.sh` (leaves `__NAME__.wasm` here);
//! - test: `cargo test` runs the rule natively with the SDK's builders, and
//!   `./test.sh` runs the component through the daemon's runtime.

use autoscaler_sdk::{Decision, Event, Policy, SettingSpec, State, export_policy};

/// The exported policy.
pub struct Rule;

impl Policy for Rule {
    fn settings() -> Vec<SettingSpec> {
        vec![
            SettingSpec::number("cpu.upper")
                .default("0.8")
                .doc("mean CPU (fraction of the limit) at or above which a replica is added"),
            SettingSpec::number("cpu.lower")
                .default("0.3")
                .doc("mean CPU (fraction of the limit) at or below which a replica is removed"),
        ]
    }

    fn decide(_event: Event, state: State) -> Option<Decision> {
        // The service view: the mean over the replicas that report.
        let cpu = state.cpu().filter(|cpu| cpu.reporting > 0)?;
        // Demand past saturation (docs/demand.md): requests in flight and
        // waiting to be accepted, summed over the replicas; with it a rule
        // can ask for the count the load needs in one step:
        // let held = state.demand().unwrap_or(0.0); // also state.request_rate(), state.response_time(95)
        // let needed = (held / 10.0).ceil() as i64; // 10 per replica
        let (upper, lower) = (state.number("cpu.upper")?, state.number("cpu.lower")?);
        let current = state.current_replicas;
        let mean = cpu.value.mean;
        let target = if mean >= upper {
            state.clamp(i64::from(current) + 1)
        } else if mean <= lower {
            state.clamp(i64::from(current) - 1)
        } else {
            return None;
        };
        let also = state.demand().map(|held| format!(" (demand {held})")).unwrap_or_default();
        (target != current).then(|| Decision::scale(target, format!("mean cpu {mean:.2}: {current} -> {target}{also}")))
    }
}

export_policy!(Rule);

#[cfg(test)]
mod tests {
    use autoscaler_sdk::testing::{EventBuilder, StateBuilder};

    use super::*;

    fn decide(cpu: &[f64], labels: &[(&str, &str)]) -> Option<u32> {
        let mut state = StateBuilder::new().replicas(2, 1, 5).cpu(cpu);
        for (name, value) in labels {
            state = state.label(name, value);
        }
        Rule::decide(EventBuilder::cpu(cpu[0]).build(), state.build_for::<Rule>()).and_then(|d| d.target())
    }

    #[test]
    fn a_hot_service_gets_a_replica() {
        assert_eq!(decide(&[0.85, 0.95], &[]), Some(3));
    }

    #[test]
    fn a_warm_service_is_left_alone() {
        assert_eq!(decide(&[0.45, 0.55], &[]), None);
    }

    #[test]
    fn a_cold_service_loses_a_replica() {
        assert_eq!(decide(&[0.05, 0.15], &[]), Some(1));
    }

    #[test]
    fn labels_move_the_thresholds() {
        assert_eq!(decide(&[0.85, 0.95], &[("cpu.upper", "0.95")]), None);
    }
}
