//! The settings the tools (`host replay --label`, `host policy run`'s
//! `labels`) give a policy, judged as the daemon judges a service's labels:
//! the same unknown-name check ([`labels::known::unknown_labels`],
//! with the name that was probably meant), the same value parsing
//! ([`crate::model::settings::resolve`]), the same `autoscale.` prefix
//! handling ([`labels::settings_of`]). Where the daemon only warns about a
//! label name nobody reads (a service keeps running), a tool refuses it:
//! it was typed for this run, and ignoring it would answer another question.
//!
//! [`effective`] says which labels a policy got and which it did not.

use std::collections::HashMap;

use crate::model::SettingSpec;
use crate::model::settings::parse_value;
use crate::policy::LoadedPolicy;
use crate::swarm::labels::known::{PolicyInfo, unknown_labels};
use crate::swarm::labels::{self, daemon_labels};

/// What the checks need of a loaded policy.
pub fn info(policy: &LoadedPolicy) -> PolicyInfo<'_> {
    PolicyInfo { name: policy.name(), contract: policy.contract_version(), specs: policy.settings() }
}

/// Labels as a tool got them, with or without the `autoscale.` prefix, as
/// the daemon's settings: without the prefix, sorted by name.
pub fn without_prefix(given: &[(String, String)]) -> Vec<(String, String)> {
    let full: HashMap<String, String> = given
        .iter()
        .map(|(k, v)| {
            let name = k.strip_prefix(labels::PREFIX).unwrap_or(k);
            (format!("{}{name}", labels::PREFIX), v.clone())
        })
        .collect();
    labels::settings_of(&full)
}

/// Every problem of labels given to a tool for `policy`, at once: names
/// neither the daemon nor the policy reads (with the closest known name),
/// and values that do not parse as the policy declares them. `given`
/// without the prefix.
pub fn problems(given: &[(String, String)], policy: PolicyInfo<'_>) -> Vec<String> {
    let mut found = unknown_labels(given, Some(policy));
    for (name, value) in given {
        if let Some(spec) = policy.specs.iter().find(|s| &s.name == name)
            && let Err(problem) = parse_value(spec.kind, value)
        {
            found.push(format!("label autoscale.{name}={value:?} {problem} (policy {})", policy.name));
        }
    }
    found
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Given on the command line (`--label`, `--state` labels).
    Given,
    /// Recorded in the trace.
    Recorded,
}

impl Source {
    fn word(self) -> &'static str {
        match self {
            Source::Given => "given",
            Source::Recorded => "recorded",
        }
    }
}

/// One line on what `policy` gets from `labels` (without the prefix, each
/// with where it came from): every declared setting with its value and
/// source (or its default), the daemon's own labels that were set, and
/// every label neither reads, said as not applied.
pub fn effective(labels: &[(String, String, Source)], policy: PolicyInfo<'_>) -> String {
    let find = |name: &str| labels.iter().rev().find(|(n, _, _)| n == name);
    let mut parts: Vec<String> = policy.specs.iter().map(|spec| declared(spec, find(&spec.name))).collect();
    if parts.is_empty() {
        parts.push(format!("policy {} declares no settings", policy.name));
    }
    let daemon = daemon_labels();
    let mut own = Vec::new();
    let mut ignored = Vec::new();
    for (name, value, source) in labels {
        if policy.specs.iter().any(|s| &s.name == name) || find(name).is_some_and(|(_, v, s)| v != value || s != source)
        {
            continue;
        }
        if daemon.iter().any(|d| d == name) {
            own.push(format!("{name}={value}"));
        } else {
            ignored.push(format!("{} autoscale.{name}={value}", source.word()));
        }
    }
    let mut line = format!("settings of policy {}: {}", policy.name, parts.join(", "));
    if !own.is_empty() {
        line.push_str(&format!("; daemon labels: {}", own.join(", ")));
    }
    if !ignored.is_empty() {
        line.push_str(&format!(
            "; not applied ({}): {}",
            if policy.contract == "0.1.0" { "a 0.1 policy declares nothing" } else { "not declared by the policy" },
            ignored.join(", ")
        ));
    }
    line
}

fn declared(spec: &SettingSpec, given: Option<&(String, String, Source)>) -> String {
    match (given, &spec.default) {
        (Some((_, value, source)), _) => format!("{}={value} ({})", spec.name, source.word()),
        (None, Some(default)) => format!("{}={default} (default)", spec.name),
        (None, None) => format!("{} unset", spec.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SettingType;

    fn spec(name: &str, default: Option<&str>) -> SettingSpec {
        SettingSpec {
            name: name.into(),
            kind: SettingType::Number,
            required: false,
            default: default.map(str::to_string),
            doc: "d".into(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_prefix_is_optional_and_stripped_as_the_daemon_does() {
        let given = pairs(&[("autoscale.cpu.target", "0.5"), ("quiet", "5s")]);
        assert_eq!(without_prefix(&given), pairs(&[("cpu.target", "0.5"), ("quiet", "5s")]));
    }

    #[test]
    fn undeclared_names_and_bad_values_are_problems() {
        let specs = [spec("cpu.target", Some("0.6"))];
        let policy = PolicyInfo { name: "prop", contract: "1.0.0", specs: &specs };
        let found = problems(&pairs(&[("cpu.targte", "0.5"), ("max", "4")]), policy);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("did you mean autoscale.cpu.target"), "{found:?}");
        let found = problems(&pairs(&[("cpu.target", "lots")]), policy);
        assert!(found[0].contains("is not a number"), "{found:?}");
        assert!(problems(&pairs(&[("cpu.target", "0.5"), ("cpu.upper", "0.8")]), policy).is_empty());
    }

    #[test]
    fn the_effective_settings_say_what_was_not_applied() {
        let specs = [spec("cpu.target", Some("0.6")), spec("quiet", None)];
        let policy = PolicyInfo { name: "prop", contract: "1.0.0", specs: &specs };
        let labels = vec![
            ("quiet".to_string(), "5".to_string(), Source::Recorded),
            ("cpu.upper".to_string(), "0.7".to_string(), Source::Recorded),
            ("flavour".to_string(), "2".to_string(), Source::Recorded),
            ("quiet".to_string(), "9".to_string(), Source::Given),
        ];
        let line = effective(&labels, policy);
        assert_eq!(
            line,
            "settings of policy prop: cpu.target=0.6 (default), quiet=9 (given); daemon labels: cpu.upper=0.7; \
             not applied (not declared by the policy): recorded autoscale.flavour=2"
        );
    }
}
