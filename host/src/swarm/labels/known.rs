//! Which `autoscale.*` label names are known: the daemon's own and those
//! a policy declares. The daemon's checks ([`crate::daemon::checks`]) warn
//! about the others; the tools (`host policy run`, `host replay`) refuse
//! them, with the same words.

use crate::model::SettingSpec;
use crate::model::settings::closest;
use crate::swarm::labels::daemon_labels;

/// The loaded policy a service names, as far as the checks need it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInfo<'a> {
    /// Its name (file stem).
    pub name: &'a str,
    /// The contract version it was built for.
    pub contract: &'a str,
    /// The settings it declares (empty for 0.1).
    pub specs: &'a [SettingSpec],
}

/// One warning per `autoscale.*` label name that neither the daemon nor the
/// policy reads, naming the closest known name. A 0.1 policy may read any
/// label, and an unloaded policy's names are unknown: then only names close
/// to one of the daemon's own are reported (those are typos either way).
pub fn unknown_labels(settings: &[(String, String)], policy: Option<PolicyInfo<'_>>) -> Vec<String> {
    let declares = policy.filter(|p| p.contract != "0.1.0");
    let daemon = daemon_labels();
    let mut known: Vec<&str> = daemon.iter().map(String::as_str).collect();
    if let Some(p) = declares {
        known.extend(p.specs.iter().map(|s| s.name.as_str()));
    }
    let mut warnings = Vec::new();
    for (label, _) in settings {
        if known.contains(&label.as_str()) {
            continue;
        }
        let near = closest(label, known.iter().copied());
        match (declares, near) {
            (Some(p), Some(near)) => warnings.push(format!(
                "label autoscale.{label} is not known to the daemon or policy {} (did you mean autoscale.{near}?)",
                p.name
            )),
            (Some(p), None) => warnings.push(format!(
                "label autoscale.{label} is not known to the daemon or policy {}, which reads none such",
                p.name
            )),
            (None, Some(near)) => warnings
                .push(format!("label autoscale.{label} is not known to the daemon (did you mean autoscale.{near}?)")),
            (None, None) => {}
        }
    }
    warnings
}
