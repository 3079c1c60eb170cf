//! Policy log lines: a rate budget per policy and a sink that never blocks.
//!
//! Everything a policy writes (host `log` calls and guest stdout/stderr)
//! passes a token bucket per policy, in lines and bytes per second, shared by
//! every call and every instance of that loaded policy: a policy that logs
//! a little on every event cannot flood the log, however often it is called.
//!
//! Lines within the budget are handed to one `policy-log` thread over a
//! bounded channel with `try_send`; the thread writes them with `tracing`.
//! If the daemon's log output is slow (a full pipe, a stalled terminal) the
//! channel fills and further lines are dropped and counted: a policy worker
//! never waits on logging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tracing::Level;

/// Lines buffered between the policy workers and the log thread.
const SINK_CAPACITY: usize = 1024;

/// Rate limits of a policy's log lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRate {
    /// Lines per second; also the burst.
    pub lines_per_sec: u32,
    /// Bytes per second; also the burst.
    pub bytes_per_sec: u32,
}

impl Default for LogRate {
    fn default() -> Self {
        LogRate { lines_per_sec: 20, bytes_per_sec: 16 << 10 }
    }
}

/// One policy's token bucket, shared by its calls and instances.
#[derive(Debug)]
pub struct LogBudget {
    rate: LogRate,
    state: Mutex<Bucket>,
    /// Lines dropped over the budget or on a full sink, ever.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    lines: f64,
    bytes: f64,
    refilled: Instant,
}

impl LogBudget {
    /// A full bucket.
    pub fn new(rate: LogRate) -> Self {
        LogBudget {
            rate,
            state: Mutex::new(Bucket {
                lines: f64::from(rate.lines_per_sec),
                bytes: f64::from(rate.bytes_per_sec),
                refilled: Instant::now(),
            }),
            dropped: AtomicU64::new(0),
        }
    }

    /// Take one line of `len` bytes from the bucket; false if over budget.
    pub fn admit(&self, len: usize) -> bool {
        self.admit_at(len, Instant::now())
    }

    fn admit_at(&self, len: usize, now: Instant) -> bool {
        // The bucket is two floats; a poisoned lock still holds valid ones.
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.refilled = now;
        b.lines = (b.lines + elapsed * f64::from(self.rate.lines_per_sec)).min(f64::from(self.rate.lines_per_sec));
        b.bytes = (b.bytes + elapsed * f64::from(self.rate.bytes_per_sec)).min(f64::from(self.rate.bytes_per_sec));
        let cost = len as f64;
        if b.lines >= 1.0 && b.bytes >= cost {
            b.lines -= 1.0;
            b.bytes -= cost;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// One line for the log thread.
struct Line {
    policy: Arc<str>,
    level: Level,
    stream: &'static str,
    text: String,
}

/// The sending side of the policy log: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct LogSink {
    tx: Option<SyncSender<Line>>,
    /// Lines dropped because the log thread fell behind.
    pub overflow: Arc<AtomicU64>,
    /// Set by [`LogSink::capture`]: lines are kept here instead of logged
    /// (`host policy run` shows them beside the decision).
    captured: Arc<OnceLock<Mutex<Vec<String>>>>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl LogSink {
    /// Start the log thread. It ends when the last sink is dropped.
    pub fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Line>(SINK_CAPACITY);
        let spawned = std::thread::Builder::new().name("policy-log".into()).spawn(move || {
            for line in rx {
                emit(&line);
            }
        });
        match spawned {
            Ok(_) => LogSink { tx: Some(tx), overflow: Arc::default(), captured: Arc::default() },
            Err(err) => {
                tracing::error!("could not start the policy log thread, policy log lines are dropped: {err}");
                LogSink { tx: None, overflow: Arc::default(), captured: Arc::default() }
            }
        }
    }

    /// Queue a line if `budget` allows it; never blocks.
    pub fn send(&self, budget: &LogBudget, policy: &Arc<str>, level: Level, stream: &'static str, text: String) {
        if !budget.admit(text.len()) {
            return;
        }
        self.send_unbudgeted(policy, level, stream, text);
    }

    /// Queue a line without charging a budget (the runtime's own notes
    /// about a policy, at most one per call); never blocks.
    pub fn send_unbudgeted(&self, policy: &Arc<str>, level: Level, stream: &'static str, text: String) {
        if let Some(kept) = self.captured.get() {
            let line = format!("{} ({stream}): {text}", level.as_str().to_ascii_lowercase());
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            return;
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Line { policy: policy.clone(), level, stream, text }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl LogSink {
    /// From now on keep every line (of every clone of this sink) instead
    /// of logging it, until [`LogSink::take_captured`].
    pub fn capture(&self) {
        let _ = self.captured.set(Mutex::new(Vec::new()));
    }

    /// The lines kept since [`LogSink::capture`] or the last take.
    pub fn take_captured(&self) -> Vec<String> {
        match self.captured.get() {
            Some(kept) => std::mem::take(&mut *kept.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }
}

fn emit(line: &Line) {
    let (policy, stream, text) = (&*line.policy, line.stream, line.text.as_str());
    match line.level {
        Level::TRACE => tracing::trace!(target: "policy", policy, stream, "{text}"),
        Level::DEBUG => tracing::debug!(target: "policy", policy, stream, "{text}"),
        Level::INFO => tracing::info!(target: "policy", policy, stream, "{text}"),
        Level::WARN => tracing::warn!(target: "policy", policy, stream, "{text}"),
        _ => tracing::error!(target: "policy", policy, stream, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_spans_calls_and_refills_with_time() {
        let budget = LogBudget::new(LogRate { lines_per_sec: 3, bytes_per_sec: 1000 });
        let t0 = Instant::now();
        assert!((0..3).all(|_| budget.admit_at(10, t0)));
        assert!(!budget.admit_at(10, t0), "a fourth line in the same second is over budget");
        assert!(budget.admit_at(10, t0 + Duration::from_millis(400)), "a third of a second refills one line");
        assert_eq!(budget.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bytes_are_budgeted_too() {
        let budget = LogBudget::new(LogRate { lines_per_sec: 100, bytes_per_sec: 100 });
        let t0 = Instant::now();
        assert!(budget.admit_at(80, t0));
        assert!(!budget.admit_at(80, t0));
    }
}
