//! Unit tests of `audit`.

use super::*;
use crate::model::{Decision, Event};

fn request() -> Request {
    Request {
        policy: "threshold".into(),
        event: Event::cpu(0.93).crossing(0.8, Direction::Up).at(42),
        decision: Decision::scale(3, "cpu high"),
        seen: 1,
        decided_ns: 5_042,
    }
}

fn cooldown(ms: u64) -> Verdict {
    Verdict::Skipped {
        from: Some(1),
        to: Some(2),
        adjustments: vec![],
        skip: Skip::Cooldown { way: super::super::guardrails::Way::Up, remaining: Duration::from_millis(ms) },
    }
}

#[test]
fn a_run_of_skips_is_written_once_with_its_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let board = Arc::new(Board::default());
    board.update("s1", |s| s.service = "web".into());
    let audit = Audit::to_file(&path).expect("open").with_board(board.clone());
    let mut request = request();
    request.event.service_id = "s1".into();
    audit.record(&request, Verdict::Applied { from: 1, to: 2, adjustments: vec![] }, 1);
    for ms in [900, 700, 500, 300] {
        audit.record(&request, cooldown(ms), 1);
    }
    let report = board.report(0);
    let last = report.services[0].last_decision.clone().expect("last decision");
    assert_eq!((last.outcome.as_str(), last.repeated), ("skipped", 4), "the fourth cooldown skip in a row");
    assert!(last.skip.as_deref().is_some_and(|s| s.contains("cooldown.up: 300ms to go")), "{last:?}");
    let unchanged =
        Verdict::Skipped { from: Some(2), to: Some(2), adjustments: vec![], skip: Skip::Unchanged { current: 2 } };
    audit.record(&request, unchanged.clone(), 1);
    audit.record(&request, unchanged, 1);
    audit.record(&request, Verdict::Applied { from: 2, to: 3, adjustments: vec![] }, 1);
    audit.record(&request, cooldown(100), 1);
    audit.finish();
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let summary: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let what = format!("{} {}", l["outcome"].as_str().unwrap_or(""), l["skip"].as_str().unwrap_or(""));
            (what, l["skipped-since-last"].to_string())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("applied ".to_string(), "null".to_string()),
            ("skipped cooldown.up: 900ms to go".to_string(), "null".to_string()),
            ("skipped already at 2 replicas".to_string(), "null".to_string()),
            ("applied ".to_string(), r#"{"cooldown-up":4,"unchanged":2}"#.to_string()),
            ("skipped cooldown.up: 100ms to go".to_string(), "null".to_string()),
        ]
    );
}

#[test]
fn the_file_is_rotated_past_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file_capped(&path, 4096).expect("open");
    for to in 0..40 {
        audit.record(&request(), Verdict::Applied { from: 1, to, adjustments: vec![] }, 1);
    }
    let current = std::fs::metadata(&path).expect("current").len();
    let rotated = std::fs::metadata(dir.path().join("audit.jsonl.1")).expect("rotated").len();
    assert!(current <= 4096 && rotated <= 4096 && rotated > 0, "{current} {rotated}");
}

#[test]
fn json_lines_carry_event_reason_and_guardrails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file(&path).expect("open");
    let step = Adjustment::StepLimited { asked: 3, allowed: 2, step_max: 1 };
    audit.record(&request(), Verdict::Applied { from: 1, to: 2, adjustments: vec![step] }, 900_042);
    audit.record(
        &request(),
        Verdict::Skipped { from: Some(1), to: Some(2), adjustments: vec![], skip: Skip::Superseded },
        900_042,
    );
    let mut hold = request();
    hold.decision = Decision::hold(30_000_000_000, "stabilise");
    audit.record(&hold, Verdict::Held { for_ns: 30_000_000_000 }, 900_042);
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), 3);
    let first = &lines[0];
    assert_eq!(first["outcome"], "applied");
    assert_eq!(first["service"], "web");
    assert_eq!(first["policy"], "threshold");
    assert_eq!(first["reason"], "cpu high");
    assert_eq!(first["requested"], 3);
    assert_eq!(first["guardrails"][0], "step limit 1: 3 -> 2");
    assert_eq!(first["event"]["metric"], "cpu");
    assert_eq!(first["event"]["unit"], "fraction-of-limit");
    assert_eq!(first["event"]["kind"], "crossing");
    assert_eq!(first["event"]["threshold"], 0.8);
    assert_eq!(first["event"]["direction"], "up");
    assert_eq!(first["event"]["timestamp_ns"], 42);
    assert_eq!(first["event_to_decision_us"], 5);
    assert_eq!(first["event_to_outcome_us"], 900);
    assert_eq!(lines[1]["outcome"], "skipped");
    assert_eq!(lines[1]["skip"], "superseded by a newer decision");
    assert_eq!(lines[2]["outcome"], "held");
    assert_eq!(lines[2]["hold_ms"], 30_000);
    assert_eq!(lines[2]["requested"], serde_json::Value::Null);
}

#[test]
fn a_policy_that_holds_on_every_event_is_written_once_per_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file(&path).expect("open");
    let mut hold = request();
    hold.decision = Decision::hold(30_000_000_000, "stabilise");
    for _ in 0..50 {
        audit.record(&hold, Verdict::Held { for_ns: 30_000_000_000 }, 1);
    }
    audit.record(&request(), Verdict::Applied { from: 1, to: 2, adjustments: vec![] }, 1);
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["outcome"], "held");
    assert_eq!(lines[1]["outcome"], "applied");
    assert_eq!(lines[1]["skipped-since-last"]["hold"], 50, "{text}");
}

#[test]
fn a_failed_rotation_loses_no_record_and_is_tried_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file_capped(&path, 4096).expect("open");
    // A directory where the rotated file goes: the rename fails.
    let blocker = dir.path().join("audit.jsonl.1");
    std::fs::create_dir(&blocker).expect("mkdir");
    std::fs::write(blocker.join("x"), b"x").expect("non-empty");
    let applied = |to| Verdict::Applied { from: 1, to, adjustments: vec![] };
    for to in 0..40 {
        audit.record(&request(), applied(to), 1);
    }
    let lines = std::fs::read_to_string(&path).expect("read").lines().count();
    assert_eq!(lines, 40, "every record kept in the file at hand while rotation fails");
    std::fs::remove_dir_all(&blocker).expect("rmdir");
    audit.record(&request(), applied(99), 1);
    let rotated = std::fs::read_to_string(&blocker).expect("rotated once the way is clear");
    assert_eq!(rotated.lines().count(), 40);
    assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1);
}

#[test]
fn the_audit_file_is_private_and_never_a_link() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let _audit = Audit::to_file(&path).expect("open");
    let mode = std::fs::metadata(&path).expect("created").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"").expect("target");
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let err = Audit::to_file(&link).expect_err("a symbolic link is refused");
    assert!(format!("{err:#}").contains("link.jsonl"), "{err:#}");
}

#[test]
fn a_nodes_long_reason_is_clipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file(&path).expect("open");
    let rec = ZeroRecord {
        time_unix_ms: 1,
        service: "web".into(),
        service_id: "s1".into(),
        container: "c".repeat(100_000),
        zero: ZeroOutcome::Failed,
        reason: "é".repeat(500_000),
        docker_us: 0,
        wake_us: None,
        ports: vec![],
    };
    audit.record_zero(&rec);
    let line = std::fs::read_to_string(&path).expect("read");
    assert!(line.len() < 2 * MAX_REASON_BYTES, "{} bytes written", line.len());
    assert!(line.contains('…'), "marked as clipped");
}

/// A full disk: every record is counted lost, said once, shown in `/metrics`
/// and `host status`; nothing is lost without a trace.
#[test]
fn a_full_disk_counts_every_lost_record_and_says_so_once() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("SKIPPED: no /dev/full");
        return;
    }
    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(Board::default());
    // /dev/full answers every write with ENOSPC, as a full file system does.
    let audit =
        Audit::to_file(Path::new("/dev/full")).expect("open").with_metrics(metrics.clone()).with_board(board.clone());
    for _ in 0..5 {
        audit.record(&request(), Verdict::Applied { from: 1, to: 2, adjustments: vec![] }, 1);
    }
    assert_eq!(audit.lost(), 5);
    assert!(metrics.render().contains("autoscaler_audit_records_lost_total 5"), "{}", metrics.render());
    let status = board.report(0).audit.expect("audit status");
    assert_eq!(status.lost_records, 5);
    assert!(status.failing.as_deref().is_some_and(|e| e.contains("No space left")), "{status:?}");
    let text = crate::status::render_text(&board.report(0));
    assert!(text.contains("audit log /dev/full: 5 record(s) lost (failing now: No space left"), "{text}");
}

/// After a run of failures the first write that succeeds is preceded by a
/// `lost` record that says how many are missing, and a torn line is cut off.
#[test]
fn the_first_write_after_a_loss_marks_the_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file(&path).expect("open");
    audit.record(&request(), Verdict::Applied { from: 1, to: 2, adjustments: vec![] }, 1);
    {
        let sink = audit.file.as_ref().expect("file");
        let mut sink = sink.lock().expect("lock");
        // As if three records had failed on a full disk.
        sink.losing = Some((3, "No space left on device (os error 28)".into()));
    }
    audit.record(&request(), Verdict::Applied { from: 2, to: 3, adjustments: vec![] }, 1);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!((lines[1]["audit"].as_str(), lines[1]["records"].as_u64()), (Some("lost"), Some(3)));
    assert_eq!(lines[2]["to"], 3);
}
