//! The trace's round trip, torn lines, old versions and write errors.

use std::io::Write;
use std::path::Path;

use super::*;
use crate::model::{Aggregate, Direction, Metric, Stats, Unit};

#[test]
fn an_overlong_line_is_refused_and_the_file_is_private_and_never_a_link() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let long = dir.path().join("long.jsonl");
    std::fs::write(&long, vec![b'x'; read::MAX_LINE_BYTES + 10]).expect("write");
    let err = read(&long).expect_err("a 1 MiB+ line");
    assert!(format!("{err:#}").contains("longer than"), "{err:#}");
    let path = dir.path().join("trace.jsonl");
    drop(Recorder::create(&path, &ActuatorOptions::default()).expect("create"));
    assert_eq!(std::fs::metadata(&path).expect("made").permissions().mode() & 0o777, 0o600);
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    assert!(Recorder::create(&link, &ActuatorOptions::default()).is_err(), "a symbolic link is refused");
}

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
    Recorder::create_at(&path, &options, 20).expect("append").record("threshold", &high, &event, &state(30), 31, None);
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
