//! Service labels: how a Swarm service opts in to autoscaling and what it
//! asks for.
//!
//! A service opts in with `autoscale.enable=true` and must then name its
//! policy and bounds (`autoscale.policy`, `autoscale.min`, `autoscale.max`).
//! Optional, checked here because the daemon itself uses them:
//! - `autoscale.<metric>.upper` / `.lower` for `cpu` (fraction of the
//!   container's CPU limit, or cores without one), `memory` (bytes; `k`, `M`,
//!   `G`, `T`, `Ki`, `Mi`, `Gi`, `Ti` suffixes, and Docker's own `512m`,
//!   `512MB`, `1g`, read as Docker reads them, in powers of 1024) and `connections` (open
//!   connections per container): the thresholds the probes push crossings of;
//! - `autoscale.cooldown.up` / `.down` (`30s`, `500ms`, `2m`, or `0`);
//! - `autoscale.step.max`: most replicas added or removed by one update;
//! - scale to zero: `autoscale.min=0` lets an idle service go to zero, kept
//!   as one frozen replica (`autoscale.zero=freeze`, the default) that the
//!   first connection wakes, or removed (`autoscale.zero=remove`: the spec
//!   goes to 0 replicas and the first connection attempt to the service's
//!   port, `autoscale.port` or the ports its spec publishes in host mode,
//!   scales it back to one); `autoscale.idle` (default 60s) is how long the
//!   service must be idle first. See [`ScaleToZero`] and [`resolve_ports`].
//!
//! Every `autoscale.*` label, known or not, reaches the policy as a setting
//! with the prefix removed (`autoscale.cpu.upper=0.8` -> `cpu.upper=0.8`).
//!
//! Invariant: this module only reads labels. A label that does not parse
//! yields a [`LabelError`] naming the service, the label and the value; the
//! caller logs it and leaves the service alone until its labels change.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::model::{Band, Thresholds};
use crate::units::{parse_bool, parse_duration, parse_number, parse_quantity};

/// The prefix of every autoscaling label.
pub const PREFIX: &str = "autoscale.";

/// How long a new replica warms up before it counts in the service view.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(10);

/// Every label the daemon itself reads, without the prefix. A bound policy
/// may declare more; any other `autoscale.*` label is probably a typo.
pub const DAEMON_LABELS: &[&str] = &[
    "enable",
    "policy",
    "min",
    "max",
    "cpu.upper",
    "cpu.lower",
    "memory.upper",
    "memory.lower",
    "connections.upper",
    "connections.lower",
    "cpu.target",
    "memory.target",
    "connections.target",
    "tolerance",
    "cooldown.up",
    "cooldown.down",
    "step.max",
    "warmup",
    "idle",
    "zero",
    "port",
];

/// Default `autoscale.idle`.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// How a service with `autoscale.min=0` goes to zero (`autoscale.zero`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroMode {
    /// `freeze` (default): the spec stays at one replica, which is frozen
    /// with Docker's pause (the cgroup freezer) and thawed by the kernel's
    /// wake event on its first connection. Memory stays allocated.
    Freeze,
    /// `remove`: the spec goes to 0 replicas; the kernel holds connection
    /// attempts to the service's ports ([`ServiceConfig::ports`]) and the
    /// first one scales it back to one replica through Swarm. Frees the
    /// memory; the first client waits for a new replica to start.
    Remove,
}

impl fmt::Display for ZeroMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZeroMode::Freeze => "freeze",
            ZeroMode::Remove => "remove",
        })
    }
}

/// What `autoscale.min=0` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleToZero {
    /// `autoscale.zero`.
    pub mode: ZeroMode,
    /// `autoscale.idle`: no connection and CPU below `cpu.lower` for this
    /// long, and the service goes to zero without a policy asking.
    pub idle: Duration,
}

/// Tolerance assumed when thresholds are derived from `<metric>.target`;
/// the same default as the shipped `proportional` policy (and Kubernetes).
const DEFAULT_TOLERANCE: f64 = 0.1;

/// What a service that opted in asked for, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `autoscale.policy`: the policy's name, i.e. the file stem of its
    /// `.wasm` in the policies folder.
    pub policy: String,
    /// `autoscale.min`: fewest replicas the daemon will scale to; 0 only
    /// with [`ServiceConfig::zero`] set, and then the spec still never goes
    /// below 1: zero is one frozen replica.
    pub min: u32,
    /// `autoscale.max`: most replicas the daemon will scale to (>= min).
    pub max: u32,
    /// Crossing thresholds the probe watches for this service's containers.
    pub thresholds: Thresholds,
    /// `autoscale.cooldown.up`; `None`: the daemon's default.
    pub cooldown_up: Option<Duration>,
    /// `autoscale.cooldown.down`; `None`: the daemon's default.
    pub cooldown_down: Option<Duration>,
    /// `autoscale.step.max`; `None`: no step limit.
    pub step_max: Option<u32>,
    /// `autoscale.warmup` (default 10s): a replica younger than this is
    /// counted apart and left out of the service view.
    pub warmup: Duration,
    /// `Some` when `autoscale.min=0`: how the service goes to zero.
    pub zero: Option<ScaleToZero>,
    /// The TCP ports clients connect to, sorted: `autoscale.port`, and the
    /// ports the spec publishes in host mode ([`resolve_ports`]). Used by
    /// `autoscale.zero=remove`, which needs at least one.
    pub ports: Vec<u16>,
    /// Every `autoscale.*` label without the prefix, sorted by key: the
    /// settings handed to the policy.
    pub settings: Vec<(String, String)>,
}

/// One label that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct LabelError {
    /// The service's name.
    pub service: String,
    /// The full label name (`autoscale.max`).
    pub label: String,
    /// The label's value; `None` when the label is missing.
    pub value: Option<String>,
    /// What is wrong and what is expected, lowercase.
    pub problem: String,
}

impl LabelError {
    /// The problem without the service's name, for a line that already
    /// names it: `label autoscale.max="lots" is not a whole number of replicas`.
    pub fn short(&self) -> String {
        match &self.value {
            Some(value) => format!("label {}={:?} {}", self.label, value, self.problem),
            None => format!("label {} is missing ({})", self.label, self.problem),
        }
    }

    fn describe(&self) -> String {
        match &self.value {
            Some(value) => format!(
                "service {}: label {}={:?} {}; the service is not scaled until the label is fixed",
                self.service, self.label, value, self.problem
            ),
            None => format!(
                "service {}: label {} is missing ({}); the service is not scaled until it is added",
                self.service, self.label, self.problem
            ),
        }
    }
}

/// Every problem found in one service's labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LabelErrors(pub Vec<LabelError>);

/// Every `autoscale.*` label without the prefix, sorted by name: what a
/// policy receives as settings, and what the daemon checks label names in.
pub fn settings_of(labels: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> =
        labels.iter().filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_string(), v.clone()))).collect();
    settings.sort();
    settings
}

/// Why a service that looks opted in is not: it has `autoscale.*` labels,
/// or a label close to `autoscale.enable`, but no `autoscale.enable` at all.
/// `None` for a service with no such labels, or with `autoscale.enable`
/// (true or false: a `false` is a deliberate choice).
pub fn not_opted_in(labels: &HashMap<String, String>) -> Option<String> {
    const SWITCH: &str = "autoscale.enable";
    if labels.contains_key(SWITCH) {
        return None;
    }
    let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
    names.sort_unstable();
    // A misspelt switch (`autoscale.enabled`, `autoscaler.enable`, `Autoscale.Enable`).
    if let Some(near) =
        names.iter().find(|name| crate::model::settings::edit_distance(&name.to_ascii_lowercase(), SWITCH) <= 2)
    {
        let value = labels.get(*near).map(String::as_str).unwrap_or_default();
        return Some(format!("it has the label {near}={value:?} but not {SWITCH}=true (did you mean {SWITCH}?)"));
    }
    let ours: Vec<&str> = names.iter().copied().filter(|n| n.starts_with(PREFIX)).collect();
    if ours.is_empty() {
        return None;
    }
    let shown: Vec<&str> = ours.iter().copied().take(3).collect();
    let more = if ours.len() > shown.len() { format!(" and {} more", ours.len() - shown.len()) } else { String::new() };
    Some(format!("it has autoscale labels ({}{more}) but not {SWITCH}=true", shown.join(", ")))
}

/// Parse a service's labels. `Ok(None)`: the service did not opt in
/// (`autoscale.enable` missing or false). `Err`: it opted in, but some
/// labels are missing or malformed; each error names its label.
pub fn parse(service: &str, labels: &HashMap<String, String>) -> Result<Option<ServiceConfig>, LabelErrors> {
    let mut errors = Vec::new();
    let mut fail = |label: &str, value: Option<&str>, problem: &str| {
        errors.push(LabelError {
            service: service.to_string(),
            label: label.to_string(),
            value: value.map(str::to_string),
            problem: problem.to_string(),
        });
    };
    let get = |key: &str| labels.get(&format!("{PREFIX}{key}")).map(String::as_str);

    match get("enable").map(|v| parse_bool(v).ok_or(v)) {
        None | Some(Ok(false)) => return Ok(None),
        Some(Ok(true)) => {}
        Some(Err(value)) => {
            fail("autoscale.enable", Some(value), "is not true or false");
            return Err(LabelErrors(errors));
        }
    }

    let policy = match get("policy") {
        None => {
            fail("autoscale.policy", None, "name the policy, the file stem of a .wasm in the policies folder");
            String::new()
        }
        Some(name) if is_policy_name(name) => name.to_string(),
        Some(name) => {
            fail("autoscale.policy", Some(name), "is not a policy name (letters, digits, '-', '_', '.')");
            String::new()
        }
    };

    let mut replicas = |key: &str| match get(key) {
        None => {
            fail(&format!("{PREFIX}{key}"), None, "a whole number of replicas, at least 1");
            None
        }
        Some(value) => match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 || key == "min" => Some(n),
            Ok(_) => {
                fail(
                    &format!("{PREFIX}{key}"),
                    Some(value),
                    "must be at least 1 (autoscale.min=0 is how a service scales to zero)",
                );
                None
            }
            Err(_) => {
                fail(&format!("{PREFIX}{key}"), Some(value), "is not a whole number of replicas");
                None
            }
        },
    };
    let min = replicas("min");
    let max = replicas("max");
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        let value = get("max").unwrap_or_default();
        fail("autoscale.max", Some(value), &format!("is below autoscale.min={lo}"));
    }

    let mut band = |metric: &str, parse_value: fn(&str) -> Option<f64>| {
        let mut side = |edge: &str| {
            let label = format!("{PREFIX}{metric}.{edge}");
            let value = labels.get(&label)?;
            match parse_value(value) {
                Some(v) if v >= 0.0 => Some(v),
                _ => {
                    fail(&label, Some(value), unit_hint(metric));
                    None
                }
            }
        };
        let (upper, lower) = (side("upper"), side("lower"));
        if let (Some(up), Some(low)) = (upper, lower)
            && low >= up
        {
            let label = format!("{PREFIX}{metric}.lower");
            let value = labels.get(&label).map(String::as_str);
            fail(&label, value, &format!("must be below {metric}.upper={up}"));
        }
        Band { upper, lower }
    };
    let mut thresholds = Thresholds {
        cpu: band("cpu", parse_number),
        memory: band("memory", parse_quantity),
        connections: band("connections", parse_number),
        ..Default::default()
    };
    derive_bands_from_targets(labels, &mut thresholds);

    let mut cooldown = |key: &str| {
        let label = format!("{PREFIX}{key}");
        let value = labels.get(&label)?;
        match parse_duration(value) {
            Ok(d) => Some(d),
            Err(problem) => {
                fail(&label, Some(value), &problem);
                None
            }
        }
    };
    let cooldown_up = cooldown("cooldown.up");
    let cooldown_down = cooldown("cooldown.down");
    let warmup = cooldown("warmup").unwrap_or(DEFAULT_WARMUP);

    let idle = cooldown("idle");
    let zero_mode = match get("zero").map(|v| v.trim().to_ascii_lowercase()) {
        None => Some(ZeroMode::Freeze),
        Some(v) if v == "freeze" => Some(ZeroMode::Freeze),
        Some(v) if v == "remove" => Some(ZeroMode::Remove),
        Some(_) => {
            let value = get("zero").unwrap_or_default();
            fail("autoscale.zero", Some(value), "is not a way to scale to zero (freeze or remove)");
            None
        }
    };
    let port = match get("port") {
        None => None,
        Some(value) => match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                fail("autoscale.port", Some(value), "is not a TCP port (1-65535)");
                None
            }
        },
    };
    if let Some(idle) = idle
        && idle < Duration::from_secs(1)
    {
        let value = get("idle").unwrap_or_default();
        fail("autoscale.idle", Some(value), &format!("is {idle:?}, below the least idle time of 1s"));
    }
    let zero = match (min, zero_mode) {
        (Some(0), Some(mode)) => Some(ScaleToZero { mode, idle: idle.unwrap_or(DEFAULT_IDLE) }),
        _ => None,
    };

    let step_max = match get("step.max") {
        None => None,
        Some(value) => match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                fail("autoscale.step.max", Some(value), "is not a whole number of replicas, at least 1");
                None
            }
        },
    };

    if !errors.is_empty() {
        return Err(LabelErrors(errors));
    }
    let settings = settings_of(labels);
    // Both are `Some` here: a `None` always pushed an error above.
    let (Some(min), Some(max)) = (min, max) else { return Err(LabelErrors(errors)) };
    Ok(Some(ServiceConfig {
        policy,
        min,
        max,
        thresholds,
        cooldown_up,
        cooldown_down,
        step_max,
        warmup,
        zero,
        ports: port.into_iter().collect(),
        settings,
    }))
}

/// A port a service's spec publishes (`EndpointSpec.Ports`), TCP only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The published port.
    pub port: u16,
    /// Published in host mode (on the node running the task) rather than
    /// through the ingress routing mesh.
    pub host_mode: bool,
}

/// Add the ports the spec publishes in host mode to
/// [`ServiceConfig::ports`], and check that `autoscale.zero=remove` has a
/// port to hold. A port published through the ingress routing mesh is no
/// use: IPVS takes its connections before any socket of this node, so the
/// kernel can neither see a replica listen on it nor tell that none does.
pub fn resolve_ports(service: &str, config: &mut ServiceConfig, published: &[Published]) -> Result<(), LabelError> {
    config.ports.extend(published.iter().filter(|p| p.host_mode).map(|p| p.port));
    config.ports.sort_unstable();
    config.ports.dedup();
    let removes = config.zero.is_some_and(|z| z.mode == ZeroMode::Remove);
    if !removes || !config.ports.is_empty() {
        return Ok(());
    }
    let ingress: Vec<String> = published.iter().map(|p| p.port.to_string()).collect();
    let problem = if ingress.is_empty() {
        "name the TCP port clients connect to: autoscale.zero=remove holds connection attempts to it while the service has no replica (or publish it in host mode)".to_string()
    } else {
        format!(
            "name the TCP port clients connect to: the service publishes {} through the ingress routing mesh, where the kernel cannot hold a connection for a removed replica (publish in host mode, or use autoscale.zero=freeze)",
            ingress.join(", ")
        )
    };
    Err(LabelError { service: service.to_string(), label: "autoscale.port".into(), value: None, problem })
}

/// A metric watched through a `<metric>.target` (the `proportional` policy's
/// setting) but without explicit thresholds gets the band
/// `target * (1 ± tolerance)`, so its containers still push a crossing the
/// moment the policy would act, instead of waiting for the next sample.
fn derive_bands_from_targets(labels: &HashMap<String, String>, thresholds: &mut Thresholds) {
    let tolerance = labels
        .get(&format!("{PREFIX}tolerance"))
        .and_then(|t| parse_number(t))
        .filter(|t| (0.0..1.0).contains(t))
        .unwrap_or(DEFAULT_TOLERANCE);
    type Parse = fn(&str) -> Option<f64>;
    let bands: [(&str, &mut Band, Parse); 3] = [
        ("cpu", &mut thresholds.cpu, parse_number),
        ("memory", &mut thresholds.memory, parse_quantity),
        ("connections", &mut thresholds.connections, parse_number),
    ];
    for (metric, band, parse_value) in bands {
        if band.upper.is_some() || band.lower.is_some() {
            continue;
        }
        let target = labels.get(&format!("{PREFIX}{metric}.target")).and_then(|t| parse_value(t));
        if let Some(target) = target.filter(|t| *t > 0.0) {
            *band = Band { upper: Some(target * (1.0 + tolerance)), lower: Some(target * (1.0 - tolerance)) };
        }
    }
}

fn unit_hint(metric: &str) -> &'static str {
    match metric {
        "cpu" => "is not a non-negative number (a fraction of the CPU limit, or cores without one, e.g. 0.8)",
        "memory" => "is not a non-negative size in bytes (e.g. 268435456, 256Mi, 256MB, 256m, 1G)",
        _ => "is not a non-negative number of open connections",
    }
}

fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl fmt::Display for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {} replicas {}..={}", self.policy, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "5"),
    ];

    fn with(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut l = labels(BASE);
        for (k, v) in extra {
            l.insert(k.to_string(), v.to_string());
        }
        l
    }

    fn errors(result: Result<Option<ServiceConfig>, LabelErrors>) -> Vec<LabelError> {
        match result {
            Err(LabelErrors(errors)) => errors,
            Ok(config) => panic!("expected label errors, got {config:?}"),
        }
    }

    #[test]
    fn services_without_enable_or_with_false_are_left_alone() {
        assert_eq!(parse("web", &labels(&[])), Ok(None));
        assert_eq!(parse("web", &labels(&[("autoscale.policy", "threshold"), ("other", "x")])), Ok(None));
        assert_eq!(parse("web", &with(&[("autoscale.enable", "false")])), Ok(None));
    }

    #[test]
    fn services_that_look_opted_in_are_told_why_they_are_not() {
        let mut typo = with(&[]);
        typo.remove("autoscale.enable");
        typo.insert("autoscale.enabled".into(), "true".into());
        assert_eq!(parse("web", &typo), Ok(None));
        assert_eq!(
            not_opted_in(&typo).as_deref(),
            Some(
                "it has the label autoscale.enabled=\"true\" but not autoscale.enable=true (did you mean autoscale.enable?)"
            )
        );
        let mut other = labels(&[("autoscaler.enable", "yes")]);
        assert!(not_opted_in(&other).is_some_and(|r| r.contains("autoscaler.enable")));
        other = labels(&[
            ("autoscale.policy", "threshold"),
            ("autoscale.min", "1"),
            ("autoscale.max", "3"),
            ("autoscale.cpu.upper", "1"),
        ]);
        assert_eq!(
            not_opted_in(&other).as_deref(),
            Some(
                "it has autoscale labels (autoscale.cpu.upper, autoscale.max, autoscale.min and 1 more) but not autoscale.enable=true"
            )
        );
        assert_eq!(not_opted_in(&with(&[("autoscale.enable", "false")])), None, "false is a choice");
        assert_eq!(not_opted_in(&labels(&[("com.example", "x")])), None);
    }

    #[test]
    fn a_complete_service_parses() {
        let config = parse(
            "web",
            &with(&[
                ("autoscale.cpu.upper", "0.8"),
                ("autoscale.cpu.lower", "0.2"),
                ("autoscale.memory.upper", "256Mi"),
                ("autoscale.connections.upper", "100"),
                ("autoscale.cooldown.up", "5s"),
                ("autoscale.cooldown.down", "2m"),
                ("autoscale.step.max", "2"),
                ("autoscale.custom.knob", "anything"),
                ("com.example.unrelated", "x"),
            ]),
        )
        .expect("valid labels")
        .expect("opted in");
        assert_eq!(config.policy, "threshold");
        assert_eq!((config.min, config.max), (1, 5));
        assert_eq!(config.thresholds.cpu, Band { upper: Some(0.8), lower: Some(0.2) });
        assert_eq!(config.thresholds.memory, Band { upper: Some(256.0 * 1024.0 * 1024.0), lower: None });
        assert_eq!(config.thresholds.connections, Band { upper: Some(100.0), lower: None });
        assert_eq!(config.cooldown_up, Some(Duration::from_secs(5)));
        assert_eq!(config.cooldown_down, Some(Duration::from_secs(120)));
        assert_eq!(config.step_max, Some(2));
        // Every autoscale.* label reaches the policy, sorted, prefix removed;
        // other labels do not.
        let keys: Vec<&str> = config.settings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connections.upper",
                "cooldown.down",
                "cooldown.up",
                "cpu.lower",
                "cpu.upper",
                "custom.knob",
                "enable",
                "max",
                "memory.upper",
                "min",
                "policy",
                "step.max"
            ]
        );
        assert!(config.settings.contains(&("custom.knob".into(), "anything".into())));
    }

    #[test]
    fn missing_required_labels_are_each_named() {
        let errs = errors(parse("web", &labels(&[("autoscale.enable", "true")])));
        let named: Vec<&str> = errs.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(named, ["autoscale.policy", "autoscale.min", "autoscale.max"]);
        assert!(errs.iter().all(|e| e.value.is_none() && e.service == "web"));
        let text = errs[0].to_string();
        assert!(text.contains("service web") && text.contains("autoscale.policy is missing"), "{text}");
    }

    #[test]
    fn malformed_values_name_service_label_and_value() {
        let errs = errors(parse("api", &with(&[("autoscale.max", "lots")])));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].label, "autoscale.max");
        assert_eq!(errs[0].value.as_deref(), Some("lots"));
        let text = errs[0].to_string();
        assert!(text.contains("service api") && text.contains("autoscale.max=\"lots\""), "{text}");
        assert!(text.contains("not scaled until the label is fixed"), "{text}");

        for (label, value) in [
            ("autoscale.enable", "maybe"),
            ("autoscale.policy", "../etc/passwd"),
            ("autoscale.max", "0"),
            ("autoscale.min", "-1"),
            ("autoscale.zero", "delete"),
            ("autoscale.idle", "100ms"),
            ("autoscale.cpu.upper", "high"),
            ("autoscale.cpu.lower", "-0.5"),
            ("autoscale.memory.upper", "64XB"),
            ("autoscale.connections.lower", "NaN"),
            ("autoscale.cooldown.up", "30"),
            ("autoscale.cooldown.down", "soon"),
            ("autoscale.step.max", "0"),
        ] {
            let errs = errors(parse("api", &with(&[(label, value)])));
            assert!(
                errs.iter().any(|e| e.label == label && e.value.as_deref() == Some(value)),
                "{label}={value}: {errs:?}"
            );
        }
    }

    #[test]
    fn bounds_and_bands_must_be_ordered() {
        let errs = errors(parse("web", &with(&[("autoscale.min", "4"), ("autoscale.max", "2")])));
        assert_eq!(errs[0].label, "autoscale.max");
        assert!(errs[0].problem.contains("below autoscale.min=4"), "{}", errs[0].problem);
        let errs = errors(parse("web", &with(&[("autoscale.cpu.upper", "0.2"), ("autoscale.cpu.lower", "0.8")])));
        assert_eq!(errs[0].label, "autoscale.cpu.lower");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let errs = errors(parse(
            "web",
            &with(&[("autoscale.max", "x"), ("autoscale.cpu.upper", "y"), ("autoscale.step.max", "z")]),
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        let all = LabelErrors(errs).to_string();
        assert!(
            all.contains("autoscale.max") && all.contains("autoscale.cpu.upper") && all.contains("autoscale.step.max")
        );
    }

    #[test]
    fn targets_without_bands_derive_crossing_thresholds() {
        let config = parse("web", &with(&[("autoscale.cpu.target", "0.5"), ("autoscale.tolerance", "0.2")]))
            .expect("valid")
            .expect("opted in");
        let cpu = config.thresholds.cpu;
        assert!((cpu.upper.expect("upper") - 0.6).abs() < 1e-9);
        assert!((cpu.lower.expect("lower") - 0.4).abs() < 1e-9);
        // Explicit bands win over targets.
        let config = parse("web", &with(&[("autoscale.cpu.target", "0.5"), ("autoscale.cpu.upper", "0.9")]))
            .expect("valid")
            .expect("opted in");
        assert_eq!(config.thresholds.cpu, Band { upper: Some(0.9), lower: None });
    }

    #[test]
    fn min_zero_scales_to_a_frozen_replica() {
        let config = parse("web", &with(&[("autoscale.min", "0")])).expect("valid").expect("opted in");
        assert_eq!(config.min, 0);
        assert_eq!(config.zero, Some(ScaleToZero { mode: ZeroMode::Freeze, idle: DEFAULT_IDLE }));
        let config =
            parse("web", &with(&[("autoscale.min", "0"), ("autoscale.idle", "5s"), ("autoscale.zero", "freeze")]))
                .expect("valid")
                .expect("opted in");
        assert_eq!(config.zero.map(|z| z.idle), Some(Duration::from_secs(5)));
        // Without min=0 the zero labels change nothing.
        let config = parse("web", &with(&[("autoscale.idle", "5s")])).expect("valid").expect("opted in");
        assert_eq!(config.zero, None);
    }

    #[test]
    fn zero_by_removal_needs_a_port_from_a_label_or_a_host_mode_publication() {
        let remove = with(&[("autoscale.min", "0"), ("autoscale.zero", "remove"), ("autoscale.port", "8080")]);
        let mut config = parse("web", &remove).expect("valid").expect("opted in");
        assert_eq!(config.zero.map(|z| z.mode), Some(ZeroMode::Remove));
        assert_eq!(config.ports, [8080]);
        let published = [Published { port: 9090, host_mode: true }, Published { port: 8080, host_mode: true }];
        resolve_ports("web", &mut config, &published).expect("ports");
        assert_eq!(config.ports, [8080, 9090], "the label and the spec's host-mode ports, once each");

        let mut unlabelled = remove.clone();
        unlabelled.remove("autoscale.port");
        let mut config = parse("web", &unlabelled).expect("valid").expect("opted in");
        resolve_ports("web", &mut config.clone(), &[Published { port: 80, host_mode: true }]).expect("host mode");
        let err = resolve_ports("web", &mut config.clone(), &[]).expect_err("no port");
        assert_eq!(err.label, "autoscale.port");
        assert!(err.short().contains("autoscale.port is missing (name the TCP port"), "{}", err.short());
        let err = resolve_ports("web", &mut config, &[Published { port: 80, host_mode: false }]).expect_err("ingress");
        assert!(err.problem.contains("publishes 80 through the ingress routing mesh"), "{}", err.problem);
        // Freeze needs no port.
        let mut freeze = parse("web", &with(&[("autoscale.min", "0")])).expect("valid").expect("opted in");
        resolve_ports("web", &mut freeze, &[]).expect("freeze holds no port");
        for bad in ["0", "70000", "http"] {
            let errs = errors(parse("web", &with(&[("autoscale.port", bad)])));
            assert_eq!(errs[0].label, "autoscale.port", "{bad}");
        }
    }

    #[test]
    fn quantities_and_cooldowns() {
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity(" 2k "), Some(2000.0));
        assert_eq!(parse_quantity("64MB"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("512m"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1g"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("").is_err());
    }
}
