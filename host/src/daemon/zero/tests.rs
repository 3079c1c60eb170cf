//! The scale-to-zero state machine, driven by hand: readings, kernel
//! events and the ends of its I/O go in, [`Work`] and audit records come
//! out. Time is tokio's, paused.

use std::collections::HashMap;

use super::*;
use crate::model::{Band, EventKind, Thresholds, Unit};
use crate::probe::Reading;
use crate::swarm::inventory::{Change, ContainerInfo, ServiceInfo};

const MS: Duration = Duration::from_millis(1);

fn bench(dry_run: bool) -> (Zero, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = Arc::new(Audit::to_file(&dir.path().join("audit.jsonl")).expect("audit"));
    let mut zero = Zero::new(audit, Arc::new(Metrics::default()), dry_run);
    // Whatever the test machine listens on, the port is free.
    zero.port_taken = |_| false;
    (zero, dir)
}

/// The scale-to-zero records so far.
fn records(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|r: &serde_json::Value| r["zero"].is_string())
        .collect()
}

fn outcomes(dir: &tempfile::TempDir) -> Vec<String> {
    records(dir).iter().map(|r| r["zero"].as_str().unwrap_or_default().to_string()).collect()
}

fn labels(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = [
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "0"),
        ("autoscale.max", "3"),
        ("autoscale.idle", "3s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

const FREEZE: &[(&str, &str)] = &[];
const REMOVE: &[(&str, &str)] = &[("autoscale.zero", "remove"), ("autoscale.port", "8080")];

fn config(extra: &[(&str, &str)]) -> ServiceConfig {
    let mut config = crate::swarm::labels::parse("web", &labels(extra)).expect("valid").expect("enabled");
    crate::swarm::labels::resolve_ports("web", &mut config, &[]).expect("ports");
    config
}

/// A service as [`inventory`] takes it: id, replicas, extra labels.
type Svc<'a> = (&'a str, u32, &'a [(&'a str, &'a str)]);

/// An inventory of services and containers `(id, service id)`.
fn inventory(services: &[Svc<'_>], containers: &[(&str, &str)]) -> Inventory {
    let mut inventory = Inventory::default();
    inventory.apply(Change::Resync {
        services: services
            .iter()
            .map(|(id, replicas, extra)| ServiceInfo {
                id: id.to_string(),
                name: if *id == "s1" { "web".into() } else { format!("svc-{id}") },
                version: 1,
                replicas: Some(*replicas),
                labels: labels(extra),
                published: Vec::new(),
            })
            .collect(),
        containers: containers
            .iter()
            .map(|(id, service)| ContainerInfo {
                id: id.to_string(),
                service_id: service.to_string(),
                node_id: "n1".into(),
                started_ns: 0,
            })
            .collect(),
    });
    inventory
}

fn reading(container: &str, metric: Metric, value: f64) -> ProbeEvent {
    ProbeEvent::Reading(Reading {
        container_id: container.into(),
        metric,
        value,
        unit: Unit::Count,
        kind: EventKind::Sample,
        timestamp_ns: model::monotonic_ns(),
    })
}

fn accepted(container: &str, count: u64) -> ProbeEvent {
    ProbeEvent::Signal(Signal::Accepted { container_id: container.into(), count, timestamp_ns: model::monotonic_ns() })
}

fn idle(container: &str) -> ProbeEvent {
    reading(container, Metric::CPU, 0.0)
}

/// One reading of service s1's one replica c1.
fn observe(zero: &mut Zero, config: &ServiceConfig, event: &ProbeEvent) -> Vec<Work> {
    zero.observe(("s1", "web"), config, config.zero.expect("min=0"), (1, &["c1".to_string()]), event);
    zero.take_work()
}

/// Idle readings from now until past `autoscale.idle`: the work the last
/// one asked for.
async fn idle_spell(zero: &mut Zero, config: &ServiceConfig) -> Vec<Work> {
    assert!(observe(zero, config, &idle("c1")).is_empty(), "nothing at the first idle reading");
    tokio::time::advance(Duration::from_millis(3100)).await;
    observe(zero, config, &idle("c1"))
}

fn park(mode: ParkMode, count: Option<&str>) -> Work {
    Work::Park { service_id: "s1".into(), ports: vec![8080], mode, count: count.map(str::to_string) }
}

fn write(to: u32) -> Work {
    Work::Write { service_id: "s1".into(), service: "web".into(), to }
}

fn unpark() -> Work {
    Work::Unpark { service_id: "s1".into(), ports: vec![8080] }
}

fn look() -> Work {
    Work::CheckListening { service_id: "s1".into(), ports: vec![8080] }
}

fn parked(zero: &mut Zero, mode: ParkMode, result: Result<i64, String>) -> Vec<Work> {
    zero.on_done(Done::Parked { service_id: "s1".into(), ports: vec![8080], mode, result });
    zero.take_work()
}

fn written(zero: &mut Zero, to: u32, replicas: u32) -> Vec<Work> {
    let outcome = ZeroWritten::Spec { replicas, wrote: Some(12 * MS) };
    zero.on_done(Done::Written { service_id: "s1".into(), to, outcome });
    zero.take_work()
}

fn done(zero: &mut Zero, done: Done) -> Vec<Work> {
    zero.on_done(done);
    zero.take_work()
}

fn unparked(zero: &mut Zero) -> Vec<Work> {
    done(zero, Done::Unparked { service_id: "s1".into() })
}

// --- freeze -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_idle_replica_is_frozen_and_its_first_connection_thaws_it() {
    let (mut zero, dir) = bench(false);
    let config = config(FREEZE);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(observe(&mut zero, &config, &idle("c1")).is_empty(), "not idle for 3 s yet");
    assert_eq!(idle_spell(&mut zero, &config).await, [Work::Freeze { container: "c1".into() }]);
    assert!(zero.holds("c1"), "a replica being frozen is not the service's load");
    assert!(observe(&mut zero, &config, &idle("c1")).is_empty(), "frozen once");
    assert!(done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS }).is_empty());
    assert_eq!(outcomes(&dir), ["frozen"]);
    assert_eq!(records(&dir)[0]["docker_us"], 30_000);

    zero.on_wake("c1", model::monotonic_ns());
    assert_eq!(zero.take_work(), [Work::Thaw { container: "c1".into() }]);
    zero.on_wake("c1", model::monotonic_ns());
    assert!(zero.take_work().is_empty(), "one thaw");
    assert!(done(&mut zero, Done::Thawed { container: "c1".into(), took: 20 * MS }).is_empty());
    let woken = &records(&dir)[1];
    assert_eq!((woken["zero"].as_str(), woken["docker_us"].as_u64()), (Some("woken"), Some(20_000)));
    assert!(woken["wake_us"].is_u64(), "{woken}");
    assert!(!zero.holds("c1"));
    // Woken: idle counts again from the wake.
    assert!(observe(&mut zero, &config, &idle("c1")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_service_that_keeps_working_is_never_frozen() {
    let (mut zero, _dir) = bench(false);
    let mut config = config(FREEZE);
    config.thresholds = Thresholds::default().with(&Metric::CPU, Band { upper: Some(0.8), lower: Some(0.2) });
    for i in 0..20 {
        let event = match i % 3 {
            0 => reading("c1", Metric::CONNECTIONS, 1.0),
            1 => accepted("c1", 2),
            _ => reading("c1", Metric::CPU, 0.3),
        };
        assert!(observe(&mut zero, &config, &event).is_empty(), "reading {i}");
        tokio::time::advance(Duration::from_millis(1500)).await;
    }
    // Below its lower threshold (0.2) it is idle, though not at 0.
    assert!(observe(&mut zero, &config, &reading("c1", Metric::CPU, 0.1)).is_empty());
    tokio::time::advance(Duration::from_millis(3100)).await;
    assert_eq!(
        observe(&mut zero, &config, &reading("c1", Metric::CPU, 0.1)),
        [Work::Freeze { container: "c1".into() }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_during_the_pause_thaws_the_replica_as_soon_as_it_is_paused() {
    let (mut zero, dir) = bench(false);
    let config = config(FREEZE);
    assert_eq!(idle_spell(&mut zero, &config).await, [Work::Freeze { container: "c1".into() }]);
    zero.on_wake("c1", model::monotonic_ns());
    assert!(zero.take_work().is_empty(), "the pause is in flight");
    let after = done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS });
    assert_eq!(after, [Work::Thaw { container: "c1".into() }]);
    done(&mut zero, Done::Thawed { container: "c1".into(), took: 20 * MS });
    assert_eq!(outcomes(&dir), ["frozen", "woken"]);
}

#[tokio::test(start_paused = true)]
async fn a_replica_with_a_health_check_is_refused_once_and_left_alone() {
    let (mut zero, dir) = bench(false);
    let config = config(FREEZE);
    assert_eq!(idle_spell(&mut zero, &config).await, [Work::Freeze { container: "c1".into() }]);
    let reason = "it has a health check (CMD /probe)".to_string();
    done(&mut zero, Done::NotFrozen { container: "c1".into(), outcome: ZeroOutcome::Refused, reason });
    assert!(!zero.holds("c1"));
    assert!(idle_spell(&mut zero, &config).await.is_empty(), "never tried again");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(observe(&mut zero, &config, &idle("c1")).is_empty());
    assert_eq!(outcomes(&dir), ["refused"]);
    // A container the daemon forgot (gone, or an id reused) may be tried.
    zero.forget("c1");
    assert_eq!(observe(&mut zero, &config, &idle("c1")), [Work::Freeze { container: "c1".into() }]);
}

#[tokio::test(start_paused = true)]
async fn a_policys_zero_freezes_only_after_a_quiet_spell() {
    let (mut zero, _dir) = bench(false);
    let config = config(FREEZE);
    let z = config.zero.expect("min=0");
    let running = ["c1".to_string()];
    assert!(observe(&mut zero, &config, &reading("c1", Metric::CONNECTIONS, 1.0)).is_empty());
    assert!(!zero.policy_zero(("s1", "web"), &config, z, (1, &running), "idle"), "work 0 s ago");
    tokio::time::advance(Duration::from_millis(2500)).await;
    assert!(!zero.policy_zero(("s1", "web"), &config, z, (1, &running), "idle"), "2.5 s: not quiet for 3 s");
    tokio::time::advance(Duration::from_millis(600)).await;
    assert!(zero.policy_zero(("s1", "web"), &config, z, (1, &running), "idle"));
    assert_eq!(zero.take_work(), [Work::Freeze { container: "c1".into() }]);
    // Two replicas: the policy's 0 is a scale-in first, not a freeze.
    let (mut other, _dir) = bench(false);
    let two = ["c1".to_string(), "c2".to_string()];
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!other.policy_zero(("s1", "web"), &config, z, (2, &two), "idle"));
}

#[tokio::test(start_paused = true)]
async fn a_frozen_replica_thaws_when_its_labels_stop_asking_and_at_shutdown() {
    let (mut zero, dir) = bench(false);
    let config = config(FREEZE);
    idle_spell(&mut zero, &config).await;
    done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS });
    zero.reconcile(&inventory(&[("s1", 1, FREEZE)], &[("c1", "s1")]));
    assert!(zero.take_work().is_empty(), "still asks to be frozen");
    zero.reconcile(&inventory(&[("s1", 1, &[("autoscale.min", "1")])], &[("c1", "s1")]));
    assert_eq!(zero.take_work(), [Work::Thaw { container: "c1".into() }]);
    done(&mut zero, Done::Thawed { container: "c1".into(), took: 20 * MS });
    assert_eq!(outcomes(&dir), ["frozen", "thawed"]);
    assert!(records(&dir)[1]["reason"].as_str().is_some_and(|r| r.contains("no longer scales to zero")));

    idle_spell(&mut zero, &config).await;
    done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS });
    zero.begin_shutdown();
    assert_eq!(zero.take_work(), [Work::Thaw { container: "c1".into() }]);
    assert!(zero.settling());
    done(&mut zero, Done::Thawed { container: "c1".into(), took: 20 * MS });
    assert!(!zero.settling());
}

// --- remove -------------------------------------------------------------

/// s1 at one replica c1, with `autoscale.zero=remove` on port 8080.
fn one_replica() -> Inventory {
    inventory(&[("s1", 1, REMOVE)], &[("c1", "s1")])
}

/// From idle to removed, with c1 still stopping.
async fn removed(zero: &mut Zero, config: &ServiceConfig) {
    zero.reconcile(&one_replica());
    assert_eq!(idle_spell(zero, config).await, [park(ParkMode::Hold, Some("c1"))]);
    assert_eq!(parked(zero, ParkMode::Hold, Ok(0)), [write(0)]);
    assert!(written(zero, 0, 0).is_empty(), "the old replica may still run: the ports stay on hold");
}

#[tokio::test(start_paused = true)]
async fn an_idle_service_is_removed_and_its_first_connection_attempt_brings_it_back() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    assert!(zero.take_work().is_empty(), "a service with a replica is not parked");
    assert_eq!(idle_spell(&mut zero, &config).await, [park(ParkMode::Hold, Some("c1"))]);
    assert!(zero.holds("c1"), "the last replica's readings are not load any more");
    assert!(observe(&mut zero, &config, &idle("c1")).is_empty(), "removed once");
    assert_eq!(parked(&mut zero, ParkMode::Hold, Ok(0)), [write(0)]);
    assert!(written(&mut zero, 0, 0).is_empty());
    let rec = &records(&dir)[0];
    assert_eq!((rec["zero"].as_str(), rec["docker_us"].as_u64()), (Some("removed"), Some(12_000)));
    assert_eq!(rec["ports"], serde_json::json!([8080]));
    assert_eq!(rec["container"], "c1");

    // The old replica's container goes: attempts a socket would take pass.
    zero.forget("c1");
    assert_eq!(zero.take_work(), [park(ParkMode::Lookup, None), look()]);
    assert!(parked(&mut zero, ParkMode::Lookup, Ok(0)).is_empty());
    assert!(done(&mut zero, Done::Listening { service_id: "s1".into(), listening: false }).is_empty());

    // A connection attempt: one replica back at once, no policy call.
    zero.on_port_attempt(8080, model::monotonic_ns());
    assert_eq!(zero.take_work(), [write(1)]);
    zero.on_port_attempt(8080, model::monotonic_ns());
    zero.on_port_attempt(9999, model::monotonic_ns());
    assert!(zero.take_work().is_empty(), "one restore; other ports are not ours");
    assert!(written(&mut zero, 1, 1).is_empty(), "looked a moment ago, nothing listens yet");
    // Unparked only once the new replica listens.
    zero.on_port_listen(8080);
    assert_eq!(zero.take_work(), [unpark()]);
    assert!(unparked(&mut zero).is_empty());
    let rec = &records(&dir)[1];
    assert_eq!((rec["zero"].as_str(), rec["docker_us"].as_u64()), (Some("restored"), Some(12_000)));
    assert!(rec["wake_us"].is_u64(), "{rec}");
    assert!(rec["reason"].as_str().is_some_and(|r| r.starts_with("a connection attempt")), "{rec}");
    // Back: it goes to zero again only after a whole idle spell.
    let running = ["c2".to_string()];
    zero.observe(("s1", "web"), &config, config.zero.expect("zero"), (1, &running), &idle("c2"));
    assert!(zero.take_work().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_connection_open_or_attempted_while_parking_calls_the_removal_off() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    assert_eq!(idle_spell(&mut zero, &config).await, [park(ParkMode::Hold, Some("c1"))]);
    assert_eq!(parked(&mut zero, ParkMode::Hold, Ok(2)), [unpark()], "two connections open: not now");
    assert!(unparked(&mut zero).is_empty());
    assert!(!zero.holds("c1"));
    assert_eq!(idle_spell(&mut zero, &config).await, [park(ParkMode::Hold, Some("c1"))]);
    zero.on_port_attempt(8080, model::monotonic_ns());
    assert!(zero.take_work().is_empty());
    assert_eq!(parked(&mut zero, ParkMode::Hold, Ok(0)), [unpark()], "an attempt while parking: not now");
    unparked(&mut zero);
    assert!(outcomes(&dir).is_empty(), "nothing was removed: {:?}", records(&dir));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_while_the_spec_goes_to_zero_brings_it_back_as_soon_as_it_is_written() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    idle_spell(&mut zero, &config).await;
    assert_eq!(parked(&mut zero, ParkMode::Hold, Ok(0)), [write(0)]);
    zero.on_port_attempt(8080, model::monotonic_ns());
    assert!(zero.take_work().is_empty(), "one write in flight at a time");
    assert_eq!(written(&mut zero, 0, 0), [write(1)]);
    assert_eq!(outcomes(&dir), ["removed"]);
    // The new replica listens before the old one is gone: still held, as
    // the old one could take the connection and be stopped with it.
    assert!(written(&mut zero, 1, 1).is_empty());
    zero.on_port_listen(8080);
    assert!(zero.take_work().is_empty());
    zero.forget("c1");
    assert_eq!(zero.take_work(), [park(ParkMode::Lookup, None), unpark()]);
    unparked(&mut zero);
    assert_eq!(outcomes(&dir), ["removed", "restored"]);
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_finds_a_service_at_zero_holds_its_ports_again() {
    let (mut zero, dir) = bench(false);
    zero.reconcile(&inventory(&[("s1", 0, REMOVE)], &[]));
    assert_eq!(zero.take_work(), [park(ParkMode::Lookup, None)]);
    zero.reconcile(&inventory(&[("s1", 0, REMOVE)], &[]));
    assert!(zero.take_work().is_empty(), "parked once");
    assert_eq!(parked(&mut zero, ParkMode::Lookup, Ok(0)), [look()]);
    let rec = &records(&dir)[0];
    assert_eq!(rec["zero"], "removed");
    assert!(rec["reason"].as_str().is_some_and(|r| r.contains("found at 0 replicas")), "{rec}");
    zero.on_port_attempt(8080, model::monotonic_ns());
    assert_eq!(zero.take_work(), [write(1)]);
    // A min=0 freeze service at 0 (an operator's scale) is no concern of ours.
    let (mut other, _dir) = bench(false);
    other.reconcile(&inventory(&[("s1", 0, FREEZE)], &[]));
    assert!(other.take_work().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_port_something_else_listens_on_is_not_parked_for_a_service_at_zero() {
    let (mut zero, dir) = bench(false);
    zero.port_taken = crate::probe::listening;
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("a host listener");
    let port = other.local_addr().expect("addr").port().to_string();
    let labels: &[(&str, &str)] = &[("autoscale.zero", "remove"), ("autoscale.port", port.as_str())];
    zero.reconcile(&inventory(&[("s1", 0, labels)], &[]));
    assert!(zero.take_work().is_empty(), "nothing parked: the port is another listener's");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["zero"], "refused");
    let reason = recs[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("port {port} is not this service's")), "{reason}");
    // The listener leaves: held at the next look.
    drop(other);
    zero.reconcile(&inventory(&[("s1", 0, labels)], &[]));
    assert_eq!(zero.take_work().len(), 1, "parked once the port is free");
}

#[tokio::test(start_paused = true)]
async fn a_removed_service_whose_labels_stop_asking_is_restored_and_unparked() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    removed(&mut zero, &config).await;
    zero.reconcile(&inventory(&[("s1", 0, &[("autoscale.port", "8080")])], &[]));
    let work = zero.take_work();
    assert!(work.contains(&write(1)), "{work:?}");
    written(&mut zero, 1, 1);
    let work = done(&mut zero, Done::Listening { service_id: "s1".into(), listening: true });
    assert_eq!(work, [unpark()]);
    unparked(&mut zero);
    let rec = &records(&dir)[1];
    assert_eq!(rec["zero"], "restored");
    assert!(rec["reason"].as_str().is_some_and(|r| r.contains("no longer scales to zero by removal")), "{rec}");
}

#[tokio::test(start_paused = true)]
async fn a_removed_service_scaled_up_by_an_operator_is_unparked_once_it_listens() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    removed(&mut zero, &config).await;
    zero.reconcile(&inventory(&[("s1", 2, REMOVE)], &[]));
    let work = zero.take_work();
    assert!(!work.contains(&write(1)), "no write: the operator's count stands: {work:?}");
    assert!(work.contains(&look()), "{work:?}");
    let work = done(&mut zero, Done::Listening { service_id: "s1".into(), listening: true });
    assert_eq!(work, [unpark()]);
    unparked(&mut zero);
    assert!(records(&dir)[1]["reason"].as_str().is_some_and(|r| r.contains("scaled to 2 replicas")));
}

#[tokio::test(start_paused = true)]
async fn a_service_gone_from_swarm_is_unparked_without_a_record() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    removed(&mut zero, &config).await;
    zero.reconcile(&inventory(&[], &[]));
    assert_eq!(zero.take_work(), [unpark()]);
    unparked(&mut zero);
    assert_eq!(outcomes(&dir), ["removed"]);
}

#[tokio::test(start_paused = true)]
async fn two_services_on_one_port_are_refused_until_one_leaves() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    let both = inventory(&[("s1", 1, REMOVE), ("s2", 1, &[("autoscale.port", "8080")])], &[("c1", "s1")]);
    zero.reconcile(&both);
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "refused once: {recs:?}");
    assert_eq!(recs[0]["zero"], "refused");
    assert!(recs[0]["reason"].as_str().is_some_and(|r| r.contains("port 8080 is also the port of service svc-s2")));
    // Alone on its port, and idle all along: removed at its next reading.
    zero.reconcile(&one_replica());
    assert_eq!(observe(&mut zero, &config, &idle("c1")), [park(ParkMode::Hold, Some("c1"))]);
}

/// Issue 24 item 2: a service that is not autoscaled but publishes the
/// port is another service's port too: the removal is refused, naming it.
#[tokio::test(start_paused = true)]
async fn a_port_a_service_that_is_not_autoscaled_publishes_is_refused() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    let mut inventory = inventory(&[("s1", 1, REMOVE)], &[("c1", "s1")]);
    inventory.apply(Change::Service(ServiceInfo {
        id: "s9".into(),
        name: "plain".into(),
        version: 1,
        replicas: Some(1),
        labels: HashMap::new(),
        published: vec![crate::swarm::labels::Published { port: 8080, host_mode: false }],
    }));
    zero.reconcile(&inventory);
    assert!(idle_spell(&mut zero, &config).await.is_empty(), "nothing parked");
    let recs = records(&dir);
    assert_eq!(recs.len(), 1, "refused once: {recs:?}");
    assert!(recs[0]["reason"].as_str().is_some_and(|r| r.contains("port 8080 is also the port of service plain")));
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_cannot_park_refuses_the_removal_for_good() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    idle_spell(&mut zero, &config).await;
    let why = "holding connections ... needs CAP_NET_ADMIN".to_string();
    assert_eq!(parked(&mut zero, ParkMode::Hold, Err(why)), [unpark()]);
    assert!(!zero.holds("c1"));
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    assert_eq!(outcomes(&dir), ["refused"]);
    assert!(records(&dir)[0]["reason"].as_str().is_some_and(|r| r.contains("CAP_NET_ADMIN")));
}

#[tokio::test(start_paused = true)]
async fn a_restored_service_that_never_listens_is_unparked_after_the_timeout() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    removed(&mut zero, &config).await;
    zero.forget("c1");
    assert_eq!(zero.take_work(), [park(ParkMode::Lookup, None), look()]);
    done(&mut zero, Done::Listening { service_id: "s1".into(), listening: false });
    zero.on_port_attempt(8080, model::monotonic_ns());
    written(&mut zero, 1, 1);
    let mut looks = 0;
    let start = Instant::now();
    while let Some(at) = zero.next_tick() {
        tokio::time::advance(at.saturating_duration_since(Instant::now()) + MS).await;
        zero.tick();
        for work in zero.take_work() {
            match work {
                Work::CheckListening { .. } => {
                    looks += 1;
                    zero.on_done(Done::Listening { service_id: "s1".into(), listening: false });
                }
                Work::Unpark { .. } => zero.on_done(Done::Unparked { service_id: "s1".into() }),
                other => panic!("{other:?}"),
            }
        }
    }
    let waited = start.elapsed();
    assert!((LISTEN_TIMEOUT..LISTEN_TIMEOUT + 2 * LISTEN_CHECK).contains(&waited), "{waited:?}");
    assert!(looks >= 50, "looked every second: {looks}");
    let rec = &records(&dir)[1];
    assert_eq!(rec["zero"], "restored");
    assert!(rec["reason"].as_str().is_some_and(|r| r.contains("nothing listened within 1m")), "{rec}");
}

#[tokio::test(start_paused = true)]
async fn an_operator_scale_during_the_removal_calls_it_off() {
    let (mut zero, dir) = bench(false);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    idle_spell(&mut zero, &config).await;
    parked(&mut zero, ParkMode::Hold, Ok(0));
    assert_eq!(written(&mut zero, 0, 3), [unpark()], "the spec says 3: nothing removed");
    unparked(&mut zero);
    assert!(outcomes(&dir).is_empty());
}

#[tokio::test(start_paused = true)]
async fn dry_run_and_multi_node_mode_remove_nothing() {
    let (mut zero, dir) = bench(true);
    let config = config(REMOVE);
    zero.reconcile(&one_replica());
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    zero.reconcile(&inventory(&[("s1", 0, REMOVE)], &[]));
    assert!(zero.take_work().is_empty());
    let freeze = super::tests::config(FREEZE);
    assert!(idle_spell(&mut zero, &freeze).await.is_empty());
    assert!(outcomes(&dir).is_empty());

    let (mut zero, dir) = bench(false);
    zero.refuse_cluster();
    zero.reconcile(&one_replica());
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    assert!(idle_spell(&mut zero, &config).await.is_empty());
    assert_eq!(outcomes(&dir), ["refused"]);
    assert!(records(&dir)[0]["reason"].as_str().is_some_and(|r| r.contains("not supported with --cluster")));
}

#[tokio::test(start_paused = true)]
async fn in_multi_node_mode_a_replica_woken_on_its_node_is_audited_and_outlives_the_decider_frozen() {
    let (mut zero, dir) = bench(false);
    zero.refuse_cluster();
    let config = config(FREEZE);
    assert_eq!(idle_spell(&mut zero, &config).await, [Work::Freeze { container: "c1".into() }]);
    done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS });
    let service = ("s1".to_string(), "web".to_string());
    let woken = Done::WokenOnNode { container: "c1".into(), service: service.clone(), took: 20 * MS, wake: 22 * MS };
    assert!(done(&mut zero, woken).is_empty(), "the node thawed it: nothing to do here");
    assert!(!zero.holds("c1"));
    let rec = &records(&dir)[1];
    assert_eq!((rec["zero"].as_str(), rec["wake_us"].as_u64()), (Some("woken"), Some(22_000)));
    // Frozen under an earlier decider: audited all the same.
    let earlier = Done::WokenOnNode { container: "c9".into(), service, took: 20 * MS, wake: 25 * MS };
    done(&mut zero, earlier);
    assert!(records(&dir)[2]["reason"].as_str().is_some_and(|r| r.contains("earlier decider")));
    // The decider stopping leaves frozen replicas to their nodes' agents.
    idle_spell(&mut zero, &config).await;
    done(&mut zero, Done::Frozen { container: "c1".into(), took: 30 * MS });
    zero.begin_shutdown();
    assert!(zero.take_work().is_empty() && !zero.settling());
}

#[test]
fn connections_and_cpu_above_the_lower_threshold_are_work() {
    let mut config = config(FREEZE);
    assert!(is_busy(&reading("c", Metric::CONNECTIONS, 1.0), &config));
    assert!(!is_busy(&reading("c", Metric::CONNECTIONS, 0.0), &config));
    assert!(is_busy(&accepted("c", 2), &config));
    assert!(!is_busy(&reading("c", Metric::CPU, 0.01), &config));
    assert!(is_busy(&reading("c", Metric::CPU, IDLE_CPU), &config));
    config.thresholds = Thresholds::default().with(&Metric::CPU, Band { upper: Some(0.8), lower: Some(0.2) });
    assert!(!is_busy(&reading("c", Metric::CPU, 0.1), &config));
    assert!(is_busy(&reading("c", Metric::CPU, 0.3), &config));
    assert!(!is_busy(&reading("c", Metric::MEMORY, 1e9), &config));
}
