//! Settings a policy declares, checked against a
//! service's `autoscale.*` labels.
//!
//! [`resolve`] turns the labels of a service into the typed values its policy
//! receives, in the policy's declared order, and reports every problem at
//! once: a required setting missing, a value that does not parse as the
//! declared type, a default that does not parse (the policy's own bug). Names
//! no one knows are reported by the caller, which knows the daemon's own
//! labels too; [`closest`] suggests the name that was probably meant.

use super::contract::{SettingSpec, SettingType, SettingValue};
use crate::units;

/// One setting that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The setting's name (the label without `autoscale.`).
    pub name: String,
    /// What is wrong, lowercase, naming the expected form.
    pub problem: String,
}

impl std::fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "autoscale.{} {}", self.name, self.problem)
    }
}

/// Parse one value as `kind`.
pub fn parse_value(kind: SettingType, text: &str) -> Result<SettingValue, String> {
    match kind {
        SettingType::Number => {
            units::parse_number(text).map(SettingValue::Number).ok_or_else(|| "is not a number (e.g. 0.8)".to_string())
        }
        SettingType::Quantity => units::parse_quantity(text)
            .map(SettingValue::Number)
            .ok_or_else(|| "is not a quantity (e.g. 0.8, 2k, 1.5G, 512Mi, or Docker's 512MB, 512m, 1g)".to_string()),
        SettingType::Duration => units::parse_duration(text)
            .map(|d| SettingValue::DurationNs(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))),
        SettingType::Flag => units::parse_bool(text)
            .map(SettingValue::Flag)
            .ok_or_else(|| format!("is not a flag; write {}", units::BOOL_FORMS)),
        SettingType::Text => Ok(SettingValue::Text(text.to_string())),
    }
}

/// The values of `specs` read from `settings` (label name without the
/// prefix -> value), in declared order; every problem at once otherwise.
pub fn resolve(
    specs: &[SettingSpec],
    settings: &[(String, String)],
) -> Result<Vec<Option<SettingValue>>, Vec<SettingProblem>> {
    let mut values = Vec::with_capacity(specs.len());
    let mut problems = Vec::new();
    for spec in specs {
        let given = settings.iter().find(|(name, _)| *name == spec.name).map(|(_, v)| v.as_str());
        let value = match (given, spec.default.as_deref()) {
            (Some(text), _) => match parse_value(spec.kind, text) {
                Ok(value) => Some(value),
                Err(problem) => {
                    problems.push(SettingProblem { name: spec.name.clone(), problem: format!("={text:?} {problem}") });
                    None
                }
            },
            (None, Some(default)) => match parse_value(spec.kind, default) {
                Ok(value) => Some(value),
                Err(problem) => {
                    problems.push(SettingProblem {
                        name: spec.name.clone(),
                        problem: format!("has a default {default:?} in the policy that {problem}; fix the policy"),
                    });
                    None
                }
            },
            (None, None) if spec.required => {
                problems.push(SettingProblem {
                    name: spec.name.clone(),
                    problem: format!("is missing; the policy requires it ({}: {})", spec.kind.name(), spec.doc),
                });
                None
            }
            (None, None) => None,
        };
        values.push(value);
    }
    if problems.is_empty() { Ok(values) } else { Err(problems) }
}

/// The known name closest to `name`, if one is close enough to be a typo
/// (edit distance at most 2, or a third of the name for long names).
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: SettingType, required: bool, default: Option<&str>) -> SettingSpec {
        SettingSpec { name: name.into(), kind, required, default: default.map(Into::into), doc: "doc".into() }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_come_in_declared_order_with_defaults() {
        let specs = [
            spec("cpu.upper", SettingType::Quantity, false, None),
            spec("step", SettingType::Number, false, Some("1")),
            spec("window", SettingType::Duration, false, Some("30s")),
            spec("aggregate", SettingType::Text, false, Some("mean")),
            spec("strict", SettingType::Flag, false, None),
        ];
        let values = resolve(&specs, &labels(&[("strict", "yes"), ("cpu.upper", "512Mi")])).expect("valid");
        assert_eq!(
            values,
            vec![
                Some(SettingValue::Number(512.0 * 1024.0 * 1024.0)),
                Some(SettingValue::Number(1.0)),
                Some(SettingValue::DurationNs(30_000_000_000)),
                Some(SettingValue::Text("mean".into())),
                Some(SettingValue::Flag(true)),
            ]
        );
        assert_eq!(resolve(&specs, &[]).expect("all optional")[0], None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let specs = [
            spec("target", SettingType::Number, true, None),
            spec("step", SettingType::Number, false, Some("one")),
            spec("window", SettingType::Duration, false, None),
        ];
        let problems = resolve(&specs, &labels(&[("window", "30")])).expect_err("three problems");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(text[0].starts_with("autoscale.target is missing"), "{}", text[0]);
        assert!(text[1].contains("default \"one\"") && text[1].contains("fix the policy"), "{}", text[1]);
        assert!(text[2].contains("\"30\" has no unit"), "{}", text[2]);
    }

    #[test]
    fn typos_find_their_closest_name() {
        let known = ["cpu.upper", "cpu.lower", "enable", "policy", "threshold"];
        assert_eq!(closest("cpu.uper", known), Some("cpu.upper"));
        assert_eq!(closest("enabled", known), Some("enable"));
        assert_eq!(closest("thresold", known), Some("threshold"));
        assert_eq!(closest("memory.upper", known), None);
    }
}
