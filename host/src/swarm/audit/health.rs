//! A full disk (or any failing write) under the audit file: every record
//! that cannot be written is counted (`autoscaler_audit_records_lost_total`,
//! `host status`), the first failure of a run and the recovery are each
//! said in one line, and the first record written again is preceded by a
//! `lost` record that says how many are missing there. Nothing is lost
//! silently.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::sink::Sink;
use super::unix_ms;
use crate::metrics::Metrics;
use crate::status::AuditStatus;

/// The audit file's losses, read by `/metrics` and `/status`.
#[derive(Debug)]
pub(super) struct Health {
    path: String,
    lost: AtomicU64,
    /// The error of the current run of failed writes, if one is running.
    failing: Mutex<Option<String>>,
}

/// The record that marks a gap: `{"audit":"lost","records":N,...}`.
#[derive(Serialize)]
struct Gap<'a> {
    time_unix_ms: u64,
    audit: &'static str,
    records: u64,
    error: &'a str,
}

impl Health {
    pub(super) fn new(path: &Path) -> Health {
        Health { path: path.display().to_string(), lost: AtomicU64::new(0), failing: Mutex::new(None) }
    }

    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// `autoscaler_audit_records_lost_total` in `metrics`.
    pub(super) fn export(self: &Arc<Self>, metrics: &Metrics) {
        let health = self.clone();
        metrics.set_source(
            "autoscaler_audit_records_lost_total",
            "Audit records that could not be written to the audit file (a full disk, an I/O error).",
            "counter",
            move || health.lost() as f64,
        );
    }

    /// What `host status` shows.
    pub(super) fn status(&self) -> AuditStatus {
        AuditStatus {
            path: self.path.clone(),
            lost_records: self.lost(),
            failing: self.failing.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    fn set_failing(&self, error: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// Write `line` to `sink`: after a run of failures, first the `lost`
/// record; on failure count the line lost (and say so, once per run).
pub(super) fn write(sink: &mut Sink, health: &Health, line: &[u8]) {
    if let Some((missing, first_error)) = sink.losing.clone() {
        let gap = Gap { time_unix_ms: unix_ms(), audit: "lost", records: missing, error: &first_error };
        let mut gap_line = serde_json::to_string(&gap).unwrap_or_default();
        gap_line.push('\n');
        if sink.write(gap_line.as_bytes()).is_err() {
            lose(sink, health, None);
            return;
        }
        sink.losing = None;
        health.set_failing(None);
        tracing::warn!(
            "audit log {} writable again: {missing} audit record{} lost while it was not ({first_error}); a \"lost\" record marks the gap in the file",
            sink.path.display(),
            if missing == 1 { " was" } else { "s were" }
        );
    }
    if let Err(err) = sink.write(line) {
        lose(sink, health, Some(err));
    }
}

/// Count one record lost; the first of a run says so in one line.
fn lose(sink: &mut Sink, health: &Health, err: Option<std::io::Error>) {
    health.lost.fetch_add(1, Ordering::Relaxed);
    match &mut sink.losing {
        Some((missing, _)) => *missing += 1,
        None => {
            let text = err.map_or_else(|| "unknown error".to_string(), |e| e.to_string());
            tracing::error!(
                "audit log {} cannot be written ({text}): audit records are being lost, each counted in autoscaler_audit_records_lost_total and host status, until a write succeeds",
                sink.path.display()
            );
            health.set_failing(Some(text.clone()));
            sink.losing = Some((1, text));
        }
    }
}
