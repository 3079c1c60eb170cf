//! The audit trail: one record per decision the actuator applied, skipped
//! or failed to apply, with the event that caused it, the policy's reason
//! and what the guardrails changed.
//!
//! Every record is a log line (`tracing`, target `audit`; routine skips such
//! as a running cooldown at debug level, everything else at info); with
//! `--audit-log FILE` it is also appended to FILE as one JSON object per
//! line. Each line is written with a single `write` on a file opened for
//! appending, so lines from concurrent workers never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde::Serialize;

use crate::model::{Direction, Event, EventKind, Unit};

/// What became of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The service spec was updated.
    Applied,
    /// `--dry-run`: it would have been applied.
    DryRun,
    /// Not applied, on purpose (see `skip`).
    Skipped,
    /// Docker refused the update (see `skip`).
    Failed,
}

/// The triggering event as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// `cpu`, `memory`, `connections`, ...
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// Its unit (`fraction-of-limit`, `cores`, `bytes`, `count`).
    pub unit: String,
    /// `sample` or `crossing`.
    pub kind: &'static str,
    /// The threshold crossed, for a crossing.
    pub threshold: Option<f64>,
    /// `up` or `down`, for a crossing.
    pub direction: Option<&'static str>,
    /// The container measured.
    pub container: String,
    /// CLOCK_MONOTONIC ns when the kernel (or the cgroupfs probe) measured it.
    pub timestamp_ns: u64,
}

impl AuditEvent {
    /// The audit view of a model event.
    pub fn from_event(event: &Event) -> AuditEvent {
        let (kind, threshold, direction) = match event.kind {
            EventKind::Sample => ("sample", None, None),
            EventKind::Crossing(c) => (
                "crossing",
                Some(c.threshold),
                Some(match c.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                }),
            ),
        };
        let unit = match &event.unit {
            Unit::FractionOfLimit => "fraction-of-limit",
            Unit::Cores => "cores",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
            Unit::Other(unit) => unit,
        }
        .to_string();
        AuditEvent {
            metric: event.metric.name().to_string(),
            value: event.value,
            unit,
            kind,
            threshold,
            direction,
            container: event.container_id.clone(),
            timestamp_ns: event.timestamp_ns,
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
    /// Applied, dry-run, skipped or failed.
    pub outcome: Outcome,
    /// Replicas the policy saw when it decided.
    pub seen: u32,
    /// Replicas in the spec when the actuator judged (None if never read).
    pub from: Option<u32>,
    /// The target after the guardrails (None if never judged).
    pub to: Option<u32>,
    /// What the policy asked for.
    pub requested: u32,
    /// The policy's reason.
    pub reason: String,
    /// What the guardrails changed, one phrase each; empty if nothing.
    pub guardrails: Vec<String>,
    /// Why it was skipped or failed.
    pub skip: Option<String>,
    /// A routine skip (cooldown, unchanged, superseded): logged at debug
    /// level only; the JSON line is written all the same.
    #[serde(skip)]
    pub routine: bool,
    /// The triggering event.
    pub event: AuditEvent,
    /// Kernel timestamp to the policy's answer, microseconds.
    pub event_to_decision_us: u64,
    /// Kernel timestamp to this outcome, microseconds (for `applied`: the
    /// spec is updated).
    pub event_to_outcome_us: u64,
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct Audit {
    /// The `--audit-log` file, opened for appending.
    file: Option<Mutex<File>>,
    /// Counts applied scale actions for the metrics endpoint, when on.
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Audit {
    /// Log only (no `--audit-log`).
    pub fn log_only() -> Audit {
        Audit { file: None, metrics: None }
    }

    /// Log, and append JSON lines to `path` (created if missing).
    pub fn to_file(path: &Path) -> anyhow::Result<Audit> {
        let file = OpenOptions::new().create(true).append(true).open(path).with_context(|| {
            format!("cannot open the audit log {} for appending; check the path and its permissions", path.display())
        })?;
        Ok(Audit { file: Some(Mutex::new(file)), metrics: None })
    }

    /// Also count applied scale actions in `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Audit {
        self.metrics = Some(metrics);
        self
    }

    /// Record one outcome: a log line, and a JSON line if a file is set.
    pub fn record(&self, rec: &AuditRecord) {
        if let (Some(metrics), Outcome::Applied, Some(from), Some(to)) = (&self.metrics, rec.outcome, rec.from, rec.to)
        {
            metrics.scale_action(&rec.service, if to > from { "up" } else { "down" });
        }
        let event = &rec.event;
        let trigger = match (event.kind, event.threshold, event.direction) {
            ("crossing", Some(threshold), Some(direction)) => {
                format!("{} {:.3} crossed {direction} {threshold}", event.metric, event.value)
            }
            _ => format!("{} {:.3} sample", event.metric, event.value),
        };
        let change = match (rec.from, rec.to) {
            (Some(from), Some(to)) => format!("{from} -> {to}"),
            _ => format!("seen {} -> asked {}", rec.seen, rec.requested),
        };
        let guardrails = if rec.guardrails.is_empty() { "none".to_string() } else { rec.guardrails.join(", ") };
        let skip = rec.skip.as_deref().unwrap_or("");
        match rec.outcome {
            Outcome::Applied => tracing::info!(
                target: "audit", service = %rec.service, policy = %rec.policy, kernel_ns = event.timestamp_ns,
                latency_us = rec.event_to_outcome_us,
                "scaled {} {change}: {} (trigger: {trigger}; guardrails: {guardrails})", rec.service, rec.reason
            ),
            Outcome::DryRun => tracing::info!(
                target: "audit", service = %rec.service, policy = %rec.policy, kernel_ns = event.timestamp_ns,
                "dry-run: would scale {} {change}: {} (trigger: {trigger}; guardrails: {guardrails})", rec.service, rec.reason
            ),
            // Routine skips (a cooldown running, a target already reached, a
            // newer decision) come with every event of a busy service: the
            // JSON audit log keeps them all, the text log at debug level.
            Outcome::Skipped if rec.routine => tracing::debug!(
                target: "audit", service = %rec.service, policy = %rec.policy, kernel_ns = event.timestamp_ns,
                "skipped {} {change}: {skip} (policy: {}; trigger: {trigger}; guardrails: {guardrails})", rec.service, rec.reason
            ),
            Outcome::Skipped => tracing::info!(
                target: "audit", service = %rec.service, policy = %rec.policy, kernel_ns = event.timestamp_ns,
                "skipped {} {change}: {skip} (policy: {}; trigger: {trigger}; guardrails: {guardrails})", rec.service, rec.reason
            ),
            Outcome::Failed => tracing::warn!(
                target: "audit", service = %rec.service, policy = %rec.policy, kernel_ns = event.timestamp_ns,
                "failed to scale {} {change}: {skip} (policy: {}; trigger: {trigger})", rec.service, rec.reason
            ),
        }
        if let Some(file) = &self.file {
            match serde_json::to_string(rec) {
                Ok(mut line) => {
                    line.push('\n');
                    let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(err) = file.write_all(line.as_bytes()) {
                        tracing::error!("cannot write to the audit log: {err}");
                    }
                }
                Err(err) => tracing::error!("cannot encode an audit record: {err}"),
            }
        }
    }
}

/// Milliseconds since the Unix epoch, for the audit record.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Crossing, Metric};

    fn record() -> AuditRecord {
        let event = Event {
            metric: Metric::Cpu,
            value: 0.93,
            unit: Unit::FractionOfLimit,
            kind: EventKind::Crossing(Crossing { threshold: 0.8, direction: Direction::Up }),
            container_id: "c1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            timestamp_ns: 42,
        };
        AuditRecord {
            time_unix_ms: 1,
            service: "web".into(),
            service_id: "s1".into(),
            policy: "threshold".into(),
            outcome: Outcome::Applied,
            seen: 1,
            from: Some(1),
            to: Some(2),
            requested: 3,
            reason: "cpu high".into(),
            guardrails: vec!["step limit 1: 3 -> 2".into()],
            skip: None,
            routine: false,
            event: AuditEvent::from_event(&event),
            event_to_decision_us: 5,
            event_to_outcome_us: 900,
        }
    }

    #[test]
    fn json_lines_carry_event_reason_and_guardrails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::to_file(&path).expect("open");
        audit.record(&record());
        audit.record(&AuditRecord { outcome: Outcome::Skipped, skip: Some("cooldown".into()), ..record() });
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["outcome"], "applied");
        assert_eq!(first["service"], "web");
        assert_eq!(first["policy"], "threshold");
        assert_eq!(first["reason"], "cpu high");
        assert_eq!(first["guardrails"][0], "step limit 1: 3 -> 2");
        assert_eq!(first["event"]["metric"], "cpu");
        assert_eq!(first["event"]["unit"], "fraction-of-limit");
        assert_eq!(first["event"]["kind"], "crossing");
        assert_eq!(first["event"]["threshold"], 0.8);
        assert_eq!(first["event"]["direction"], "up");
        assert_eq!(first["event"]["timestamp_ns"], 42);
        assert_eq!(lines[1]["outcome"], "skipped");
        assert_eq!(lines[1]["skip"], "cooldown");
    }
}
