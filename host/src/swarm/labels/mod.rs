//! Service labels: how a Swarm service opts in to autoscaling and what it
//! asks for.
//!
//! A service opts in with `autoscale.enable=true` and must then name its
//! policy and bounds (`autoscale.policy`, `autoscale.min`, `autoscale.max`).
//! Optional, checked here because the daemon itself uses them:
//! - `autoscale.<metric>.upper` / `.lower` for every metric of the table
//!   ([`crate::model::METRICS`]: `cpu` as a fraction of the container's CPU
//!   limit, or cores without one, `memory` in bytes with `k`, `M`, `G`,
//!   `T`, `Ki`, `Mi`, `Gi`, `Ti` suffixes and Docker's own `512m`, `512MB`,
//!   `1g`, read as Docker reads them, in powers of 1024, `connections` as
//!   open connections per container; docs/metrics.md lists them all): the
//!   thresholds the probes push crossings of, parsed in [`thresholds`];
//! - `autoscale.cooldown.up` / `.down` (`30s`, `500ms`, `2m`, or `0`);
//! - `autoscale.step.max`: most replicas added or removed by one update;
//! - `autoscale.rate.up` (`100%`, `4`, `100%,4` or `none`) per
//!   `autoscale.rate.period` (default 15s): a scale-up rate limit in the
//!   HPA's style ([`UpRate`]);
//! - `autoscale.stabilization.down` (a duration): scale down no lower than
//!   the highest count the policy asked for (or kept) within it, the HPA's
//!   scale-down stabilisation window;
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

use crate::model::Thresholds;
use crate::units::{parse_bool, parse_duration};

pub mod known;
mod rate;
mod thresholds;

pub use rate::{DEFAULT_RATE_PERIOD, UpRate};

/// The prefix of every autoscaling label.
pub const PREFIX: &str = "autoscale.";

/// How long a new replica warms up before it counts in the service view.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(10);

/// Every label the daemon itself reads, without the prefix, besides each
/// metric's `<name>.upper`, `.lower` and `.target` ([`daemon_labels`] has
/// them all).
const OWN_LABELS: &[&str] = &[
    "enable",
    "policy",
    "min",
    "max",
    "tolerance",
    "cooldown.up",
    "cooldown.down",
    "step.max",
    "rate.up",
    "rate.period",
    "stabilization.down",
    "warmup",
    "idle",
    "zero",
    "port",
];

/// Every label the daemon itself reads, without the prefix: its own and
/// each metric's of the table. The service's policy may declare more; any other
/// `autoscale.*` label is probably a typo.
pub fn daemon_labels() -> Vec<String> {
    let mut labels: Vec<String> = OWN_LABELS.iter().map(|l| l.to_string()).collect();
    labels.extend(crate::model::METRICS.iter().flat_map(|def| crate::model::metrics::Edge::ALL.map(|e| def.label(e))));
    labels
}

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
    /// `autoscale.rate.up` over `autoscale.rate.period`; `None`: the
    /// daemon's default.
    pub rate_up: Option<UpRate>,
    /// `autoscale.rate.period` alone, for the daemon's default rate.
    pub rate_period: Option<Duration>,
    /// `autoscale.stabilization.down`; `None`: the daemon's default.
    pub stabilization_down: Option<Duration>,
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

    let thresholds = thresholds::parse(labels, &mut fail);

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
    let stabilization_down = cooldown("stabilization.down");
    let rate_period = cooldown("rate.period");
    if rate_period == Some(Duration::ZERO) {
        fail("autoscale.rate.period", get("rate.period"), "must be longer than 0 (15s is the HPA's)");
    }
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

    let rate_up = get("rate.up").and_then(|value| {
        UpRate::parse(value, rate_period.unwrap_or(DEFAULT_RATE_PERIOD))
            .map_err(|problem| fail("autoscale.rate.up", Some(value), &problem))
            .ok()
    });

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
        rate_up,
        rate_period,
        stabilization_down,
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
mod tests;
