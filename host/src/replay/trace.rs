//! The trace format shared by `host --record` and `host replay`, and the
//! [`Recorder`] the daemon appends to.
//!
//! A trace is a text file of JSON lines, appended to and never rewritten.
//! Version 3 is positional, so that an hour of a busy service stays a few
//! MB and reads back in well under a second:
//!
//! - `{"header": {...}}` each time a daemon starts recording: format
//!   version, contract version, the daemon's default cooldowns and decision
//!   age, the wall clock and the monotonic clock at that moment (the base of
//!   the time deltas that follow);
//! - `{"service": [N, ID, NAME, POLICY, LABELS]}` before the first record of
//!   a service and again whenever its policy or its `autoscale.*` labels
//!   (without the prefix) change: a replay parses them for its own policy,
//!   as the daemon parses them into `state.settings`;
//! - `{"container": [N, ID]}` before the first record of a container;
//! - one array per call the daemon made: `[SERVICE, CONTAINER, DT, TOOK,
//!   AGE, METRIC, VALUE, UNIT, CROSSING, REPLICAS, MIN, MAX, UP, DOWN, HOLD,
//!   AGGREGATES, DECISION]`: DT is `now-ns` minus the previous record's (or
//!   the header's clock), TOOK the time from `now-ns` to the answer
//!   (`decided-ns`, the clock the actuator's cooldowns use), AGE `now-ns`
//!   minus the event's timestamp; UP, DOWN and HOLD are relative to
//!   `now-ns` (null when absent); CROSSING is `[threshold, "u"|"d"]` or null
//!   for a periodic sample; an aggregate is `[METRIC, UNIT, REPORTING,
//!   WARMING, [MEAN, MIN, MAX, SUM], OF-LIMIT, WINDOW-NS]`; DECISION is what
//!   the live policy answered (null for none or a failure). A metric is its
//!   name in the daemon's metric table (`"cpu"`), as the contract passes it;
//!   a unit is a one-letter code for the contract's cases (`f`raction of
//!   limit, `c`ores, `b`ytes, cou`n`t, `r`ate per second, `s`econds) or
//!   `{"o": NAME}`.
//!
//! Version 2 (contract 0.x) wrote metrics as one-letter codes; its traces
//! are refused with a message (record them again, or convert them: the
//! shipped ones in `examples/traces/` were converted).
//!
//! Only what the daemon actually passed to a policy is recorded: the
//! recorder runs when the answer comes back ([`crate::daemon`]), so an
//! event replaced in the decider's queue by a newer one of the same service
//! (coalescing) is not in the trace, as it was never decided on. Floats are
//! written in the shortest form that reads back to the same `f64`, so a
//! replay sees bit for bit what the live policy saw.
//!
//! A torn last line (a daemon killed mid-write) is reported and skipped by
//! the reader. Invariant: recording never fails the event loop. Write
//! errors are counted and logged (the first, then one line when recording
//! stops after [`MAX_WRITE_ERRORS`] in a row).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Aggregate, Crossing, Decision, Direction, Event, EventKind, Metric, State, Stats, Unit};
use crate::swarm::ActuatorOptions;
use crate::swarm::labels::UpRate;

/// The value of `format` in every header.
pub const FORMAT: &str = "autoscaler-trace";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 3;
/// Write errors in a row after which a [`Recorder`] stops.
pub const MAX_WRITE_ERRORS: u32 = 5;
/// How long records may sit in the write buffer (monotonic ns).
const FLUSH_EVERY_NS: u64 = 1_000_000_000;

/// What a daemon says about itself when it starts recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version, [`VERSION`] when written by this build.
    pub version: u32,
    /// The contract version of the daemon that recorded it (`1.0.0`).
    /// Informational: a trace holds the daemon's own event and state, from
    /// which the contract's arguments are made.
    pub contract: String,
    /// Wall clock when recording started, ns since the Unix epoch.
    pub started_unix_ns: u64,
    /// CLOCK_MONOTONIC ns at the same moment: the clock of every timestamp.
    pub started_monotonic_ns: u64,
    /// The daemon's `--cooldown-up`, ns (services without `autoscale.cooldown.up`).
    pub cooldown_up_ns: u64,
    /// The daemon's `--cooldown-down`, ns.
    pub cooldown_down_ns: u64,
    /// The daemon's `--max-decision-age`, ns.
    pub max_decision_age_ns: u64,
    /// The daemon's `--rate-up` and `--rate-period` (`100%,4 per 15s`);
    /// absent: none (and in traces of daemons before the rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_up: Option<(String, u64)>,
    /// The daemon's `--stabilization-down`, ns (0: none).
    #[serde(default)]
    pub stabilization_down_ns: u64,
}

impl Header {
    /// A header for a daemon running with `options`, its clock at `monotonic_ns`.
    pub fn new(options: &ActuatorOptions, monotonic_ns: u64) -> Header {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            contract: crate::policy::CONTRACT_VERSION.to_string(),
            started_unix_ns: u64::try_from(crate::model::unix_ns()).unwrap_or(0),
            started_monotonic_ns: monotonic_ns,
            cooldown_up_ns: ns(options.cooldown_up),
            cooldown_down_ns: ns(options.cooldown_down),
            max_decision_age_ns: ns(options.max_decision_age),
            rate_up: options.rate_up.map(|rate| (rate.value(), ns(rate.period))),
            stabilization_down_ns: ns(options.stabilization_down),
        }
    }

    /// The actuator options the recording daemon ran with (not dry-run).
    pub fn actuator_options(&self) -> ActuatorOptions {
        let d = std::time::Duration::from_nanos;
        ActuatorOptions {
            dry_run: false,
            max_decision_age: d(self.max_decision_age_ns),
            cooldown_up: d(self.cooldown_up_ns),
            cooldown_down: d(self.cooldown_down_ns),
            rate_up: self.rate_up.as_ref().and_then(|(value, period)| UpRate::parse(value, d(*period)).ok()),
            stabilization_down: d(self.stabilization_down_ns),
        }
    }
}

/// One call the daemon made, as the policy saw it, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The policy the service was bound to (`autoscale.policy`).
    pub policy: String,
    /// The service's `autoscale.*` labels without the prefix, sorted by
    /// name: what its settings were parsed from.
    pub labels: Labels,
    /// The event passed to `decide`.
    pub event: Event,
    /// The state passed to `decide`, with the service's id and name but no
    /// settings: a replay parses `labels` for its own policy.
    pub state: State,
    /// CLOCK_MONOTONIC ns when the policy answered: the time the actuator
    /// judges the decision at (cooldowns, holds).
    pub decided_ns: u64,
    /// What the live policy answered; `None` for no decision or a failure.
    pub decision: Option<Decision>,
}

/// The metric of a name in a trace, as the probes name it.
fn metric_named(name: String) -> Metric {
    Metric::named(&name)
}

/// A unit as one letter (`f`, `c`, `b`, `n`, `r`, `s`), or `{"o": NAME}`.
#[derive(Serialize, Deserialize)]
enum U {
    #[serde(rename = "f")]
    FractionOfLimit,
    #[serde(rename = "c")]
    Cores,
    #[serde(rename = "b")]
    Bytes,
    #[serde(rename = "n")]
    Count,
    #[serde(rename = "r")]
    PerSecond,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "o")]
    Other(String),
}

impl From<&Unit> for U {
    fn from(u: &Unit) -> U {
        match u {
            Unit::FractionOfLimit => U::FractionOfLimit,
            Unit::Cores => U::Cores,
            Unit::Bytes => U::Bytes,
            Unit::Count => U::Count,
            Unit::PerSecond => U::PerSecond,
            Unit::Seconds => U::Seconds,
            Unit::Other(name) => U::Other(name.clone()),
        }
    }
}

impl From<U> for Unit {
    fn from(u: U) -> Unit {
        match u {
            U::FractionOfLimit => Unit::FractionOfLimit,
            U::Cores => Unit::Cores,
            U::Bytes => Unit::Bytes,
            U::Count => Unit::Count,
            U::PerSecond => Unit::PerSecond,
            U::Seconds => Unit::Seconds,
            U::Other(name) => Unit::Other(name),
        }
    }
}

/// `[mean, min, max, sum]`.
type S = [f64; 4];

fn s(stats: &Stats) -> S {
    [stats.mean, stats.min, stats.max, stats.sum]
}

fn stats([mean, min, max, sum]: S) -> Stats {
    Stats { mean, min, max, sum }
}

/// One aggregate, positional.
#[derive(Serialize, Deserialize)]
struct A(String, U, u32, u32, S, Option<S>, u64);

/// One record line, positional (see the module doc).
#[derive(Serialize, Deserialize)]
struct R(
    u32,
    u32,
    i64,
    u64,
    i64,
    String,
    f64,
    U,
    Option<(f64, char)>,
    u32,
    u32,
    u32,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Vec<A>,
    Option<Decision>,
);

/// `at` relative to `now`, signed.
fn rel(at: Option<u64>, now: u64) -> Option<i64> {
    at.map(|at| i64::try_from(i128::from(at) - i128::from(now)).unwrap_or(0))
}

fn abs(delta: Option<i64>, now: u64) -> Option<u64> {
    delta.map(|d| now.saturating_add_signed(d))
}

/// `autoscale.*` labels without the prefix, sorted by name.
pub type Labels = Vec<(String, String)>;

/// What a reader knows of a service: id, name, policy, labels.
type ServiceDef = (String, String, String, Labels);

/// What a recorder last wrote of a service: its number, policy and labels.
type ServiceWritten = (u32, String, Labels);

/// Non-record lines.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Line {
    Header(Header),
    Service(u32, String, String, String, Vec<(String, String)>),
    Container(u32, String),
}

/// A trace read whole: the first header and every record, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The first header of the file (a daemon that restarted adds more; they
    /// differ only in their clocks and options, and the first one is used).
    pub header: Header,
    /// Every record, in the order they were written.
    pub records: Vec<Record>,
    /// Lines that did not parse and were skipped: at most one, the last, in
    /// a trace whose daemon was killed while writing.
    pub torn_lines: usize,
}

/// What the reader knows from the lines before a record.
#[derive(Default)]
struct Context {
    /// The clock the next record's DT counts from.
    base_ns: u64,
    /// Service number -> (id, name, policy, labels).
    services: HashMap<u32, ServiceDef>,
    /// Container number -> id.
    containers: HashMap<u32, String>,
}

impl Context {
    fn record(&mut self, r: R) -> Result<Record, String> {
        let R(
            svc,
            ctr,
            dt,
            took,
            age,
            metric,
            value,
            unit,
            crossing,
            replicas,
            min,
            max,
            up,
            down,
            hold,
            aggs,
            decision,
        ) = r;
        let (id, name, policy, labels) =
            self.services.get(&svc).ok_or_else(|| format!("service {svc} is not defined before it is used"))?;
        let container = self.containers.get(&ctr).ok_or_else(|| format!("container {ctr} is not defined"))?;
        let now = self.base_ns.saturating_add_signed(dt);
        self.base_ns = now;
        let kind = match crossing {
            None => EventKind::Sample,
            Some((threshold, way)) => EventKind::Crossing(Crossing {
                threshold,
                direction: if way == 'u' { Direction::Up } else { Direction::Down },
            }),
        };
        let event = Event {
            metric: metric_named(metric),
            value,
            unit: unit.into(),
            kind,
            container_id: container.clone(),
            service_id: id.clone(),
            service_name: name.clone(),
            timestamp_ns: now.saturating_add_signed(age.saturating_neg()),
        };
        let metrics = aggs
            .into_iter()
            .map(|A(metric, unit, reporting, warming, value, of_limit, window_ns)| Aggregate {
                metric: metric_named(metric),
                unit: unit.into(),
                reporting,
                warming,
                value: stats(value),
                of_limit: of_limit.map(stats),
                window_ns,
            })
            .collect();
        let state = State {
            service_id: id.clone(),
            service_name: name.clone(),
            settings: Default::default(),
            current_replicas: replicas,
            min_replicas: min,
            max_replicas: max,
            now_ns: now,
            last_scale_up_ns: abs(up, now),
            last_scale_down_ns: abs(down, now),
            hold_until_ns: abs(hold, now),
            metrics,
        };
        let (policy, labels) = (policy.clone(), labels.clone());
        Ok(Record { policy, labels, event, state, decided_ns: now.saturating_add(took), decision })
    }
}

/// Read a trace file. Errors name the file, the line and the cause; a torn
/// last line (a daemon killed mid-write) is skipped and counted.
pub fn read(path: &Path) -> anyhow::Result<Trace> {
    use anyhow::Context as _;
    let file = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file).lines().enumerate().peekable();
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut torn_lines = 0;
    let mut context = Context::default();
    while let Some((index, line)) = lines.next() {
        let line = line.with_context(|| format!("reading trace {} line {}", path.display(), index + 1))?;
        let text = line.trim_start();
        if text.is_empty() {
            continue;
        }
        let last = lines.peek().is_none();
        let at = || format!("trace {} line {}", path.display(), index + 1);
        let parsed = if text.starts_with('[') {
            serde_json::from_str::<R>(text).map(|r| {
                anyhow::ensure!(header.is_some(), "{}: a record before any header line", at());
                records.push(context.record(r).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?);
                Ok(())
            })
        } else {
            serde_json::from_str::<Line>(text).map(|line| {
                match line {
                    Line::Header(h) => {
                        if h.format != FORMAT || h.version != VERSION {
                            anyhow::bail!(
                                "{}: format {} version {}; this host reads {FORMAT} version {VERSION} (record the trace again with this host)",
                                at(),
                                h.format,
                                h.version
                            );
                        }
                        context.base_ns = h.started_monotonic_ns;
                        header.get_or_insert(h);
                    }
                    Line::Service(n, id, name, policy, labels) => {
                        context.services.insert(n, (id, name, policy, labels));
                    }
                    Line::Container(n, id) => {
                        context.containers.insert(n, id);
                    }
                }
                Ok(())
            })
        };
        match parsed {
            Ok(result) => result?,
            Err(err) if last && err.is_eof() => torn_lines += 1,
            Err(err) => anyhow::bail!("{}: {err}", at()),
        }
    }
    let header = header.with_context(|| {
        format!("trace {} has no header line; record one with `host --record FILE`", path.display())
    })?;
    Ok(Trace { header, records, torn_lines })
}

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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the trace file {} for --record", path.display()))?;
        Self::start(path, Box::new(file), options, monotonic_ns)
            .with_context(|| format!("writing the header of trace {}", path.display()))
    }

    fn start(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(now_ns: u64) -> State {
        let mut s = State::replicas(2, 1, 5).of("s1", "web").with_cpu(&[0.9, 0.7]);
        s.now_ns = now_ns;
        s
    }

    fn labels(upper: &str) -> Labels {
        vec![("cpu.upper".to_string(), upper.to_string())]
    }

    #[test]
    fn a_recorded_trace_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.trace");
        let options = ActuatorOptions::default();
        let event = Event::cpu(0.9).crossing(0.8, Direction::Up).at(7);
        let up = Decision::scale(3, "hot");
        let mut late = state(2_000_000_000);
        late.last_scale_up_ns = Some(1_500_000_000);
        late.hold_until_ns = Some(9_000_000_000);
        late.metrics[0].of_limit = Some(Stats { mean: 0.1, min: 0.0, max: 0.2, sum: 0.3 });
        late.metrics.push(Aggregate {
            metric: Metric::named("request-rate"),
            unit: Unit::PerSecond,
            ..late.metrics[0].clone()
        });
        let other = Event::sample(Metric::MEMORY, 1e6, Unit::Bytes).of("c2", "s1", "web").at(1_999_000_000);
        let (low, high) = (labels("0.8"), labels("0.9"));
        {
            let mut rec = Recorder::create_at(&path, &options, 5).expect("create");
            rec.record("threshold", &low, &event, &state(10), 12, Some(&up));
            rec.record("threshold", &low, &other, &late, 2_000_000_100, None);
            // Answers of two threads may come back out of order.
            rec.record("threshold", &low, &event, &state(1_000), 1_100, None);
            assert_eq!((rec.records(), rec.errors()), (3, 0));
        }
        // A second daemon appends with a header of its own.
        Recorder::create_at(&path, &options, 20).expect("append").record(
            "threshold",
            &high,
            &event,
            &state(30),
            31,
            None,
        );
        let trace = read(&path).expect("read");
        assert_eq!(trace.records.len(), 4);
        assert_eq!(trace.torn_lines, 0);
        let first = &trace.records[0];
        assert_eq!((&first.event, &first.state, first.policy.as_str()), (&event, &state(10), "threshold"));
        assert_eq!((first.decided_ns, first.decision.as_ref(), &first.labels), (12, Some(&up), &low));
        assert_eq!((&trace.records[1].event, &trace.records[1].state), (&other, &late));
        assert_eq!((trace.records[2].state.now_ns, trace.records[2].decided_ns), (1_000, 1_100));
        assert_eq!((&trace.records[3].state, &trace.records[3].labels), (&state(30), &high));
        assert_eq!(trace.header.actuator_options(), options);
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(text.lines().filter(|l| l.starts_with("{\"header\"")).count(), 2);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("{\"service\"")).count(),
            2,
            "again when the labels change: {text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("{\"container\"")).count(), 3, "{text}");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.trace");
        Recorder::create(&path, &ActuatorOptions::default()).expect("create").record(
            "p",
            &labels("0.8"),
            &Event::cpu(0.5),
            &state(1),
            2,
            None,
        );
        let good = std::fs::read_to_string(&path).expect("text");
        std::fs::write(&path, format!("{good}[0,0,12,3,4,\"cpu\",0.")).expect("write");
        let trace = read(&path).expect("a torn last line is tolerated");
        assert_eq!((trace.records.len(), trace.torn_lines), (1, 1));

        std::fs::write(&path, format!("{good}[\"p\", 3]\n{good}")).expect("write");
        let err = read(&path).expect_err("a bad line in the middle").to_string();
        assert!(err.contains("line 5"), "header, service, container, record, then the bad one: {err}");

        std::fs::write(&path, "").expect("write");
        let err = read(&path).expect_err("no header").to_string();
        assert!(err.contains("no header"), "{err}");
    }

    #[test]
    fn a_trace_of_format_version_2_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.trace");
        let header = r#"{"header":{"format":"autoscaler-trace","version":2,"contract":"0.2.0","started-unix-ns":1,"started-monotonic-ns":1,"cooldown-up-ns":1,"cooldown-down-ns":1,"max-decision-age-ns":1}}"#;
        std::fs::write(&path, format!("{header}\n")).expect("write");
        let err = format!("{:#}", read(&path).expect_err("version 2"));
        assert!(err.contains("version 2; this host reads autoscaler-trace version 3"), "{err}");
    }

    /// Accepts `room` bytes, then fails every write (a full disk).
    struct Filling {
        room: usize,
    }

    impl Write for Filling {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn recording_stops_after_repeated_write_errors() {
        let path = Path::new("/dev/full");
        assert!(Recorder::create(path, &ActuatorOptions::default()).is_err(), "a header that cannot be written");
        let sink = Box::new(Filling { room: 4096 });
        let mut rec = Recorder::start(path, sink, &ActuatorOptions::default(), 0).expect("header fits");
        for i in 0..(MAX_WRITE_ERRORS * 40) {
            let now = u64::from(i) * FLUSH_EVERY_NS * 2;
            rec.record("p", &[], &Event::cpu(0.5), &state(now), now, None);
        }
        assert!(!rec.is_recording());
        assert!(rec.records() > 0, "records written before the disk filled");
        assert_eq!(rec.errors(), u64::from(MAX_WRITE_ERRORS));
    }
}
