//! The trace format shared by `host --record` and `host replay`, and the
//! [`Recorder`] the daemon appends to.
//!
//! A trace is a text file of JSON lines, appended to and never rewritten:
//!
//! - a header line `{"header": {...}}` each time a daemon starts recording
//!   (format version, contract version, the daemon's default cooldowns and
//!   decision age, the wall clock and the monotonic clock at that moment);
//! - one line per event the daemon decided on: `{"policy": NAME,
//!   "event": EVENT, "state": STATE}` where EVENT and STATE are exactly what
//!   the policy was passed, with the WIT field names of
//!   [`crate::model::Event`] and [`crate::model::State`] (settings as the
//!   `autoscale.*` labels without the prefix).
//!
//! JSON lines keep a trace readable with `jq` and diffable, and survive a
//! daemon killed mid-write: a torn last line is reported and skipped by the
//! reader. A record is about 0.5-1 KiB; an hour of a busy service (10
//! events a second) is about 30 MB.
//!
//! Invariant: recording never fails the event loop. Write errors are
//! counted and logged (the first few, then one line when recording stops
//! after [`MAX_WRITE_ERRORS`] in a row).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Event, State};
use crate::swarm::ActuatorOptions;

/// The value of `format` in every header.
pub const FORMAT: &str = "autoscaler-trace";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;
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
    /// The contract version of the recorded states (`0.2.0`).
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
}

impl Header {
    /// A header for a daemon running with `options`, now.
    pub fn new(options: &ActuatorOptions) -> Header {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            contract: crate::policy::CONTRACT_VERSION.to_string(),
            started_unix_ns: u64::try_from(crate::model::unix_ns()).unwrap_or(0),
            started_monotonic_ns: crate::model::monotonic_ns(),
            cooldown_up_ns: ns(options.cooldown_up),
            cooldown_down_ns: ns(options.cooldown_down),
            max_decision_age_ns: ns(options.max_decision_age),
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
        }
    }
}

/// One event the daemon decided on, as the policy saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Record {
    /// The policy the service was bound to (`autoscale.policy`).
    pub policy: String,
    /// The event passed to `decide`.
    pub event: Event,
    /// The state passed to `decide`.
    pub state: State,
}

/// The borrowed form of [`Record`] the recorder writes (no clones on the
/// event loop).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RecordRef<'a> {
    policy: &'a str,
    event: &'a Event,
    state: &'a State,
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    header: Header,
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

/// Read a trace file. Errors name the file, the line and the cause; a torn
/// last line (a daemon killed mid-write) is skipped and counted.
pub fn read(path: &Path) -> anyhow::Result<Trace> {
    use anyhow::Context as _;
    let file = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file).lines().enumerate().peekable();
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut torn_lines = 0;
    while let Some((index, line)) = lines.next() {
        let line = line.with_context(|| format!("reading trace {} line {}", path.display(), index + 1))?;
        let text = line.trim_start();
        if text.is_empty() {
            continue;
        }
        let last = lines.peek().is_none();
        let parsed = if text.starts_with("{\"header\"") {
            serde_json::from_str::<HeaderLine>(text).map(|h| {
                if h.header.format != FORMAT || h.header.version != VERSION {
                    anyhow::bail!(
                        "trace {} line {}: format {} version {}; this host reads {FORMAT} version {VERSION}",
                        path.display(),
                        index + 1,
                        h.header.format,
                        h.header.version
                    );
                }
                header.get_or_insert(h.header);
                Ok(())
            })
        } else {
            serde_json::from_str::<Record>(text).map(|r| {
                records.push(r);
                Ok(())
            })
        };
        match parsed {
            Ok(result) => result?,
            Err(err) if last && err.is_eof() => torn_lines += 1,
            Err(err) => anyhow::bail!("trace {} line {}: {err}", path.display(), index + 1),
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
        use anyhow::Context as _;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the trace file {} for --record", path.display()))?;
        Self::start(path, Box::new(file), options)
            .with_context(|| format!("writing the header of trace {}", path.display()))
    }

    fn start(path: &Path, sink: Box<dyn Write + Send>, options: &ActuatorOptions) -> std::io::Result<Recorder> {
        let mut out = BufWriter::with_capacity(64 << 10, sink);
        let header = HeaderLine { header: Header::new(options) };
        serde_json::to_writer(&mut out, &header)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: Some(out),
            records: 0,
            errors_in_a_row: 0,
            errors: 0,
            flushed_ns: header.header.started_monotonic_ns,
        })
    }

    /// Append one record: the event the daemon is about to hand to
    /// `policy`, and the state it passes with it. Call it where the job for
    /// the policy is built, before the job is submitted.
    pub fn record(&mut self, policy: &str, event: &Event, state: &State) {
        let Some(out) = self.out.as_mut() else { return };
        let line = RecordRef { policy, event, state };
        let mut result =
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"));
        if result.is_ok() && state.now_ns.saturating_sub(self.flushed_ns) >= FLUSH_EVERY_NS {
            self.flushed_ns = state.now_ns;
            result = out.flush();
        }
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
    use crate::model::Direction;

    fn state(now_ns: u64) -> State {
        let mut s = State::replicas(2, 1, 5).with_settings(&[("cpu.upper", "0.8")]).with_cpu(&[0.9, 0.7]);
        s.now_ns = now_ns;
        s
    }

    #[test]
    fn a_recorded_trace_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.trace");
        let options = ActuatorOptions::default();
        let event = Event::cpu(0.9).crossing(0.8, Direction::Up).at(7);
        {
            let mut rec = Recorder::create(&path, &options).expect("create");
            rec.record("threshold", &event, &state(10));
            rec.record("threshold", &Event::cpu(0.5).at(20), &state(2_000_000_000));
            assert_eq!((rec.records(), rec.errors()), (2, 0));
        }
        // A second daemon appends with a header of its own.
        Recorder::create(&path, &options).expect("append").record("threshold", &event, &state(30));
        let trace = read(&path).expect("read");
        assert_eq!(trace.records.len(), 3);
        assert_eq!(trace.torn_lines, 0);
        assert_eq!(trace.records[0].event, event);
        assert_eq!(trace.records[0].state, state(10));
        assert_eq!(trace.records[0].policy, "threshold");
        assert_eq!(trace.header.actuator_options(), options);
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(text.lines().filter(|l| l.starts_with("{\"header\"")).count(), 2);
        assert!(text.contains("\"current-replicas\":2"), "WIT names in the trace: {text}");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.trace");
        Recorder::create(&path, &ActuatorOptions::default()).expect("create").record("p", &Event::cpu(0.5), &state(1));
        let good = std::fs::read_to_string(&path).expect("text");
        std::fs::write(&path, format!("{good}{{\"policy\": \"p\", \"event\": {{\"metr")).expect("write");
        let trace = read(&path).expect("a torn last line is tolerated");
        assert_eq!((trace.records.len(), trace.torn_lines), (1, 1));

        std::fs::write(&path, format!("{good}{{\"policy\": 3}}\n{good}")).expect("write");
        let err = read(&path).expect_err("a bad line in the middle").to_string();
        assert!(err.contains("line 3"), "{err}");

        std::fs::write(&path, "").expect("write");
        let err = read(&path).expect_err("no header").to_string();
        assert!(err.contains("no header"), "{err}");
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
        let mut rec = Recorder::start(path, sink, &ActuatorOptions::default()).expect("header fits");
        for i in 0..(MAX_WRITE_ERRORS * 40) {
            rec.record("p", &Event::cpu(0.5), &state(u64::from(i) * FLUSH_EVERY_NS * 2));
        }
        assert!(!rec.is_recording());
        assert!(rec.records() > 0, "records written before the disk filled");
        assert_eq!(rec.errors(), u64::from(MAX_WRITE_ERRORS));
    }
}
