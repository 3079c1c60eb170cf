//! Writing a trace: the [`Recorder`] the daemon appends to.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::lines::{A, Line, R, rel, s};
use super::{FLUSH_EVERY_NS, Header, Labels, MAX_WRITE_ERRORS};
use crate::model::{Decision, Direction, Event, EventKind, State};
use crate::swarm::ActuatorOptions;

/// What a recorder last wrote of a service: its number, policy and labels.
type ServiceWritten = (u32, String, Labels);
/// Appends what the daemon decides on to a trace file (`host --record`).
///
/// Buffered; flushed at least once a second of recorded time and when
/// dropped. Never returns an error to its caller once created: write
/// errors are logged and counted, and after [`MAX_WRITE_ERRORS`] in a row
/// recording stops with one error line, leaving the daemon running.
pub struct Recorder {
    /// The trace file, for messages.
    path: PathBuf,
    /// `None` once recording stopped.
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    /// The clock the next record's DT counts from.
    base_ns: u64,
    /// Service id -> its number and the (policy, labels) last written.
    services: HashMap<String, ServiceWritten>,
    /// Container id -> its number.
    containers: HashMap<String, u32>,
    /// Records written.
    records: u64,
    /// Write errors in a row.
    errors_in_a_row: u32,
    /// Write errors in all.
    errors: u64,
    /// Monotonic ns of the last flush.
    flushed_ns: u64,
}

impl Recorder {
    /// Open `path` for appending (created if missing) and write a header
    /// with the daemon's actuator `options`. Fails if the file cannot be
    /// opened or written: the daemon refuses to start rather than silently
    /// record nothing.
    pub fn create(path: &Path, options: &ActuatorOptions) -> anyhow::Result<Recorder> {
        Self::create_at(path, options, crate::model::monotonic_ns())
    }

    /// [`Recorder::create`] with the clock at `monotonic_ns` (synthetic traces).
    pub fn create_at(path: &Path, options: &ActuatorOptions, monotonic_ns: u64) -> anyhow::Result<Recorder> {
        use anyhow::Context as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // 0600 and never through a symbolic link: a trace holds every
        // service's load and decisions.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening the trace file {} for --record", path.display()))?;
        Self::start(path, Box::new(file), options, monotonic_ns)
            .with_context(|| format!("writing the header of trace {}", path.display()))
    }

    pub(super) fn start(
        path: &Path,
        sink: Box<dyn Write + Send>,
        options: &ActuatorOptions,
        monotonic_ns: u64,
    ) -> std::io::Result<Recorder> {
        let mut out = BufWriter::with_capacity(64 << 10, sink);
        let header = Header::new(options, monotonic_ns);
        serde_json::to_writer(&mut out, &Line::Header(header))
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: Some(out),
            base_ns: monotonic_ns,
            services: HashMap::new(),
            containers: HashMap::new(),
            records: 0,
            errors_in_a_row: 0,
            errors: 0,
            flushed_ns: monotonic_ns,
        })
    }

    /// Append one call: the event and state the daemon passed to `policy`
    /// for a service with `labels` (the `autoscale.*` labels without the
    /// prefix, what the state's settings were parsed from), when it
    /// answered (`decided_ns`) and what it said. The daemon calls it when
    /// the answer comes back, so only what was decided on is kept.
    pub fn record(
        &mut self,
        policy: &str,
        labels: &[(String, String)],
        event: &Event,
        state: &State,
        decided_ns: u64,
        decision: Option<&Decision>,
    ) {
        let Some(out) = self.out.as_mut() else { return };
        let now_ns = state.now_ns;
        let call = Call { policy, labels, event, state, decided_ns, decision };
        let result = write_record(out, &mut self.base_ns, &mut self.services, &mut self.containers, call);
        let result = result.and_then(|()| {
            if now_ns.saturating_sub(self.flushed_ns) >= FLUSH_EVERY_NS {
                self.flushed_ns = now_ns;
                out.flush()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.records += 1;
                self.errors_in_a_row = 0;
            }
            Err(err) => self.failed(&err),
        }
    }

    /// Write out what is buffered (the daemon calls it at shutdown; drop
    /// does too).
    pub fn flush(&mut self) {
        if let Some(Err(err)) = self.out.as_mut().map(Write::flush) {
            self.failed(&err);
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Write errors so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Whether it still records (false after too many errors in a row).
    pub fn is_recording(&self) -> bool {
        self.out.is_some()
    }

    fn failed(&mut self, err: &std::io::Error) {
        self.errors += 1;
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= MAX_WRITE_ERRORS {
            tracing::error!(
                trace = %self.path.display(),
                "recording stopped after {} write errors in a row (last: {err}); the daemon goes on without --record",
                self.errors_in_a_row
            );
            self.out = None;
        } else if self.errors_in_a_row == 1 {
            tracing::warn!(trace = %self.path.display(), "writing the trace failed: {err}; records may be missing");
        }
    }
}

/// One call the daemon made, as [`Recorder::record`] got it.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    /// The policy the service is bound to.
    policy: &'a str,
    /// The service's `autoscale.*` labels without the prefix.
    labels: &'a [(String, String)],
    /// The event passed to `decide`.
    event: &'a Event,
    /// The state passed to `decide`.
    state: &'a State,
    /// CLOCK_MONOTONIC ns when the policy answered.
    decided_ns: u64,
    /// What it answered.
    decision: Option<&'a Decision>,
}

/// One call, with the service and container lines it needs first.
fn write_record(
    out: &mut impl Write,
    base_ns: &mut u64,
    services: &mut HashMap<String, ServiceWritten>,
    containers: &mut HashMap<String, u32>,
    Call { policy, labels, event, state, decided_ns, decision }: Call<'_>,
) -> std::io::Result<()> {
    let next = u32::try_from(services.len()).unwrap_or(u32::MAX);
    let service = services.entry(event.service_id.clone()).or_insert_with(|| (next, String::new(), Vec::new()));
    let svc = service.0;
    if service.1 != policy || service.2 != labels || service.1.is_empty() {
        service.1 = policy.to_string();
        service.2 = labels.to_vec();
        let line =
            Line::Service(svc, event.service_id.clone(), event.service_name.clone(), policy.into(), labels.to_vec());
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    let ctr = match containers.get(&event.container_id) {
        Some(n) => *n,
        None => {
            let n = u32::try_from(containers.len()).unwrap_or(u32::MAX);
            containers.insert(event.container_id.clone(), n);
            serde_json::to_writer(&mut *out, &Line::Container(n, event.container_id.clone()))?;
            out.write_all(b"\n")?;
            n
        }
    };
    let now = state.now_ns;
    // Signed: answers of two policies' threads may come back in another
    // order than their states were built.
    let dt = rel(Some(now), *base_ns).unwrap_or(0);
    *base_ns = now;
    let crossing = match event.kind {
        EventKind::Sample => None,
        EventKind::Crossing(c) => Some((c.threshold, if c.direction == Direction::Up { 'u' } else { 'd' })),
    };
    let aggs = state
        .metrics
        .iter()
        .map(|a| {
            A(
                a.metric.name().to_string(),
                (&a.unit).into(),
                a.reporting,
                a.warming,
                s(&a.value),
                a.of_limit.as_ref().map(s),
                a.window_ns,
            )
        })
        .collect();
    let line = R(
        svc,
        ctr,
        dt,
        decided_ns.saturating_sub(now),
        rel(Some(now), event.timestamp_ns).unwrap_or(0),
        event.metric.name().to_string(),
        event.value,
        (&event.unit).into(),
        crossing,
        state.current_replicas,
        state.min_replicas,
        state.max_replicas,
        rel(state.last_scale_up_ns, now),
        rel(state.last_scale_down_ns, now),
        rel(state.hold_until_ns, now),
        aggs,
        decision.cloned(),
    );
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("records", &self.records)
            .field("errors", &self.errors)
            .field("recording", &self.out.is_some())
            .finish()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}
