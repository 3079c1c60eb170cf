//! Unit tests of `actuator`.

use super::*;
use crate::model::{Decision, Event};
use bollard::models::ServiceSpec;
use std::sync::atomic::AtomicU64;

const SEC: u64 = 1_000_000_000;

fn config() -> Arc<ServiceConfig> {
    let labels: HashMap<String, String> = [
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "5"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Arc::new(super::super::labels::parse("web", &labels).expect("valid").expect("enabled"))
}

fn request(seen: u32, target: u32, event_ns: u64) -> Request {
    Request {
        policy: "threshold".into(),
        event: Event::cpu(0.9).at(event_ns),
        decision: Decision::scale(target, "test"),
        seen,
        decided_ns: event_ns,
    }
}

/// A fake Swarm service: replicas, version, and scripted failures.
#[derive(Default)]
struct FakeService {
    replicas: u32,
    version: u64,
    /// Before the next write lands, an "operator" sets this many replicas.
    operator_scale: Option<u32>,
    /// Reads and writes fail as unreachable while this is > 0.
    unreachable: u32,
    /// Writes land but their answer is lost while this is > 0.
    lose_answers: u32,
    /// What Swarm remembers of the last scale.
    last_scale: Option<(crate::swarm::guardrails::Way, i128)>,
    writes: Vec<u32>,
    reads: u32,
    /// Writes made without recording a scale (scale to zero's).
    unmarked: u32,
}

#[derive(Clone, Default)]
struct FakeWriter(Arc<Mutex<FakeService>>);

impl Writer for FakeWriter {
    async fn read(&self, _: &str) -> Result<Current, WriteError> {
        let mut s = self.0.lock().expect("lock");
        s.reads += 1;
        if s.unreachable > 0 {
            s.unreachable -= 1;
            return Err(WriteError::Unreachable("connection refused".into()));
        }
        Ok(Current {
            replicas: Some(s.replicas),
            version: s.version,
            spec: ServiceSpec::default(),
            last_scale: s.last_scale,
        })
    }

    async fn set_replicas(&self, id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        self.0.lock().expect("lock").unmarked += 1;
        self.scale(id, current, replicas).await
    }

    async fn scale(&self, _: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        // Let other tasks run, as a real request would.
        tokio::task::yield_now().await;
        let mut s = self.0.lock().expect("lock");
        if let Some(n) = s.operator_scale.take() {
            s.replicas = n;
            s.version += 1;
        }
        if current.version != s.version {
            return Err(WriteError::Conflict);
        }
        s.replicas = replicas;
        s.version += 1;
        s.writes.push(replicas);
        if s.lose_answers > 0 {
            s.lose_answers -= 1;
            return Err(WriteError::Unreachable("connection reset".into()));
        }
        Ok(())
    }
}

fn actuator(fake: &FakeWriter, dry_run: bool, clock: Arc<AtomicU64>) -> (Actuator<FakeWriter>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = Arc::new(Audit::to_file(&dir.path().join("audit.jsonl")).expect("audit"));
    let options = ActuatorOptions { dry_run, ..ActuatorOptions::default() };
    let clock_fn: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(move || clock.load(Ordering::SeqCst));
    (Actuator::with_clock(fake.clone(), options, audit, clock_fn), dir)
}

fn audit_lines(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn writes_the_target_and_records_the_scale() {
    let fake = FakeWriter::default();
    fake.0.lock().expect("lock").replicas = 1;
    let clock = Arc::new(AtomicU64::new(100 * SEC));
    let (mut act, dir) = actuator(&fake, false, clock.clone());
    act.submit_test(request(1, 2, 100 * SEC));
    settle().await;
    assert_eq!(fake.0.lock().expect("lock").writes, [2]);
    assert_eq!(act.history("s1").last_up_ns, Some(100 * SEC));
    let lines = audit_lines(&dir);
    assert_eq!(lines[0]["outcome"], "applied");
    assert_eq!((lines[0]["from"].as_u64(), lines[0]["to"].as_u64()), (Some(1), Some(2)));
    // The next decision within cooldown.up is skipped and audited.
    clock.store(105 * SEC, Ordering::SeqCst);
    act.submit_test(request(2, 3, 105 * SEC));
    settle().await;
    assert_eq!(fake.0.lock().expect("lock").writes, [2]);
    let lines = audit_lines(&dir);
    assert_eq!(lines[1]["outcome"], "skipped");
    assert!(lines[1]["skip"].as_str().is_some_and(|s| s.contains("cooldown.up")), "{}", lines[1]);
}

#[tokio::test]
async fn an_operators_scale_between_read_and_write_is_respected() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 2;
        s.operator_scale = Some(4);
    }
    let clock = Arc::new(AtomicU64::new(0));
    let (mut act, dir) = actuator(&fake, false, clock);
    act.submit_test(request(2, 3, 0));
    settle().await;
    let s = fake.0.lock().expect("lock");
    assert_eq!(s.replicas, 4, "the operator's value stands");
    assert!(s.writes.is_empty(), "no stale write: {:?}", s.writes);
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["skip"].as_str().is_some_and(|s| s.contains("replicas changed")), "{}", lines[0]);
}

#[tokio::test]
async fn dry_run_writes_nothing_but_audits() {
    let fake = FakeWriter::default();
    fake.0.lock().expect("lock").replicas = 1;
    let (mut act, dir) = actuator(&fake, true, Arc::new(AtomicU64::new(0)));
    act.submit_test(request(1, 3, 0));
    settle().await;
    assert!(fake.0.lock().expect("lock").writes.is_empty());
    let lines = audit_lines(&dir);
    assert_eq!(lines[0]["outcome"], "dry-run");
    assert_eq!(lines[0]["to"], 3);
}

#[tokio::test]
async fn retries_while_docker_is_away_then_applies() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.unreachable = 3;
    }
    let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
    act.submit_test(request(1, 2, 0));
    // Back-off: 100 + 200 + 400 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = fake.0.lock().expect("lock");
    assert_eq!(s.writes, [2]);
    assert_eq!(s.reads, 4);
    assert_eq!(audit_lines(&dir)[0]["outcome"], "applied");
}

#[tokio::test]
async fn a_decision_that_ages_while_docker_is_away_is_dropped() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.unreachable = u32::MAX;
    }
    let clock = Arc::new(AtomicU64::new(0));
    let (mut act, dir) = actuator(&fake, false, clock.clone());
    act.submit_test(request(1, 2, 0));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Docker comes back 20 s of (fake) monotonic time later.
    clock.store(20 * SEC, Ordering::SeqCst);
    fake.0.lock().expect("lock").unreachable = 0;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(fake.0.lock().expect("lock").writes.is_empty());
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["skip"].as_str().is_some_and(|s| s.starts_with("stale")), "{}", lines[0]);
}

#[tokio::test]
async fn a_newer_decision_while_docker_is_away_keeps_the_back_off() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.unreachable = u32::MAX; // a demoted manager: every read fails
    }
    let (mut act, _dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
    act.submit_test(request(1, 2, 0));
    tokio::task::yield_now().await;
    act.submit_test(request(1, 3, 0));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The newer decision is read at once, then the back-off runs:
    // 0 ms, the wake-up, +200 ms. Not one read per poll.
    let reads = fake.0.lock().expect("lock").reads;
    assert!((2..=4).contains(&reads), "{reads} reads in 350 ms");
}

#[tokio::test]
async fn latest_decision_wins_while_one_is_in_flight() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.unreachable = 2; // keeps the first decision in flight for a while
    }
    let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
    act.submit_test(request(1, 2, 0));
    tokio::task::yield_now().await;
    act.submit_test(request(1, 3, 0));
    act.submit_test(request(1, 4, 0));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.0.lock().expect("lock").writes, [4], "one write, with the latest target");
    let lines = audit_lines(&dir);
    let outcomes: Vec<String> = lines.iter().map(|l| l["outcome"].to_string()).collect();
    assert_eq!(outcomes.iter().filter(|o| o.contains("applied")).count(), 1);
    // Two superseded decisions: the first is written, both are counted
    // in the applied record.
    assert_eq!(outcomes.iter().filter(|o| o.contains("skipped")).count(), 1, "{outcomes:?}");
    let applied = lines.iter().find(|l| l["outcome"] == "applied").expect("applied");
    assert_eq!(applied["skipped-since-last"]["superseded"], 2, "{applied}");
}

impl Actuator<FakeWriter> {
    fn submit_test(&mut self, request: Request) {
        self.submit(request, config());
    }
}

#[tokio::test]
async fn a_lost_answer_followed_by_a_newer_decision_counts_as_applied() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.lose_answers = 1; // the write lands, its answer does not
    }
    let clock = Arc::new(AtomicU64::new(100 * SEC));
    let (mut act, dir) = actuator(&fake, false, clock.clone());
    act.submit_test(request(1, 2, 100 * SEC));
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A newer decision, made on the replicas the policy saw before.
    act.submit_test(request(1, 3, 100 * SEC));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fake.0.lock().expect("lock").writes, [2], "no second write inside the cooldown");
    let lines = audit_lines(&dir);
    assert_eq!(lines[0]["outcome"], "applied", "{lines:?}");
    assert_eq!((lines[0]["from"].as_u64(), lines[0]["to"].as_u64()), (Some(1), Some(2)));
    assert_eq!(lines[1]["outcome"], "skipped", "{lines:?}");
    assert_eq!(act.history("s1").last_up_ns, Some(100 * SEC), "the cooldown counts from the lost write");
}

#[tokio::test]
async fn cooldowns_survive_a_restart_through_what_swarm_remembers() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 3;
        // Swarm says the service was scaled down 5 s ago.
        s.last_scale = Some((crate::swarm::guardrails::Way::Down, crate::model::unix_ns() - 5_000_000_000));
    }
    let clock = Arc::new(AtomicU64::new(1000 * SEC));
    let (mut act, dir) = actuator(&fake, false, clock);
    act.submit_test(request(3, 4, 1000 * SEC));
    settle().await;
    assert!(fake.0.lock().expect("lock").writes.is_empty(), "cooldown.up (10 s) still runs after a restart");
    let lines = audit_lines(&dir);
    assert!(lines[0]["skip"].as_str().is_some_and(|s| s.contains("cooldown.up")), "{lines:?}");
}

#[tokio::test]
async fn a_hold_blocks_scale_in_and_is_audited() {
    let fake = FakeWriter::default();
    fake.0.lock().expect("lock").replicas = 3;
    let clock = Arc::new(AtomicU64::new(1000 * SEC));
    let (mut act, dir) = actuator(&fake, false, clock);
    let mut hold = request(3, 3, 1000 * SEC);
    hold.decision = Decision::hold(300 * SEC, "stabilising");
    act.submit_test(hold);
    settle().await;
    act.submit_test(request(3, 2, 1000 * SEC));
    settle().await;
    assert!(fake.0.lock().expect("lock").writes.is_empty());
    let lines = audit_lines(&dir);
    assert_eq!(lines[0]["outcome"], "held");
    assert!(lines[1]["skip"].as_str().is_some_and(|s| s.contains("held")), "{lines:?}");
    assert_eq!(act.history("s1").hold_until_ns, Some(1300 * SEC));
}

#[tokio::test]
async fn shutdown_lets_the_update_in_flight_finish_and_audits_it() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 1;
        s.unreachable = 1; // the first read fails: the write happens after a back-off
    }
    let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
    act.submit_test(request(1, 2, 0));
    tokio::task::yield_now().await;
    act.shutdown(Duration::from_secs(5)).await;
    assert_eq!(fake.0.lock().expect("lock").writes, [2], "the update in flight completed");
    assert_eq!(audit_lines(&dir)[0]["outcome"], "applied");
}

async fn zero_write(act: &mut Actuator<FakeWriter>, to: u32) -> ZeroWritten {
    let (reply, answer) = oneshot::channel();
    act.write_zero(ZeroWrite { service_id: "s1".into(), service_name: "web".into(), to, reply });
    tokio::time::timeout(Duration::from_secs(5), answer).await.expect("answered").expect("reply")
}

#[tokio::test]
async fn scale_to_zero_writes_skip_the_guardrails_and_leave_the_cooldowns_alone() {
    let fake = FakeWriter::default();
    fake.0.lock().expect("lock").replicas = 1;
    let clock = Arc::new(AtomicU64::new(100 * SEC));
    let (mut act, dir) = actuator(&fake, false, clock.clone());
    // A policy scale-down starts cooldown.up (10 s)...
    fake.0.lock().expect("lock").replicas = 2;
    act.submit_test(request(2, 1, 100 * SEC));
    settle().await;
    assert_eq!(act.history("s1").last_down_ns, Some(100 * SEC));
    // ...which neither the removal nor the wake waits for, below min=1.
    assert!(matches!(zero_write(&mut act, 0).await, ZeroWritten::Spec { replicas: 0, wrote: Some(_) }));
    assert!(matches!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 1, wrote: Some(_) }));
    let (writes, unmarked) = {
        let s = fake.0.lock().expect("lock");
        (s.writes.clone(), s.unmarked)
    };
    assert_eq!((writes, unmarked), (vec![1, 0, 1], 2), "two unmarked writes");
    // The zero writes left the history as the decision made it: its
    // scale-down, and what it asked for (the stabilisation window's record).
    let asked = [(100 * SEC, 1)].into();
    assert_eq!(act.history("s1"), History { last_down_ns: Some(100 * SEC), asked, ..History::default() });
    assert_eq!(audit_lines(&dir).len(), 1, "the daemon audits zero writes itself");
    // From a count it does not start from: nothing written, the count said.
    fake.0.lock().expect("lock").replicas = 3;
    assert_eq!(zero_write(&mut act, 0).await, ZeroWritten::Spec { replicas: 3, wrote: None });
    assert_eq!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 3, wrote: None });
    assert_eq!(fake.0.lock().expect("lock").writes, [1, 0, 1]);
}

#[tokio::test]
async fn a_restore_waits_out_docker_and_a_conflict() {
    let fake = FakeWriter::default();
    {
        let mut s = fake.0.lock().expect("lock");
        s.replicas = 0;
        s.unreachable = 2;
        s.operator_scale = Some(0); // a concurrent write: one version conflict
    }
    let (mut act, _dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
    assert!(matches!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 1, wrote: Some(_) }));
    assert_eq!(fake.0.lock().expect("lock").writes, [1]);
}
