//! The live view: a page served beside `/metrics` (`/ui`) that shows every
//! autoscaled service's replicas over the last minutes against the metrics
//! its policy decides on, each decision on the timeline, frozen or removed
//! replicas and configuration problems, updated every second.
//!
//! The page is one self-contained HTML file (no external assets: it works
//! offline, behind any proxy) that polls `/ui/history`. The history is kept
//! here, bounded: [`History::sample`] takes the status board's report once a
//! second ([`run_sampler`]) and keeps [`MAX_POINTS`] points per service for
//! at most [`MAX_SERVICES`] services; decisions come from the board's own
//! bounded log, so none made between two samples is missed. The page adds
//! no load a scrape would not: one small JSON answer per second per open
//! page, under the endpoint's connection cap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::status::{Board, DecisionStatus, LoggedDecision, StatusReport};

/// The page, served at `/ui`.
pub const PAGE: &str = include_str!("page.html");

/// Points kept per service: 15 minutes at one a second.
pub const MAX_POINTS: usize = 900;
/// Services kept; beyond it the ones the board no longer lists go first.
pub const MAX_SERVICES: usize = 2000;
/// Decisions kept per service.
pub const MAX_DECISIONS: usize = 200;
/// Time between two samples of the board.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One moment of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Point {
    /// Wall-clock ms since the Unix epoch.
    pub t: u64,
    /// Replicas in the spec at the board's last read.
    pub replicas: Option<u32>,
    /// Replicas the last applied decision set.
    pub desired: Option<u32>,
    /// The mean of each metric over the replicas that report, by name.
    pub metrics: BTreeMap<String, f64>,
}

/// What the page shows of one service.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceHistory {
    /// The Swarm service id.
    pub id: String,
    /// The service name.
    pub service: String,
    /// Whether the autoscaler acts on it (labels valid).
    pub autoscaled: bool,
    /// Its policy.
    pub policy: Option<String>,
    /// Its bounds.
    pub min: Option<u32>,
    /// Its bounds.
    pub max: Option<u32>,
    /// Scale-to-zero state (`frozen`, `removed`, ...), if any.
    pub zero: Option<String>,
    /// Configuration problems that keep it from being autoscaled.
    pub problems: Vec<String>,
    /// Warnings (labels the policy does not read, ...).
    pub warnings: Vec<String>,
    /// Threshold settings from its labels (`cpu.upper` -> 0.8), drawn as lines.
    pub thresholds: BTreeMap<String, f64>,
    /// Samples, oldest first.
    pub points: VecDeque<Point>,
    /// Decisions, oldest first.
    pub decisions: VecDeque<DecisionStatus>,
}

/// The answer to `GET /ui/history`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HistoryReport {
    /// The daemon's version.
    pub version: String,
    /// Wall-clock ms when it answered.
    pub now_unix_ms: u64,
    /// Whether the daemon has read Swarm and its policies.
    pub ready: bool,
    /// Loaded policies.
    pub policies: Vec<String>,
    /// Every service the board lists, by name.
    pub services: Vec<ServiceHistory>,
}

/// The bounded history of every service.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By service id.
    services: BTreeMap<String, ServiceHistory>,
    /// The last report's header.
    head: HistoryReport,
    /// The sequence number of the last decision taken from the board.
    decisions_seen: u64,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data: a panic mid-update leaves nothing unsafe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one report of the board, and the decisions logged since the
    /// last call.
    pub fn sample(&self, report: &StatusReport, decisions: Vec<LoggedDecision>) {
        let mut inner = self.lock();
        inner.head = HistoryReport {
            version: report.version.clone(),
            now_unix_ms: report.now_unix_ms,
            ready: report.ready,
            policies: report.policies.clone(),
            services: Vec::new(),
        };
        let listed: std::collections::BTreeSet<&str> = report.services.iter().map(|s| s.id.as_str()).collect();
        inner.services.retain(|id, _| listed.contains(id.as_str()));
        for s in report.services.iter().take(MAX_SERVICES) {
            let h = inner.services.entry(s.id.clone()).or_default();
            h.id.clone_from(&s.id);
            h.service.clone_from(&s.service);
            h.autoscaled = s.autoscaled;
            h.policy.clone_from(&s.policy);
            h.min = s.min;
            h.max = s.max;
            h.zero = s.zero.as_ref().map(|z| z.state.clone());
            h.problems.clone_from(&s.problems);
            h.warnings.clone_from(&s.warnings);
            h.thresholds = s.thresholds.clone();
            let metrics = s.metrics.iter().filter_map(|m| m.aggregate.map(|a| (m.metric.clone(), a.mean))).collect();
            h.points.push_back(Point {
                t: report.now_unix_ms,
                replicas: s.current_replicas,
                desired: s.desired_replicas,
                metrics,
            });
            while h.points.len() > MAX_POINTS {
                h.points.pop_front();
            }
        }
        for (seq, id, decision) in decisions {
            inner.decisions_seen = inner.decisions_seen.max(seq);
            if let Some(h) = inner.services.get_mut(&id) {
                h.decisions.push_back(decision);
                while h.decisions.len() > MAX_DECISIONS {
                    h.decisions.pop_front();
                }
            }
        }
    }

    /// The sequence number of the newest decision already taken.
    pub fn decisions_seen(&self) -> u64 {
        self.lock().decisions_seen
    }

    /// What `GET /ui/history` answers.
    pub fn report(&self) -> HistoryReport {
        let inner = self.lock();
        let mut report = inner.head.clone();
        report.services = inner.services.values().cloned().collect();
        report.services.sort_by(|a, b| a.service.cmp(&b.service));
        report
    }
}

/// Sample `board` into `history` every [`SAMPLE_EVERY`] until dropped.
pub async fn run_sampler(board: Arc<Board>, history: Arc<History>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let report = board.report(crate::model::monotonic_ns());
        let decisions = board.decisions_after(history.decisions_seen());
        history.sample(&report, decisions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stats;
    use crate::status::{MetricStatus, ServiceStatus};

    fn report(t: u64, replicas: u32, cpu: f64) -> StatusReport {
        StatusReport {
            version: "test".into(),
            now_unix_ms: t,
            ready: true,
            policies: vec!["threshold".into()],
            services: vec![ServiceStatus {
                id: "id-web".into(),
                service: "web".into(),
                autoscaled: true,
                policy: Some("threshold".into()),
                current_replicas: Some(replicas),
                thresholds: BTreeMap::from([("cpu.upper".into(), 0.8)]),
                metrics: vec![MetricStatus {
                    metric: "cpu".into(),
                    unit: "fraction-of-limit".into(),
                    latest: cpu,
                    latest_container: "c1".into(),
                    latest_unix_ms: t,
                    aggregate: Some(Stats { mean: cpu, min: cpu, max: cpu, sum: cpu }),
                    reporting: 1,
                    warming: 0,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn decision(t: u64, to: u32) -> DecisionStatus {
        DecisionStatus { time_unix_ms: t, outcome: "applied".into(), to: Some(to), ..Default::default() }
    }

    #[test]
    fn keeps_points_and_decisions_per_service_bounded() {
        let history = History::default();
        for t in 0..(MAX_POINTS as u64 + 50) {
            let decisions = if t % 2 == 0 { vec![(t + 1, "id-web".to_string(), decision(t, 2))] } else { vec![] };
            history.sample(&report(t, 1 + (t % 3) as u32, 0.5), decisions);
        }
        let report = history.report();
        let web = &report.services[0];
        assert_eq!(web.points.len(), MAX_POINTS);
        assert_eq!(web.points.front().map(|p| p.t), Some(50), "the oldest go first");
        assert_eq!(web.decisions.len(), MAX_DECISIONS);
        assert_eq!(web.thresholds.get("cpu.upper"), Some(&0.8));
        assert_eq!(web.points.back().map(|p| p.metrics["cpu"]), Some(0.5));
        assert_eq!(history.decisions_seen(), MAX_POINTS as u64 + 49);
    }

    #[test]
    fn forgets_services_the_board_no_longer_lists() {
        let history = History::default();
        history.sample(&report(1, 1, 0.1), vec![]);
        let mut empty = report(2, 1, 0.1);
        empty.services.clear();
        history.sample(&empty, vec![(1, "id-web".into(), decision(2, 3))]);
        assert!(history.report().services.is_empty());
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("/ui/history"));
        for external in ["http://", "https://", "<script src", "<link "] {
            assert!(!PAGE.contains(external), "the page loads {external}: it must work offline");
        }
    }
}
