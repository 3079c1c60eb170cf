//! The live view: a page served beside `/metrics` (`/ui`) that shows every
//! autoscaled service's replicas over the last minutes against the metrics
//! its policy decides on, each decision on the timeline, frozen or removed
//! replicas and configuration problems, updated every second.
//!
//! The page is one self-contained HTML file (no external assets: it works
//! offline, behind any proxy) that polls `/ui/history` twice a second. The
//! history is kept here, bounded: [`History::sample`] takes the status
//! board's report once a second ([`run_sampler`]) and keeps [`MAX_POINTS`]
//! points per service for at most [`MAX_SERVICES`] services; decisions come
//! from the board's own bounded log, so none made between two samples is
//! missed. Each answer also carries the board as it is at that moment
//! ([`ServiceHistory::live`], decisions not sampled yet), so a scale-out
//! shows on the page within one poll of the spec change, not one sample
//! plus one poll. The page asks only for what it has not seen
//! (`?since=<ms>&after=<seq>`): one small JSON answer per poll per open
//! page, under the endpoint's connection cap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::model::METRICS;
use crate::status::{Board, ClusterStatus, DecisionStatus, LoggedDecision, StatusReport};

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

/// One moment of one service. Kept for every service for 15 minutes, so
/// it is small: a metric is its index in the table ([`METRICS`]) and an
/// `f32` (about 130 bytes a point with nine metrics, allocator included,
/// where a map of names per point took about 500: 460 MiB at 1,000
/// services). It answers as
/// `{"t":..,"metrics":{"cpu":0.5,..}}` all the same.
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
    #[serde(serialize_with = "metrics_by_name")]
    pub metrics: Box<[(u8, f32)]>,
}

impl Point {
    /// The mean of metric `name` at this point, if it was reported.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(i, _)| METRICS.get(usize::from(*i)).is_some_and(|d| d.name == name)).map(|(_, v)| *v)
    }
}

/// A point's metrics as a JSON object keyed by the metrics' names.
fn metrics_by_name<S: serde::Serializer>(metrics: &[(u8, f32)], out: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = out.serialize_map(Some(metrics.len()))?;
    for (index, value) in metrics {
        if let Some(def) = METRICS.get(usize::from(*index)) {
            map.serialize_entry(def.name, value)?;
        }
    }
    map.end()
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
    pub decisions: VecDeque<Decision>,
    /// The service as the board has it when the answer is made (not kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Point>,
}

/// One decision, numbered as the board's log numbers them, so a page that
/// asks again (`?after=<seq>`) gets each once.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    /// The board's sequence number.
    pub seq: u64,
    /// What was decided.
    #[serde(flatten)]
    pub decision: DecisionStatus,
}

/// What the page already has: points up to `since_ms`, decisions up to
/// `after_seq` (both 0 for everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Wall-clock ms of the newest point the page holds.
    pub since_ms: u64,
    /// The newest decision's sequence number the page holds.
    pub after_seq: u64,
}

impl Seen {
    /// From a query string such as `since=1700000000000&after=12`; what it
    /// does not understand counts as 0 (everything).
    pub fn parse(query: &str) -> Seen {
        let mut seen = Seen::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.parse().unwrap_or(0);
            match key {
                "since" => seen.since_ms = value,
                "after" => seen.after_seq = value,
                _ => {}
            }
        }
        seen
    }
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
    /// Multi-node mode (`--cluster`): this node's role, its decider and,
    /// on a manager, the nodes whose agents report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
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
            cluster: report.cluster.clone(),
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
            h.points.push_back(point_of(s, report.now_unix_ms));
            while h.points.len() > MAX_POINTS {
                h.points.pop_front();
            }
        }
        for (seq, id, decision) in decisions {
            inner.decisions_seen = inner.decisions_seen.max(seq);
            if let Some(h) = inner.services.get_mut(&id) {
                h.decisions.push_back(Decision { seq, decision });
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

    /// Everything kept (what a page that has seen nothing gets).
    pub fn report(&self) -> HistoryReport {
        self.report_since(Seen::default())
    }

    /// The points and decisions kept after what the page has `seen`, with
    /// every service's settings whole.
    pub fn report_since(&self, seen: Seen) -> HistoryReport {
        let inner = self.lock();
        let mut report = inner.head.clone();
        report.services = inner
            .services
            .values()
            .map(|h| ServiceHistory {
                points: h.points.iter().filter(|p| p.t > seen.since_ms).cloned().collect(),
                decisions: h.decisions.iter().filter(|d| d.seq > seen.after_seq).cloned().collect(),
                ..h.clone()
            })
            .collect();
        report.services.sort_by(|a, b| a.service.cmp(&b.service));
        report
    }

    /// What `GET /ui/history?<query>` answers: [`History::report_since`],
    /// then the board as it is now: each service's [`ServiceHistory::live`]
    /// point, the decisions logged since the last sample (not taken: the
    /// sampler still keeps them) and the header.
    pub fn answer(&self, board: &Board, query: &str) -> HistoryReport {
        let seen = Seen::parse(query);
        let mut report = self.report_since(seen);
        let now = board.report(crate::model::monotonic_ns());
        let fresh = board.decisions_after(self.decisions_seen().max(seen.after_seq));
        report.now_unix_ms = now.now_unix_ms;
        report.ready = now.ready;
        report.cluster = now.cluster.clone();
        for h in &mut report.services {
            if let Some(s) = now.services.iter().find(|s| s.id == h.id) {
                h.live = Some(point_of(s, now.now_unix_ms));
                h.zero = s.zero.as_ref().map(|z| z.state.clone());
            }
            for (seq, _, decision) in fresh.iter().filter(|(_, id, _)| *id == h.id) {
                h.decisions.push_back(Decision { seq: *seq, decision: decision.clone() });
            }
        }
        report
    }
}

/// One service's point at `t`, from its status.
fn point_of(s: &crate::status::ServiceStatus, t: u64) -> Point {
    Point {
        t,
        replicas: s.current_replicas,
        desired: s.desired_replicas,
        // Only the table's metrics: a name it does not know (none in the
        // daemon's view) has no index and is not drawn.
        metrics: s
            .metrics
            .iter()
            .filter_map(|m| {
                let index = METRICS.iter().position(|d| d.name == m.metric).and_then(|i| u8::try_from(i).ok())?;
                m.aggregate.map(|a| (index, a.mean as f32))
            })
            .collect(),
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
        assert_eq!(web.points.back().and_then(|p| p.metric("cpu")), Some(0.5));
        let json = serde_json::to_value(web.points.back().expect("a point")).expect("json");
        assert_eq!(json["metrics"], serde_json::json!({"cpu": 0.5}), "the page reads metrics by name");
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
    fn a_page_gets_only_what_it_has_not_seen() {
        let history = History::default();
        for t in 1..=5 {
            history.sample(&report(t * 1000, 1, 0.5), vec![(t, "id-web".into(), decision(t * 1000, 2))]);
        }
        let web = &history.report_since(Seen::parse("since=3000&after=4")).services[0];
        assert_eq!(web.points.iter().map(|p| p.t).collect::<Vec<_>>(), vec![4000, 5000]);
        assert_eq!(web.decisions.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![5]);
        assert_eq!(web.thresholds.get("cpu.upper"), Some(&0.8), "settings come whole every time");
        assert_eq!(Seen::parse("after=x&since=7&other=1"), Seen { since_ms: 7, after_seq: 0 });
        assert_eq!(Seen::parse(""), Seen::default());
    }

    #[test]
    fn an_answer_shows_the_board_as_it_is_now_without_waiting_for_a_sample() {
        let board = Board::default();
        board.update("id-web", |s| {
            s.service = "web".into();
            s.current_replicas = Some(1);
        });
        let history = History::default();
        history.sample(&board.report(0), board.decisions_after(0));
        // Scaled out between two samples.
        board.record_decision("id-web", decision(5, 3));
        let answer = history.answer(&board, "");
        let web = &answer.services[0];
        assert_eq!(web.live.as_ref().and_then(|p| p.replicas), Some(3), "the applied decision set the spec");
        assert_eq!(web.points.len(), 1, "the live point is not kept");
        assert_eq!(web.decisions.iter().map(|d| (d.seq, d.decision.to)).collect::<Vec<_>>(), vec![(1, Some(3))]);
        // The sampler still takes that decision once.
        history.sample(&board.report(0), board.decisions_after(history.decisions_seen()));
        assert_eq!(history.report().services[0].decisions.len(), 1);
        assert!(history.answer(&board, "after=1").services[0].decisions.is_empty());
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("/ui/history"));
        for external in ["http://", "https://", "<script src", "<link "] {
            assert!(!PAGE.contains(external), "the page loads {external}: it must work offline");
        }
    }
}
