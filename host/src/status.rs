//! What the daemon knows about every service it looks at, for people:
//! `host status`, `GET /status` beside `/metrics`, and the per-service
//! Prometheus series.
//!
//! A leaf module like [`crate::metrics`]: the event loop writes a service's
//! configuration, problems and latest readings into the [`Board`], the
//! audit writes each decision's outcome, and the metrics endpoint reads a
//! snapshot. Writers hold the lock for a map lookup and a few assignments;
//! a reader never waits for a policy call or for Docker.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Stats;

mod text;
pub use text::{print, render_text, watch};

/// One metric of one service: the latest reading and the service view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetricStatus {
    /// `cpu`, `memory`, `connections`, ...
    pub metric: String,
    /// The unit of the values (WIT name).
    pub unit: String,
    /// The latest value any replica reported.
    pub latest: f64,
    /// The replica that reported it (short container id).
    pub latest_container: String,
    /// Wall-clock time of that reading, ms since the Unix epoch.
    pub latest_unix_ms: u64,
    /// The service aggregate the policy last decided on; `None` before the
    /// first decision.
    pub aggregate: Option<Stats>,
    /// Replicas counted in `aggregate`.
    pub reporting: u32,
    /// Replicas still warming up, left out of `aggregate`.
    pub warming: u32,
}

/// The outcome of the latest decision of a service's policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DecisionStatus {
    /// Wall-clock time, ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// `applied`, `dry-run`, `held`, `skipped` or `failed`.
    pub outcome: String,
    /// Replicas before, when read.
    pub from: Option<u32>,
    /// Replicas after the guardrails, when judged.
    pub to: Option<u32>,
    /// What the policy asked for (`None` for a hold).
    pub requested: Option<u32>,
    /// The policy's reason.
    pub reason: String,
    /// Why it was skipped or failed.
    pub skip: Option<String>,
    /// For a skip: how many of its kind since the service's last change.
    pub repeated: u64,
}

/// The last freeze, thaw or wake of a service at zero (`autoscale.min=0`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ZeroStatus {
    /// `frozen`, `woken`, `thawed`, `refused` or `failed`.
    pub state: String,
    /// Wall-clock time, ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// The replica (short container id).
    pub container: String,
    /// Why, in words.
    pub reason: String,
    /// Docker's pause or unpause, microseconds.
    pub docker_us: u64,
    /// For a wake: the kernel's connection to the unpause returning, us.
    pub wake_us: Option<u64>,
}

/// Everything `host status` shows about one service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceStatus {
    /// Service name.
    pub service: String,
    /// Swarm service id.
    pub id: String,
    /// Whether the daemon decides for it now.
    pub autoscaled: bool,
    /// `autoscale.policy`, when given.
    pub policy: Option<String>,
    /// The first 12 hex digits of the loaded policy's SHA-256.
    pub policy_version: Option<String>,
    /// The policy's contract version.
    pub contract: Option<String>,
    /// `autoscale.min`.
    pub min: Option<u32>,
    /// `autoscale.max`.
    pub max: Option<u32>,
    /// Replicas in the spec at the last read.
    pub current_replicas: Option<u32>,
    /// Replicas the last applied (or dry-run) decision set.
    pub desired_replicas: Option<u32>,
    /// One entry per metric measured.
    pub metrics: Vec<MetricStatus>,
    /// The latest decision's outcome.
    pub last_decision: Option<DecisionStatus>,
    /// Decisions by outcome since the daemon started.
    pub decisions: BTreeMap<String, u64>,
    /// Time before a scale-up may be written, ms (0: none running).
    pub cooldown_up_remaining_ms: u64,
    /// Time before a scale-down may be written, ms.
    pub cooldown_down_remaining_ms: u64,
    /// Numeric threshold and target settings from its labels
    /// (`cpu.upper` -> 0.8), for the live view to draw.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, f64>,
    /// Why it is not autoscaled, one phrase each.
    pub problems: Vec<String>,
    /// What is odd but does not stop it (an unknown label name).
    pub warnings: Vec<String>,
    /// Scale to zero: the last freeze, thaw or wake, if any.
    #[serde(default)]
    pub zero: Option<ZeroStatus>,
    /// Cooldowns and the last scale, to compute the remaining times.
    #[serde(skip)]
    pub clock: Cooldowns,
}

/// A service's cooldowns and last scale action, CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cooldowns {
    /// Effective `cooldown.up`.
    pub up: Duration,
    /// Effective `cooldown.down`.
    pub down: Duration,
    /// The last scale action of either kind.
    pub last_scale_ns: Option<u64>,
}

impl Cooldowns {
    fn remaining(&self, cooldown: Duration, now_ns: u64) -> Duration {
        match self.last_scale_ns {
            Some(at) => cooldown.saturating_sub(Duration::from_nanos(now_ns.saturating_sub(at))),
            None => Duration::ZERO,
        }
    }
}

/// The daemon's answer to `GET /status`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusReport {
    /// The daemon's version.
    pub version: String,
    /// The daemon's wall-clock time when it answered, ms since the Unix
    /// epoch (what "ago" is counted from).
    #[serde(default)]
    pub now_unix_ms: u64,
    /// Whether it has read Swarm and the policies folder.
    pub ready: bool,
    /// Loaded policies, by name.
    pub policies: Vec<String>,
    /// Services with autoscale labels (opted in or looking like it), by name.
    pub services: Vec<ServiceStatus>,
    /// Full reads of Docker's services and containers: 1 after the start,
    /// one more after each reconnection to Docker.
    #[serde(default)]
    pub inventory_reads: u64,
    /// Multi-node mode (`--cluster`): this node's role and connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
    /// The audit file (`--audit-log`): records it lost, and why it fails now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditStatus>,
}

/// The audit file as `host status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuditStatus {
    /// Its path.
    pub path: String,
    /// Records that could not be written since the start (a full disk).
    pub lost_records: u64,
    /// The error of the failing writes, while they fail.
    pub failing: Option<String>,
}

/// Multi-node mode as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterStatus {
    /// `manager` or `worker` (fixed for the daemon's life).
    pub role: String,
    /// Whether this daemon decides now (a manager that leads).
    pub deciding: bool,
    /// The decider this node's agent has a session with, if any.
    pub decider: Option<String>,
    /// Containers this node's probe measures for the decider.
    pub tracking: u64,
    /// A manager: agents connected to its decider endpoint now.
    pub agents: Option<u64>,
    /// A manager: the nodes whose agents reported within the node timeout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ClusterNode>,
}

/// One node a manager's decider hears from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterNode {
    /// The Swarm node id.
    pub id: String,
    /// Its hostname, as its agent said.
    pub hostname: String,
}

/// Reads multi-node mode's state when `/status` is asked.
struct ClusterSource(Box<dyn Fn() -> ClusterStatus + Send + Sync>);

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSource")
    }
}

/// Reads the audit file's health when `/status` is asked.
struct AuditSource(Box<dyn Fn() -> AuditStatus + Send + Sync>);

impl std::fmt::Debug for AuditSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSource")
    }
}

/// The shared record every part writes into and the endpoint reads.
#[derive(Debug, Default)]
pub struct Board {
    services: Mutex<BTreeMap<String, ServiceStatus>>,
    policies: Mutex<Vec<String>>,
    ready: AtomicBool,
    /// Full reads of Docker so far.
    inventory_reads: AtomicU64,
    /// Multi-node mode's state, read at report time.
    cluster: Mutex<Option<ClusterSource>>,
    /// The audit file's health, read at report time.
    audit: Mutex<Option<AuditSource>>,
    /// The last [`DECISION_LOG`] decisions with a sequence number and the
    /// service id, for the live view's timeline (`live.rs`).
    decision_log: Mutex<DecisionLog>,
}

/// A decision as the board's log keeps it: sequence number, service id, decision.
pub type LoggedDecision = (u64, String, DecisionStatus);

/// The board's bounded decision log: the last sequence number given, and
/// the newest [`DECISION_LOG`] decisions.
type DecisionLog = (u64, std::collections::VecDeque<LoggedDecision>);

/// Decisions the board keeps for the live view between two of its samples.
pub const DECISION_LOG: usize = 1024;

/// What the live view draws on a service's metric axis: its thresholds as
/// the labels parser read them (in the unit the probe reports: `512Mi` in
/// bytes, `200ms` in seconds) and the numeric `*.target` settings its policy
/// reads, by label name without the `autoscale.` prefix.
pub fn thresholds_of(thresholds: &crate::model::Thresholds, settings: &[(String, String)]) -> BTreeMap<String, f64> {
    let mut drawn = BTreeMap::new();
    for (def, band) in thresholds.bands() {
        for (side, value) in [("upper", band.upper), ("lower", band.lower)] {
            if let Some(value) = value {
                drawn.insert(format!("{}.{side}", def.name), value);
            }
        }
    }
    for (name, value) in settings.iter().filter(|(name, _)| name.ends_with(".target")) {
        if let Some(number) = value.trim().parse::<f64>().ok().filter(|v| v.is_finite()) {
            drawn.insert(name.clone(), number);
        }
    }
    drawn
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServiceStatus>> {
        // Plain data; a panic between two assignments leaves nothing unsafe.
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the entry of service `id` (created empty if missing).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut ServiceStatus)) {
        let mut services = self.lock();
        let entry =
            services.entry(id.to_string()).or_insert_with(|| ServiceStatus { id: id.into(), ..Default::default() });
        change(entry);
    }

    /// Change the entry of service `id` only if it exists.
    pub fn update_existing(&self, id: &str, change: impl FnOnce(&mut ServiceStatus)) {
        if let Some(entry) = self.lock().get_mut(id) {
            change(entry);
        }
    }

    /// Decisions recorded after sequence number `seq`, oldest first.
    pub fn decisions_after(&self, seq: u64) -> Vec<LoggedDecision> {
        let log = self.decision_log.lock().unwrap_or_else(|p| p.into_inner());
        log.1.iter().filter(|(n, _, _)| *n > seq).cloned().collect()
    }

    /// Forget a service (removed, or no longer labelled).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forget every service (Docker came back: everything is read again).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A decision's outcome for service `id`: the last decision, counted by
    /// outcome, and the desired replicas when it set them.
    pub fn record_decision(&self, id: &str, decision: DecisionStatus) {
        {
            let mut log = self.decision_log.lock().unwrap_or_else(|p| p.into_inner());
            log.0 += 1;
            let seq = log.0;
            log.1.push_back((seq, id.to_string(), decision.clone()));
            while log.1.len() > DECISION_LOG {
                log.1.pop_front();
            }
        }
        self.update_existing(id, |s| {
            *s.decisions.entry(decision.outcome.clone()).or_insert(0) += 1;
            if matches!(decision.outcome.as_str(), "applied" | "dry-run") {
                s.desired_replicas = decision.to;
            }
            if decision.outcome == "applied" && decision.to.is_some() {
                // Docker accepted the update: that is the spec now.
                s.current_replicas = decision.to;
            }
            s.last_decision = Some(decision);
        });
    }

    /// A freeze, thaw or wake of service `id`.
    pub fn record_zero(&self, id: &str, zero: ZeroStatus) {
        self.update_existing(id, |s| s.zero = Some(zero));
    }

    /// The loaded policies' names.
    pub fn set_policies(&self, names: Vec<String>) {
        *self.policies.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Swarm and the policies folder were read (or, `false`, Docker is away).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Docker's services and containers were read whole (at the start, and
    /// after each reconnection).
    pub fn inventory_read(&self) {
        self.inventory_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Multi-node mode: `source` says this node's role and connection when
    /// `/status` is asked.
    pub fn set_cluster(&self, source: impl Fn() -> ClusterStatus + Send + Sync + 'static) {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(ClusterSource(Box::new(source)));
    }

    /// `--audit-log`: `source` says what the audit file lost when `/status`
    /// is asked.
    pub fn set_audit(&self, source: impl Fn() -> AuditStatus + Send + Sync + 'static) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = Some(AuditSource(Box::new(source)));
    }

    /// Whether the daemon is ready: `/readyz`.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Every service's status at `now_ns` (CLOCK_MONOTONIC), by name.
    pub fn report(&self, now_ns: u64) -> StatusReport {
        let mut services: Vec<ServiceStatus> = self
            .lock()
            .values()
            .map(|s| {
                let mut s = s.clone();
                s.cooldown_up_remaining_ms = millis(s.clock.remaining(s.clock.up, now_ns));
                s.cooldown_down_remaining_ms = millis(s.clock.remaining(s.clock.down, now_ns));
                s
            })
            .collect();
        services.sort_by(|a, b| a.service.cmp(&b.service));
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            now_unix_ms: unix_ms(),
            ready: self.ready(),
            policies: self.policies.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            services,
            inventory_reads: self.inventory_reads.load(Ordering::Relaxed),
            cluster: self.cluster.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|source| (source.0)()),
            audit: self.audit.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|source| (source.0)()),
        }
    }

    /// The per-service Prometheus families, appended to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let services = self.lock();
        let family = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(out, "autoscaler_service_replicas", "Replicas in the service spec at the last read.", "gauge");
        for s in services.values().filter(|s| s.autoscaled) {
            if let Some(n) = s.current_replicas {
                let _ = writeln!(out, "autoscaler_service_replicas{{service=\"{}\"}} {n}", esc(&s.service));
            }
        }
        family(out, "autoscaler_service_desired_replicas", "Replicas the last applied decision set.", "gauge");
        for s in services.values().filter(|s| s.autoscaled) {
            if let Some(n) = s.desired_replicas.or(s.current_replicas) {
                let _ = writeln!(out, "autoscaler_service_desired_replicas{{service=\"{}\"}} {n}", esc(&s.service));
            }
        }
        family(
            out,
            "autoscaler_service_metric",
            "The service aggregate the policy last decided on, by metric and statistic (mean, min, max).",
            "gauge",
        );
        for s in services.values() {
            for m in &s.metrics {
                let Some(agg) = m.aggregate else { continue };
                for (stat, value) in [("mean", agg.mean), ("min", agg.min), ("max", agg.max)] {
                    let _ = writeln!(
                        out,
                        "autoscaler_service_metric{{service=\"{}\",metric=\"{}\",stat=\"{stat}\"}} {value}",
                        esc(&s.service),
                        esc(&m.metric)
                    );
                }
            }
        }
        family(out, "autoscaler_service_decisions_total", "Decisions by service and outcome.", "counter");
        for s in services.values() {
            for (outcome, n) in &s.decisions {
                let _ = writeln!(
                    out,
                    "autoscaler_service_decisions_total{{service=\"{}\",outcome=\"{}\"}} {n}",
                    esc(&s.service),
                    esc(outcome)
                );
            }
        }
        family(
            out,
            "autoscaler_service_config_errors",
            "Configuration problems that keep a service from being autoscaled (0: none).",
            "gauge",
        );
        for s in services.values() {
            let _ = writeln!(
                out,
                "autoscaler_service_config_errors{{service=\"{}\"}} {}",
                esc(&s.service),
                s.problems.len()
            );
        }
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    millis(since)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_view_draws_parsed_thresholds_and_numeric_targets() {
        use crate::model::{Band, Metric, Thresholds};
        let thresholds = Thresholds::default()
            .with(&Metric::CPU, Band { upper: Some(0.8), lower: Some(0.2) })
            .with(&Metric::MEMORY, Band { upper: Some(512.0 * 1024.0 * 1024.0), lower: None });
        let settings = [("cpu.target".to_string(), "0.6".to_string()), ("aggregate".into(), "max".into())];
        let drawn = thresholds_of(&thresholds, &settings);
        assert_eq!(
            drawn,
            BTreeMap::from([
                ("cpu.upper".to_string(), 0.8),
                ("cpu.lower".to_string(), 0.2),
                ("memory.upper".to_string(), 536_870_912.0),
                ("cpu.target".to_string(), 0.6),
            ])
        );
    }

    fn board_with_web() -> Board {
        let board = Board::default();
        board.update("s1", |s| {
            s.service = "web".into();
            s.autoscaled = true;
            s.policy = Some("threshold".into());
            s.policy_version = Some("0123456789ab".into());
            s.min = Some(1);
            s.max = Some(5);
            s.current_replicas = Some(2);
            s.clock = Cooldowns { up: Duration::from_secs(10), down: Duration::from_secs(60), last_scale_ns: Some(0) };
            s.metrics.push(MetricStatus {
                metric: "cpu".into(),
                unit: "fraction-of-limit".into(),
                latest: 0.9,
                latest_container: "abc".into(),
                latest_unix_ms: 1,
                aggregate: Some(Stats { mean: 0.85, min: 0.8, max: 0.9, sum: 1.7 }),
                reporting: 2,
                warming: 0,
            });
        });
        board
    }

    #[test]
    fn decisions_are_counted_and_the_last_kept() {
        let board = board_with_web();
        let applied = DecisionStatus {
            time_unix_ms: 1,
            outcome: "applied".into(),
            from: Some(1),
            to: Some(2),
            requested: Some(2),
            reason: "cpu high".into(),
            skip: None,
            repeated: 1,
        };
        board.record_decision("s1", applied.clone());
        board.record_decision(
            "s1",
            DecisionStatus { outcome: "skipped".into(), skip: Some("cooldown".into()), ..applied },
        );
        board.record_decision("unknown", DecisionStatus { outcome: "skipped".into(), ..Default::default() });
        let report = board.report(4_000_000_000);
        assert_eq!(report.services.len(), 1);
        let web = &report.services[0];
        assert_eq!(web.desired_replicas, Some(2));
        assert_eq!(web.decisions.get("applied"), Some(&1));
        assert_eq!(web.last_decision.as_ref().map(|d| d.outcome.as_str()), Some("skipped"));
        assert_eq!(web.cooldown_up_remaining_ms, 6_000);
        assert_eq!(web.cooldown_down_remaining_ms, 56_000);
        let text = render_text(&report);
        assert!(text.contains("policy:    threshold (version 0123456789ab)"), "{text}");
        assert!(text.contains("replicas:  2 (bounds 1..=5)"), "{text}");
        assert!(text.contains("cpu:       latest 90% of limit (abc); service mean 85% of limit"), "{text}");
        assert!(text.contains("last:      skipped 1 -> 2: cooldown; policy: cpu high"), "{text}");
        assert!(text.contains("cooldown:  up 6s to go, down 56s to go"), "{text}");
        let mut metrics = String::new();
        board.render_metrics(&mut metrics);
        assert!(metrics.contains("autoscaler_service_replicas{service=\"web\"} 2"), "{metrics}");
        assert!(metrics.contains("autoscaler_service_desired_replicas{service=\"web\"} 2"), "{metrics}");
        assert!(metrics.contains("autoscaler_service_metric{service=\"web\",metric=\"cpu\",stat=\"mean\"} 0.85"));
        assert!(metrics.contains("autoscaler_service_decisions_total{service=\"web\",outcome=\"skipped\"} 1"));
        assert!(metrics.contains("autoscaler_service_config_errors{service=\"web\"} 0"), "{metrics}");
    }

    #[test]
    fn a_frozen_service_says_since_when_and_a_woken_one_how_fast() {
        let board = board_with_web();
        let now = unix_ms();
        let frozen = ZeroStatus {
            state: "frozen".into(),
            time_unix_ms: now - 12_000,
            container: "abc".into(),
            reason: "idle for 3s".into(),
            docker_us: 30_100,
            wake_us: None,
        };
        board.record_zero("s1", frozen.clone());
        board.record_zero("unknown", frozen.clone());
        let text = render_text(&board.report(0));
        assert!(text.contains("  zero:      frozen 12s ago, replica abc: idle for 3s (pause 30.1 ms)\n"), "{text}");
        let woken = ZeroStatus { state: "woken".into(), wake_us: Some(14_200), docker_us: 13_000, ..frozen.clone() };
        board.record_zero("s1", woken);
        let report = board.report(0);
        assert_eq!(report.services.len(), 1, "a service the board does not know is not created");
        let text = render_text(&report);
        assert!(
            text.contains(
                "  zero:      woken 12s ago, replica abc: connection to unpaused in 14.2 ms (unpause 13.0 ms)"
            ),
            "{text}"
        );
        let restored = ZeroStatus {
            state: "restored".into(),
            container: String::new(),
            wake_us: Some(1_012_000),
            docker_us: 9_400,
            ..frozen
        };
        board.record_zero("s1", restored);
        let text = render_text(&board.report(0));
        assert!(
            text.contains(
                "  zero:      restored 12s ago: connection attempt to listening in 1012.0 ms (service update 9.4 ms)"
            ),
            "{text}"
        );
    }

    #[test]
    fn long_metric_names_line_up_with_the_short_ones() {
        let board = board_with_web();
        board.update("s1", |s| {
            let mut accepted = s.metrics[0].clone();
            accepted.metric = "accepted-connections".into();
            accepted.unit = "count".into();
            s.metrics.push(accepted);
        });
        let text = render_text(&board.report(0));
        let column = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(&format!("  {name}:"))).expect("a line per metric");
            line.find(" latest ")
        };
        assert_eq!(column("cpu"), column("accepted-connections"), "{text}");
    }

    #[test]
    fn the_report_round_trips_as_kebab_case_json() {
        let report = board_with_web().report(0);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["services"][0]["current-replicas"], 2);
        assert_eq!(json["services"][0]["policy-version"], "0123456789ab");
        let back: StatusReport = serde_json::from_value(json).expect("parse back");
        assert_eq!(back.services[0].service, "web");
    }

    #[test]
    fn the_report_counts_docker_reads_and_shows_the_cluster_only_in_multi_node_mode() {
        let board = Board::default();
        let json = serde_json::to_value(board.report(0)).expect("json");
        assert_eq!(json["inventory-reads"], 0);
        assert!(json.get("cluster").is_none(), "single-node mode has no cluster block: {json}");
        board.inventory_read();
        board.inventory_read();
        let leading = std::sync::Arc::new(AtomicBool::new(false));
        let read = leading.clone();
        board.set_cluster(move || ClusterStatus {
            role: "manager".into(),
            deciding: read.load(Ordering::Relaxed),
            decider: Some("10.77.0.2:9470".into()),
            tracking: 3,
            agents: Some(2),
            nodes: vec![ClusterNode { id: "n0d3a1b2c3d4e5".into(), hostname: "node-1".into() }],
        });
        assert_eq!(board.report(0).inventory_reads, 2);
        assert!(!board.report(0).cluster.expect("cluster").deciding);
        // Read when asked, not when set.
        leading.store(true, Ordering::Relaxed);
        let json = serde_json::to_value(board.report(0)).expect("json");
        assert_eq!(json["cluster"]["deciding"], true);
        assert_eq!(json["cluster"]["decider"], "10.77.0.2:9470");
        assert_eq!(json["cluster"]["tracking"], 3);
        let text = render_text(&board.report(0));
        assert!(
            text.contains("\ncluster: manager, deciding; agent connected to 10.77.0.2:9470; measuring 3 containers\n"),
            "{text}"
        );
        assert!(text.contains("\nnodes reporting: node-1 (n0d3a1b2c3d4)\n"), "{text}");
        assert_eq!(json["cluster"]["nodes"][0]["hostname"], "node-1");
        let back: StatusReport = serde_json::from_value(json).expect("parse back");
        assert_eq!(back.cluster.map(|c| c.agents), Some(Some(2)));
    }
}
