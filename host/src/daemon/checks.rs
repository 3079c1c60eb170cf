//! Everything wrong with one service's labels, found at once and said in
//! one line.
//!
//! The label parser (`swarm/labels.rs`) knows the daemon's own labels; the
//! policy's declaration (contract 0.2 and later) knows the settings it
//! reads; the policies folder knows which policies exist. This module puts the three
//! together: a misspelt policy name, a malformed bound and an unknown label
//! name come out in the same line, each with the name that was probably
//! meant, instead of one round of fixes each. Pure: the event loop gives it
//! what it knows and logs the line it returns.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::SettingValue;
use crate::model::settings::{closest, resolve};
use crate::swarm::ServiceConfig;
pub use crate::swarm::labels::known::{PolicyInfo, unknown_labels};
use crate::swarm::labels::{LabelError, ZeroMode};

/// What the policies folder holds, as far as the checks need it.
#[derive(Debug, Clone, Copy)]
pub struct Folder<'a> {
    /// The name of every loaded policy.
    pub loaded: &'a [String],
    /// Why a policy that is not loaded is not (its file was refused or
    /// deleted), by name; a name missing here never had a file.
    pub not_loaded: &'a HashMap<String, String>,
}

/// The result of checking one service.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// What keeps the service from being autoscaled, one phrase each.
    pub problems: Vec<String>,
    /// What is odd but does not stop it: unknown label names.
    pub warnings: Vec<String>,
    /// The settings typed for the policy, when the labels fit it.
    pub typed: Option<Arc<[Option<SettingValue>]>>,
}

impl Findings {
    /// Whether the daemon can decide for the service.
    pub fn autoscaled(&self) -> bool {
        self.problems.is_empty() && self.typed.is_some()
    }
}

/// Check a service: `errors` from its labels (empty when they parsed),
/// `settings` its `autoscale.*` labels without the prefix, `policy` the
/// loaded policy it names (if it names a loaded one), `folder` what the
/// policies folder holds.
pub fn check(
    errors: &[LabelError],
    settings: &[(String, String)],
    policy: Option<PolicyInfo<'_>>,
    folder: &Folder<'_>,
) -> Findings {
    let mut findings = Findings { problems: errors.iter().map(LabelError::short).collect(), ..Findings::default() };
    let named = settings.iter().find(|(k, _)| k == "policy").map(|(_, v)| v.as_str());
    match (named, policy) {
        (Some(name), None) if !name.is_empty() && !errors.iter().any(|e| e.label == "autoscale.policy") => {
            findings.problems.push(not_loaded(name, folder));
        }
        (_, Some(info)) => match resolve(info.specs, settings) {
            Ok(values) if errors.is_empty() => findings.typed = Some(Arc::from(values)),
            Ok(_) => {}
            Err(found) => findings.problems.extend(found.iter().map(|p| format!("label {p}"))),
        },
        _ => {}
    }
    findings.warnings = unknown_labels(settings, policy);
    findings
}

/// `policy thresold is not loaded (did you mean threshold?)`, or why its
/// file did not load.
pub fn not_loaded(name: &str, folder: &Folder<'_>) -> String {
    let loaded = folder.loaded;
    if let Some(why) = folder.not_loaded.get(name) {
        return format!("policy {name} is not loaded ({why})");
    }
    match closest(name, loaded.iter().map(String::as_str)) {
        Some(near) => format!("policy {name} is not loaded (did you mean {near}?)"),
        None if loaded.is_empty() => {
            format!("policy {name} is not loaded (no policy is; add {name}.wasm to the policies folder)")
        }
        None => format!(
            "policy {name} is not loaded (no {name}.wasm in the policies folder; loaded: {})",
            loaded.join(", ")
        ),
    }
}

/// The one line logged for a service: whether it is autoscaled, and every
/// finding. `Ok`: autoscaled (warnings may follow); `Err`: it is not.
pub fn line(
    service: &str,
    config: Option<&ServiceConfig>,
    version: Option<&str>,
    findings: &Findings,
) -> Result<String, String> {
    let mut found: Vec<&str> = findings.problems.iter().map(String::as_str).collect();
    found.extend(findings.warnings.iter().map(String::as_str));
    match config {
        Some(config) if findings.autoscaled() => {
            let t = &config.thresholds;
            let version = version.map(|v| format!(" (version {v})")).unwrap_or_default();
            let mut text = format!(
                "service {service} autoscaled by policy {}{version} within {}..={} replicas ({t})",
                config.policy, config.min, config.max
            );
            if let Some(zero) = config.zero {
                let idle = crate::units::human_duration(zero.idle);
                match zero.mode {
                    ZeroMode::Freeze => text.push_str(&format!(", frozen at zero after {idle} idle")),
                    ZeroMode::Remove => {
                        let ports: Vec<String> = config.ports.iter().map(u16::to_string).collect();
                        text.push_str(&format!(", removed at zero after {idle} idle (port {})", ports.join(", ")));
                    }
                }
            }
            if !found.is_empty() {
                text.push_str("; but ");
                text.push_str(&found.join("; "));
            }
            Ok(text)
        }
        _ => Err(format!("service {service} is not autoscaled: {}", found.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SettingSpec, SettingType};

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn spec(name: &str) -> SettingSpec {
        SettingSpec { name: name.into(), kind: SettingType::Number, required: false, default: None, doc: "d".into() }
    }

    #[test]
    fn a_misspelt_policy_is_named_beside_the_other_problems() {
        let error = LabelError {
            service: "web".into(),
            label: "autoscale.max".into(),
            value: Some("lots".into()),
            problem: "is not a whole number of replicas".into(),
        };
        let settings = pairs(&[("policy", "thresold"), ("max", "lots"), ("cpu.uper", "0.8")]);
        let loaded = vec!["threshold".to_string(), "proportional".to_string()];
        let f = check(&[error], &settings, None, &Folder { loaded: &loaded, not_loaded: &HashMap::new() });
        assert!(!f.autoscaled());
        let text = line("web", None, None, &f).expect_err("not autoscaled");
        assert_eq!(
            text,
            "service web is not autoscaled: label autoscale.max=\"lots\" is not a whole number of replicas; \
             policy thresold is not loaded (did you mean threshold?); \
             label autoscale.cpu.uper is not known to the daemon (did you mean autoscale.cpu.upper?)"
        );
    }

    #[test]
    fn unknown_names_are_checked_against_the_policy_declaration() {
        let specs = [spec("target"), spec("aggregate")];
        let info = PolicyInfo { name: "proportional", contract: "0.2.0", specs: &specs };
        let w = unknown_labels(&pairs(&[("targte", "1"), ("zzz.qqq", "1"), ("target", "1"), ("min", "1")]), Some(info));
        assert_eq!(
            w,
            [
                "label autoscale.targte is not known to the daemon or policy proportional (did you mean autoscale.target?)",
                "label autoscale.zzz.qqq is not known to the daemon or policy proportional, which reads none such",
            ]
        );
        // A 0.1 policy reads any label: only near-daemon names are flagged.
        let old = PolicyInfo { name: "legacy", contract: "0.1.0", specs: &[] };
        assert_eq!(unknown_labels(&pairs(&[("zzz.qqq", "1")]), Some(old)), Vec::<String>::new());
    }

    #[test]
    fn not_loaded_says_what_is() {
        let none = HashMap::new();
        let empty = Folder { loaded: &[], not_loaded: &none };
        assert_eq!(not_loaded("x", &empty), "policy x is not loaded (no policy is; add x.wasm to the policies folder)");
        let loaded = ["threshold".to_string()];
        assert_eq!(
            not_loaded("zzzzzzzz", &Folder { loaded: &loaded, not_loaded: &none }),
            "policy zzzzzzzz is not loaded (no zzzzzzzz.wasm in the policies folder; loaded: threshold)"
        );
        // A file that was there and went, or was refused, says so instead.
        let why =
            HashMap::from([("thresholds".to_string(), "thresholds.wasm was refused: not a component".to_string())]);
        assert_eq!(
            not_loaded("thresholds", &Folder { loaded: &loaded, not_loaded: &why }),
            "policy thresholds is not loaded (thresholds.wasm was refused: not a component)"
        );
    }
}
