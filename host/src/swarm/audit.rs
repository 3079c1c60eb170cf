//! The audit trail: one record per decision the actuator applied, held,
//! skipped or failed to apply, with the event that caused it, the policy's
//! reason and what the guardrails changed.
//!
//! The actuator hands over a typed [`Verdict`]; this module alone turns it
//! into words. Every record is a log line (`tracing`, target `audit`;
//! routine skips such as a running cooldown at debug level, everything else
//! at info); with `--audit-log FILE` it is also appended to FILE as one JSON
//! object per line. Each line is written with a single `write` on a file
//! opened for appending, so lines from concurrent workers never interleave.
//!
//! A busy service is judged on every event, and while a cooldown runs most
//! judgements are skips. Between two changes of a service (an applied,
//! dry-run or failed decision) each kind of skip, and a policy's hold, is
//! written once, the first time it happens; the rest are counted, and the
//! counts go with the record of the next change (`skipped-since-last`, by
//! kind, `hold` for holds), or at shutdown with the last of them. The file is
//! bounded: past `--audit-log-max-size` it is renamed to `FILE.1` (replacing
//! the previous one) and a new FILE is started.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

mod health;
mod sink;

use sink::{Sink, open_audit};

use super::guardrails::{Adjustment, Request, Skip};
use crate::metrics::Metrics;
use crate::model::{Direction, EventKind, Metric, Unit};
use crate::status::{Board, DecisionStatus, ZeroStatus};

/// Default size of the audit file before it is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// What became of one decision: the actuator's answer, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The service spec was updated.
    Applied {
        /// Replicas before.
        from: u32,
        /// Replicas after.
        to: u32,
        /// What the guardrails changed.
        adjustments: Vec<Adjustment>,
    },
    /// `--dry-run`: it would have been applied.
    DryRun {
        /// Replicas now.
        from: u32,
        /// Replicas it would set.
        to: u32,
        /// What the guardrails changed.
        adjustments: Vec<Adjustment>,
    },
    /// A `hold`: scale-in refused for a while.
    Held {
        /// How long, ns.
        for_ns: u64,
    },
    /// Not applied, on purpose.
    Skipped {
        /// Replicas when judged, if read.
        from: Option<u32>,
        /// The target after the guardrails, if judged.
        to: Option<u32>,
        /// What the guardrails changed.
        adjustments: Vec<Adjustment>,
        /// Why.
        skip: Skip,
    },
    /// Docker refused the update.
    Failed {
        /// Replicas when judged, if read.
        from: Option<u32>,
        /// The target, if judged.
        to: Option<u32>,
        /// Docker's answer.
        error: String,
    },
}

impl Verdict {
    /// Skipped before the service was read.
    pub fn skipped(skip: Skip) -> Verdict {
        Verdict::Skipped { from: None, to: None, adjustments: Vec::new(), skip }
    }

    /// Failed with `error`.
    pub fn failed(from: Option<u32>, to: Option<u32>, error: String) -> Verdict {
        Verdict::Failed { from, to, error }
    }

    fn outcome(&self) -> Outcome {
        match self {
            Verdict::Applied { .. } => Outcome::Applied,
            Verdict::DryRun { .. } => Outcome::DryRun,
            Verdict::Held { .. } => Outcome::Held,
            Verdict::Skipped { .. } => Outcome::Skipped,
            Verdict::Failed { .. } => Outcome::Failed,
        }
    }

    fn replicas(&self) -> (Option<u32>, Option<u32>) {
        match self {
            Verdict::Applied { from, to, .. } | Verdict::DryRun { from, to, .. } => (Some(*from), Some(*to)),
            Verdict::Skipped { from, to, .. } | Verdict::Failed { from, to, .. } => (*from, *to),
            Verdict::Held { .. } => (None, None),
        }
    }

    fn adjustments(&self) -> &[Adjustment] {
        match self {
            Verdict::Applied { adjustments, .. }
            | Verdict::DryRun { adjustments, .. }
            | Verdict::Skipped { adjustments, .. } => adjustments,
            _ => &[],
        }
    }
}

/// The kind of outcome, as the JSON line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The service spec was updated.
    Applied,
    /// `--dry-run`: it would have been applied.
    DryRun,
    /// Scale-in held by the policy.
    Held,
    /// Not applied, on purpose (see `skip`).
    Skipped,
    /// Docker refused the update (see `skip`).
    Failed,
}

/// The kind of the triggering event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// A periodic sample.
    Sample,
    /// A threshold crossing.
    Crossing,
}

/// The triggering event as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// What was measured.
    #[serde(serialize_with = "metric_name")]
    pub metric: Metric,
    /// The measured value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// Sample or crossing.
    pub kind: AuditKind,
    /// The threshold crossed, for a crossing.
    pub threshold: Option<f64>,
    /// Which way, for a crossing.
    pub direction: Option<Direction>,
    /// The container measured.
    pub container: String,
    /// CLOCK_MONOTONIC ns when the kernel (or the cgroupfs probe) measured it.
    pub timestamp_ns: u64,
}

fn metric_name<S: serde::Serializer>(metric: &Metric, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(metric.name())
}

impl AuditEvent {
    fn of(request: &Request) -> AuditEvent {
        let event = &request.event;
        let (kind, threshold, direction) = match event.kind {
            EventKind::Sample => (AuditKind::Sample, None, None),
            EventKind::Crossing(c) => (AuditKind::Crossing, Some(c.threshold), Some(c.direction)),
        };
        AuditEvent {
            metric: event.metric.clone(),
            value: event.value,
            unit: event.unit.clone(),
            kind,
            threshold,
            direction,
            container: event.container_id.clone(),
            timestamp_ns: event.timestamp_ns,
        }
    }

    fn trigger(&self) -> String {
        match (self.threshold, self.direction) {
            (Some(threshold), Some(direction)) => {
                let way = if direction == Direction::Up { "up" } else { "down" };
                format!("{} {:.3} crossed {way} {threshold}", self.metric, self.value)
            }
            _ => format!("{} {:.3} sample", self.metric, self.value),
        }
    }
}

/// One audit record: a JSON line in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Wall-clock time of the outcome, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// Service name.
    pub service: String,
    /// Swarm service id.
    pub service_id: String,
    /// The policy that decided.
    pub policy: String,
    /// Applied, dry-run, held, skipped or failed.
    pub outcome: Outcome,
    /// Replicas the policy saw when it decided.
    pub seen: u32,
    /// Replicas in the spec when the actuator judged (None if never read).
    pub from: Option<u32>,
    /// The target after the guardrails (None if never judged).
    pub to: Option<u32>,
    /// What the policy asked for (None for a hold).
    pub requested: Option<u32>,
    /// For a hold: how long scale-in is held, ms.
    pub hold_ms: Option<u64>,
    /// The policy's reason (bounded to 1 KiB).
    pub reason: String,
    /// What the guardrails changed, one phrase each; empty if nothing.
    pub guardrails: Vec<String>,
    /// Why it was skipped or failed.
    pub skip: Option<String>,
    /// The triggering event.
    pub event: AuditEvent,
    /// Kernel timestamp to the policy's answer, microseconds.
    pub event_to_decision_us: u64,
    /// Kernel timestamp to this outcome, microseconds (for `applied`: the
    /// spec is updated).
    pub event_to_outcome_us: u64,
    /// Skips of this service since its previous change, by kind (only the
    /// first of each kind was written when it happened).
    #[serde(rename = "skipped-since-last", skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_since_last: BTreeMap<&'static str, u64>,
}

impl AuditRecord {
    /// The record of `verdict` on `request`, at CLOCK_MONOTONIC `now_ns`.
    pub fn new(request: &Request, verdict: &Verdict, now_ns: u64) -> AuditRecord {
        let since_event = |t: u64| t.saturating_sub(request.event.timestamp_ns) / 1000;
        let (from, to) = verdict.replicas();
        let skip = match verdict {
            Verdict::Skipped { skip, .. } => Some(skip.to_string()),
            Verdict::Failed { error, .. } => Some(error.clone()),
            _ => None,
        };
        AuditRecord {
            time_unix_ms: unix_ms(),
            service: request.service_name().to_string(),
            service_id: request.service_id().to_string(),
            policy: request.policy.clone(),
            outcome: verdict.outcome(),
            seen: request.seen,
            from,
            to,
            requested: request.decision.target(),
            hold_ms: match verdict {
                Verdict::Held { for_ns } => Some(for_ns / 1_000_000),
                _ => None,
            },
            reason: request.decision.reason.clone(),
            guardrails: verdict.adjustments().iter().map(ToString::to_string).collect(),
            skip,
            event: AuditEvent::of(request),
            event_to_decision_us: since_event(request.decided_ns),
            event_to_outcome_us: since_event(now_ns),
            skipped_since_last: BTreeMap::new(),
        }
    }
}

/// What happened to a replica of a service at zero (`autoscale.min=0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroOutcome {
    /// Paused: the service is at zero.
    Frozen,
    /// Unpaused by the kernel's wake event on its first connection.
    Woken,
    /// Unpaused for another reason (shutdown, labels changed, a connection
    /// that came while it was being frozen).
    Thawed,
    /// Not frozen or removed, on purpose (`reason` says why).
    Refused,
    /// Docker refused the pause or unpause, or the probe the park.
    Failed,
    /// `autoscale.zero=remove`: its ports parked, the spec went to 0
    /// replicas (`docker_us`: the service update).
    Removed,
    /// Its container ended while it was frozen (its engine restarted, Swarm
    /// replaced it): nothing is left to thaw.
    Gone,
    /// Back to one replica after its removal, listening again and its
    /// ports unparked (`docker_us`: the service update; `wake_us`: from the
    /// kernel's first held connection attempt to the replica listening).
    Restored,
}

/// One freeze, thaw or wake: a JSON line in the audit log, beside the
/// records of scale decisions (told apart by `zero`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroRecord {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// Service name.
    pub service: String,
    /// Swarm service id.
    pub service_id: String,
    /// The replica's container.
    pub container: String,
    /// What happened.
    pub zero: ZeroOutcome,
    /// Why, in words.
    pub reason: String,
    /// How long Docker's pause or unpause (or, removing, the service
    /// update) took, microseconds.
    pub docker_us: u64,
    /// For a wake: from the kernel's timestamp of the connection to Docker's
    /// unpause returning, microseconds (the replica already runs a little
    /// earlier: the freezer thaws it before dockerd answers). For a restore:
    /// from the kernel's first held connection attempt to the new replica
    /// listening.
    pub wake_us: Option<u64>,
    /// `autoscale.zero=remove`: the ports held while the service has no
    /// replica.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// Ports as a log line says them: `8080` or `8080, 8443`.
fn ports(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// One service's skips since its last change.
#[derive(Debug, Default)]
struct Period {
    /// Skips by kind.
    counts: BTreeMap<&'static str, u64>,
    /// The latest skip, written with the counts at shutdown.
    last: Option<(AuditRecord, Verdict)>,
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct Audit {
    /// The `--audit-log` file, opened for appending.
    file: Option<Mutex<Sink>>,
    /// Counts applied scale actions for the metrics endpoint, when on.
    metrics: Option<Arc<Metrics>>,
    /// Shows each service's last decision in `host status`, when on.
    board: Option<Arc<Board>>,
    /// Each service's skips since its last change, by service id.
    periods: Mutex<HashMap<String, Period>>,
    /// Records the file lost, for `/metrics` and `host status`.
    health: Option<Arc<health::Health>>,
}

impl Audit {
    /// Log only (no `--audit-log`).
    pub fn log_only() -> Audit {
        Audit::default()
    }

    /// Log, and append JSON lines to `path` (created if missing), rotated
    /// to `path.1` past [`DEFAULT_MAX_BYTES`].
    pub fn to_file(path: &Path) -> anyhow::Result<Audit> {
        Audit::to_file_capped(path, DEFAULT_MAX_BYTES)
    }

    /// [`Audit::to_file`], rotated past `max_bytes`.
    pub fn to_file_capped(path: &Path, max_bytes: u64) -> anyhow::Result<Audit> {
        let file = open_audit(path).with_context(|| {
            format!("cannot open the audit log {} for appending; check the path and its permissions", path.display())
        })?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        let sink = Sink {
            file,
            path: path.to_path_buf(),
            written,
            max_bytes: max_bytes.max(4096),
            rotate_failures: 0,
            losing: None,
        };
        let health = Arc::new(health::Health::new(path));
        Ok(Audit { file: Some(Mutex::new(sink)), health: Some(health), ..Audit::default() })
    }

    /// Also count applied scale actions (and audit records lost) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Audit {
        if let Some(health) = &self.health {
            health.export(&metrics);
        }
        self.metrics = Some(metrics);
        self
    }

    /// Also show each service's last decision (and the audit file's health)
    /// on `board`.
    pub fn with_board(mut self, board: Arc<Board>) -> Audit {
        if let Some(health) = self.health.clone() {
            board.set_audit(move || health.status());
        }
        self.board = Some(board);
        self
    }

    /// Records that could not be written to the audit file so far.
    pub fn lost(&self) -> u64 {
        self.health.as_ref().map_or(0, |h| h.lost())
    }

    /// Record the verdict on one decision: a log line, and a JSON line if a
    /// file is set; a skip of the same kind as the one before it for the
    /// same service is only counted (see the module doc).
    pub fn record(&self, request: &Request, verdict: Verdict, now_ns: u64) {
        let rec = AuditRecord::new(request, &verdict, now_ns);
        if let (Some(metrics), Verdict::Applied { from, to, .. }) = (&self.metrics, &verdict) {
            metrics.scale_action(&rec.service, if to > from { "up" } else { "down" });
        }
        let mut rec = rec;
        // A hold repeats like a skip: a policy that holds on every event
        // extends the same hold, and it is written once per period.
        let repeats = match &verdict {
            Verdict::Skipped { skip, .. } => Some(skip.kind()),
            Verdict::Held { .. } => Some("hold"),
            _ => None,
        };
        let mut periods = self.periods.lock().unwrap_or_else(|p| p.into_inner());
        match repeats {
            Some(kind) => {
                let period = periods.entry(rec.service_id.clone()).or_default();
                let count = period.counts.entry(kind).or_insert(0);
                *count += 1;
                let count = *count;
                period.last = Some((rec.clone(), verdict.clone()));
                drop(periods);
                self.show(&rec, count);
                if count > 1 {
                    return;
                }
            }
            None => {
                if let Some(period) = periods.remove(&rec.service_id) {
                    rec.skipped_since_last = period.counts;
                }
                drop(periods);
                self.show(&rec, 1);
            }
        }
        self.log(&rec, &verdict);
        self.append(&rec);
    }

    /// Write the skips still counted (at shutdown), with the last of them,
    /// so the file says how many there were.
    pub fn finish(&self) {
        let open: Vec<Period> =
            self.periods.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, period)| period).collect();
        for period in open {
            if let Period { counts, last: Some((mut last, verdict)) } = period
                && counts.values().any(|n| *n > 1)
            {
                last.skipped_since_last = counts;
                self.log(&last, &verdict);
                self.append(&last);
            }
        }
    }

    fn show(&self, rec: &AuditRecord, repeated: u64) {
        let Some(board) = &self.board else { return };
        let outcome = serde_json::to_value(rec.outcome).ok().and_then(|v| v.as_str().map(str::to_string));
        board.record_decision(
            &rec.service_id,
            DecisionStatus {
                time_unix_ms: rec.time_unix_ms,
                outcome: outcome.unwrap_or_default(),
                from: rec.from,
                to: rec.to,
                requested: rec.requested,
                reason: rec.reason.clone(),
                skip: rec.skip.clone(),
                repeated,
            },
        );
    }

    fn log(&self, rec: &AuditRecord, verdict: &Verdict) {
        let trigger = rec.event.trigger();
        let change = match (rec.from, rec.to, rec.requested) {
            (Some(from), Some(to), _) => format!("{from} -> {to}"),
            (_, _, Some(asked)) => format!("seen {} -> asked {asked}", rec.seen),
            _ => format!("at {}", rec.seen),
        };
        let guardrails = if rec.guardrails.is_empty() { "none".to_string() } else { rec.guardrails.join(", ") };
        let (service, policy, kernel_ns) = (&rec.service, &rec.policy, rec.event.timestamp_ns);
        let times = if rec.skipped_since_last.is_empty() {
            String::new()
        } else {
            let counts: Vec<String> = rec.skipped_since_last.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            format!("; skipped since the last change: {}", counts.join(", "))
        };
        match verdict {
            Verdict::Applied { .. } => tracing::info!(
                target: "audit", service = %service, policy = %policy, kernel_ns, latency_us = rec.event_to_outcome_us,
                "scaled {service} {change}: {} (trigger: {trigger}; guardrails: {guardrails}{times})", rec.reason
            ),
            Verdict::DryRun { .. } => tracing::info!(
                target: "audit", service = %service, policy = %policy, kernel_ns,
                "dry-run: would scale {service} {change}: {} (trigger: {trigger}; guardrails: {guardrails}{times})", rec.reason
            ),
            Verdict::Held { for_ns } => tracing::info!(
                target: "audit", service = %service, policy = %policy, kernel_ns,
                "holding {service} at {}: no scale-in for {}: {}", rec.seen, crate::units::human_duration(Duration::from_nanos(*for_ns)), rec.reason
            ),
            // Routine skips (a cooldown running, a target already reached, a
            // newer decision) come with every event of a busy service: the
            // text log shows them at debug level.
            Verdict::Skipped { skip, .. } if skip.is_routine() => tracing::debug!(
                target: "audit", service = %service, policy = %policy, kernel_ns,
                "skipped {service} {change}: {skip} (policy: {}; trigger: {trigger}; guardrails: {guardrails}{times})", rec.reason
            ),
            Verdict::Skipped { skip, .. } => tracing::info!(
                target: "audit", service = %service, policy = %policy, kernel_ns,
                "skipped {service} {change}: {skip} (policy: {}; trigger: {trigger}; guardrails: {guardrails}{times})", rec.reason
            ),
            Verdict::Failed { error, .. } => tracing::warn!(
                target: "audit", service = %service, policy = %policy, kernel_ns,
                "failed to scale {service} {change}: {error} (policy: {}; trigger: {trigger})", rec.reason
            ),
        }
    }

    /// Record a freeze, thaw or wake: a log line, and a JSON line if a file
    /// is set.
    pub fn record_zero(&self, rec: &ZeroRecord) {
        // A node's report carries its own text (a reason, a container id):
        // bounded before it reaches the log, the board and the file.
        let bounded;
        let rec = if rec.reason.len() > MAX_REASON_BYTES || rec.container.len() > 64 {
            bounded = ZeroRecord {
                reason: clip(&rec.reason, MAX_REASON_BYTES),
                container: clip(&rec.container, 64),
                ..rec.clone()
            };
            &bounded
        } else {
            rec
        };
        let (service, container) = (&rec.service, &rec.container[..rec.container.len().min(12)]);
        let docker_ms = rec.docker_us as f64 / 1000.0;
        match rec.zero {
            ZeroOutcome::Frozen => tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us,
                "froze {service} (replica {container}) in {docker_ms:.1} ms: {}", rec.reason),
            ZeroOutcome::Woken => {
                tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us, wake_us = rec.wake_us,
                "woke {service} (replica {container}): connection to unpaused in {:.1} ms (unpause {docker_ms:.1} ms)",
                rec.wake_us.unwrap_or(0) as f64 / 1000.0)
            }
            ZeroOutcome::Thawed => tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us,
                "thawed {service} (replica {container}) in {docker_ms:.1} ms: {}", rec.reason),
            ZeroOutcome::Refused if rec.ports.is_empty() => tracing::warn!(target: "audit", service = %service,
                "not freezing {service} (replica {container}): {}", rec.reason),
            ZeroOutcome::Refused => tracing::warn!(target: "audit", service = %service,
                "not removing {service}: {}", rec.reason),
            ZeroOutcome::Failed => tracing::warn!(target: "audit", service = %service, "{}", rec.reason),
            ZeroOutcome::Gone => tracing::warn!(target: "audit", service = %service,
                "frozen replica {container} of {service} is gone: {}", rec.reason),
            ZeroOutcome::Removed => tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us,
                "removed {service} (0 replicas, port {} held) in {docker_ms:.1} ms: {}", ports(&rec.ports), rec.reason),
            ZeroOutcome::Restored => match rec.wake_us {
                Some(wake) => {
                    tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us, wake_us = wake,
                    "restored {service} (port {}): connection attempt to listening in {:.1} ms (service update {docker_ms:.1} ms)",
                    ports(&rec.ports), wake as f64 / 1000.0)
                }
                None => tracing::info!(target: "audit", service = %service, docker_us = rec.docker_us,
                    "restored {service} (port {}): {}", ports(&rec.ports), rec.reason),
            },
        }
        if let Some(board) = &self.board {
            let state = serde_json::to_value(rec.zero).ok().and_then(|v| v.as_str().map(str::to_string));
            board.record_zero(
                &rec.service_id,
                ZeroStatus {
                    state: state.unwrap_or_default(),
                    time_unix_ms: rec.time_unix_ms,
                    container: container.to_string(),
                    reason: rec.reason.clone(),
                    docker_us: rec.docker_us,
                    wake_us: rec.wake_us,
                },
            );
        }
        self.append(rec);
    }

    fn append<T: Serialize>(&self, rec: &T) {
        let Some(file) = &self.file else { return };
        match serde_json::to_string(rec) {
            Ok(mut line) => {
                line.push('\n');
                let mut sink = file.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(health) = &self.health {
                    health::write(&mut sink, health, line.as_bytes());
                } else if let Err(err) = sink.write(line.as_bytes()) {
                    tracing::error!("cannot write to the audit log {}: {err}", sink.path.display());
                }
            }
            Err(err) => tracing::error!("cannot encode an audit record: {err}"),
        }
    }
}

/// The most of a zero record's reason kept (a node's report can carry up to
/// a frame of text).
pub const MAX_REASON_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, marked `…`.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Milliseconds since the Unix epoch, for the audit record.
pub fn unix_ms() -> u64 {
    u64::try_from(crate::model::unix_ns() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests;
