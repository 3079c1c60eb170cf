//! The whole loop driven with fakes, in the spirit of the HPA controller's
//! `horizontal_test.go`: Docker's changes, probe readings and the policies
//! folder's changes go in; policy calls (a real compiled policy on the real
//! policy workers), Swarm writes, the probe's tracking and the status
//! board come out, and are asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Loop, Outside, Parts, Tracker, ZeroRunner};
use crate::daemon::policy_workers::{Decided, PolicyWorkers};
use crate::daemon::testing::{self, THRESHOLD};
use crate::daemon::zero::{Work, Zero};
use crate::metrics::Metrics;
use crate::model::{self, EventKind, Metric, Tracked, Unit};
use crate::policy::PolicySet;
use crate::probe::{ProbeEvent, ProbeStats};
use crate::reload;
use crate::status::Board;
use crate::swarm::inventory::{Change, ContainerInfo, ServiceInfo};
use crate::swarm::writer::{Current, WriteError, Writer};
use crate::swarm::{Actuator, ActuatorOptions, Audit};

/// The loop's outside parts, all fakes.
#[derive(Debug)]
struct Fakes;

impl Outside for Fakes {
    type Writer = FakeSwarm;
    type Probe = FakeProbe;
    type Zero = FakeZero;
}

/// The probe: what it was told, in order.
#[derive(Debug, Clone, Default)]
struct FakeProbe(Arc<Mutex<Vec<String>>>);

impl FakeProbe {
    fn told(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

impl Tracker for FakeProbe {
    fn track(&self, tracked: Tracked) {
        self.0.lock().expect("lock").push(format!("track {}", tracked.container_id));
    }

    fn untrack(&self, container_id: &str) {
        self.0.lock().expect("lock").push(format!("untrack {container_id}"));
    }

    fn stats(&self) -> ProbeStats {
        ProbeStats::default()
    }
}

/// Scale to zero's I/O: the work it was given.
#[derive(Debug, Clone, Default)]
struct FakeZero(Arc<Mutex<Vec<Work>>>);

impl ZeroRunner<FakeSwarm> for FakeZero {
    fn run(&self, work: Work, _: &mut Actuator<FakeSwarm>) {
        self.0.lock().expect("lock").push(work);
    }

    fn unreachable(&self, work: Work, _: Option<&str>) {
        self.0.lock().expect("lock").push(work);
    }
}

/// Swarm's service specs: replicas by service id, one version counter,
/// every write.
#[derive(Debug, Clone, Default)]
struct FakeSwarm(Arc<Mutex<Specs>>);

#[derive(Debug, Default)]
struct Specs {
    replicas: HashMap<String, u32>,
    version: u64,
    writes: Vec<(String, u32)>,
}

impl FakeSwarm {
    fn set(&self, service: &str, replicas: u32) {
        self.0.lock().expect("lock").replicas.insert(service.to_string(), replicas);
    }

    fn writes(&self) -> Vec<(String, u32)> {
        self.0.lock().expect("lock").writes.clone()
    }
}

impl Writer for FakeSwarm {
    async fn read(&self, service_id: &str) -> Result<Current, WriteError> {
        let specs = self.0.lock().expect("lock");
        let replicas = *specs.replicas.get(service_id).ok_or(WriteError::NotFound)?;
        Ok(Current { replicas: Some(replicas), version: specs.version, ..Current::default() })
    }

    async fn scale(&self, service_id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        let mut specs = self.0.lock().expect("lock");
        if current.version != specs.version {
            return Err(WriteError::Conflict);
        }
        specs.version += 1;
        specs.replicas.insert(service_id.to_string(), replicas);
        specs.writes.push((service_id.to_string(), replicas));
        Ok(())
    }

    async fn set_replicas(&self, service_id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        self.scale(service_id, current, replicas).await
    }
}

/// The loop and its fakes.
struct World {
    lp: Loop<Fakes>,
    answers: mpsc::Receiver<Decided>,
    probe: FakeProbe,
    swarm: FakeSwarm,
    zero: FakeZero,
    policies: PolicySet,
    board: Arc<Board>,
}

/// A loop with the threshold policy loaded, nothing read from Docker yet.
fn world() -> World {
    let (tx, answers) = mpsc::channel(64);
    let audit = Arc::new(Audit::log_only());
    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(Board::default());
    let swarm = FakeSwarm::default();
    let (probe, zero) = (FakeProbe::default(), FakeZero::default());
    let policies = testing::policy_set(&[("threshold", THRESHOLD)]);
    let lp = Loop::new(Parts::<Fakes> {
        probe: probe.clone(),
        policies: policies.clone(),
        actuator: Actuator::new(swarm.clone(), ActuatorOptions::default(), audit.clone()),
        policy_workers: PolicyWorkers::new(tx),
        zero: Zero::new(audit, metrics.clone(), false),
        zero_io: zero.clone(),
        metrics,
        board: board.clone(),
        view_window: Duration::from_secs(3),
    });
    World { lp, answers, probe, swarm, zero, policies, board }
}

/// Service `s1`, `web`: the threshold policy, 1..=5 replicas, out at a
/// CPU mean of 0.6, in at 0.1.
fn web(replicas: u32) -> ServiceInfo {
    let labels = testing::labels(&[
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "5"),
        ("autoscale.cpu.upper", "0.6"),
        ("autoscale.cpu.lower", "0.1"),
        ("autoscale.cooldown.up", "0s"),
    ]);
    ServiceInfo {
        id: "s1".into(),
        name: "web".into(),
        version: 1,
        replicas: Some(replicas),
        labels,
        published: Vec::new(),
    }
}

/// A replica of `service` running long past its warm-up.
fn replica(id: &str, service: &str) -> ContainerInfo {
    ContainerInfo { id: id.into(), service_id: service.into(), node_id: "node1".into(), started_ns: 0 }
}

/// A CPU sample of `container`, now.
fn cpu(container: &str, value: f64) -> ProbeEvent {
    ProbeEvent::Reading(crate::probe::Reading {
        container_id: container.into(),
        metric: Metric::CPU,
        value,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        timestamp_ns: model::monotonic_ns(),
    })
}

/// Docker's first full read: `web` with replicas c1 and c2.
fn read_docker(w: &mut World) {
    w.swarm.set("s1", 2);
    w.lp.on_inventory_change(Change::Resync {
        services: vec![web(2)],
        containers: vec![replica("c1", "s1"), replica("c2", "s1")],
    });
}

/// Wait until the fake Swarm saw `writes`.
async fn written(swarm: &FakeSwarm, writes: &[(&str, u32)]) {
    let want: Vec<(String, u32)> = writes.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    for _ in 0..500 {
        if swarm.writes() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(swarm.writes(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_reaches_the_policy_with_the_service_state_and_its_decision_is_written() {
    let mut w = world();
    read_docker(&mut w);
    assert_eq!(w.probe.told(), ["track c1", "track c2"]);
    let report = w.board.report(0);
    assert!(report.ready && report.services[0].autoscaled, "{report:?}");
    assert_eq!(report.inventory_reads, 1);

    // Right after the read, a service waits for each replica's first
    // reading: one hot replica alone is not the service.
    w.lp.on_probe_event(cpu("c1", 0.9));
    assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none());
    w.lp.on_probe_event(cpu("c2", 0.5));
    let done = testing::answer(&mut w.answers).await;
    let (event, state) = (&done.job.event, &done.job.state);
    assert_eq!((event.service_id.as_str(), event.service_name.as_str()), ("s1", "web"));
    assert_eq!((event.container_id.as_str(), event.value), ("c2", 0.5));
    assert_eq!((state.current_replicas, state.min_replicas, state.max_replicas), (2, 1, 5));
    let aggregate = state.aggregate(&Metric::CPU).expect("a cpu aggregate").clone();
    assert_eq!(aggregate.reporting, 2);
    assert!((aggregate.value.mean - 0.7).abs() < 1e-9, "{aggregate:?}");
    let decision = done.result.as_ref().expect("decided").clone().expect("a decision");
    assert_eq!(decision.target(), Some(3), "{decision:?}");

    w.lp.on_decided(done);
    written(&w.swarm, &[("s1", 3)]).await;
    let shown = &w.board.report(0).services[0];
    assert_eq!(shown.metrics[0].metric, "cpu");
    assert_eq!(shown.metrics[0].aggregate.map(|a| a.mean), Some(aggregate.value.mean));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_control_signal_reaches_a_policy_through_the_loop() {
    use crate::probe::Signal;
    let mut w = world();
    read_docker(&mut w);
    // Both replicas reported: the service is ready, and every reading from
    // now on asks the policy.
    w.lp.on_probe_event(cpu("c1", 0.3));
    w.lp.on_probe_event(cpu("c2", 0.3));
    testing::answer(&mut w.answers).await;
    let at = model::monotonic_ns();
    for container in ["c1", "c2"] {
        let container_id = container.to_string();
        w.lp.on_probe_event(ProbeEvent::Signal(Signal::Accepted {
            container_id: container_id.clone(),
            count: 7,
            timestamp_ns: at,
        }));
        w.lp.on_probe_event(ProbeEvent::Signal(Signal::MemoryLimit {
            container_id: container_id.clone(),
            bytes: 1 << 30,
            timestamp_ns: at,
        }));
        w.lp.on_probe_event(ProbeEvent::Signal(Signal::Wake { container_id, timestamp_ns: at }));
    }
    w.lp.on_probe_event(ProbeEvent::Signal(Signal::PortSyn { port: 8080, timestamp_ns: at }));
    w.lp.on_probe_event(ProbeEvent::Signal(Signal::PortListen { port: 8080, timestamp_ns: at }));
    assert!(
        testing::no_answer(&mut w.answers, Duration::from_millis(300)).await.is_none(),
        "a control signal asked the policy"
    );
    // The next reading does, and its state holds readings only.
    w.lp.on_probe_event(cpu("c1", 0.35));
    let done = testing::answer(&mut w.answers).await;
    assert_eq!(done.job.event.metric, Metric::CPU);
    let names: Vec<&str> = done.job.state.metrics.iter().map(|a| a.metric.name()).collect();
    assert_eq!(names, ["cpu"], "only readings are aggregated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_for_a_service_removed_meanwhile_is_dropped() {
    let mut w = world();
    read_docker(&mut w);
    w.lp.on_probe_event(cpu("c1", 0.9));
    w.lp.on_probe_event(cpu("c2", 0.9));
    let done = testing::answer(&mut w.answers).await;
    assert!(matches!(&done.result, Ok(Some(_))), "{:?}", done.result);
    // Removed while its policy ran.
    w.lp.on_inventory_change(Change::ServiceRemoved { id: "s1".into() });
    w.lp.on_decided(done);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.swarm.writes().is_empty(), "wrote to a removed service: {:?}", w.swarm.writes());
    assert!(w.board.report(0).services.is_empty());
    // Its replicas' readings are not decided on any more.
    w.lp.on_probe_event(cpu("c1", 0.95));
    assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_of_unknown_containers_and_unloaded_policies_call_no_policy() {
    let mut w = world();
    read_docker(&mut w);
    // A container Docker did not list as a task's.
    w.lp.on_probe_event(cpu("stranger", 0.99));
    assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none());
    // The policy's file is deleted: the service says why, and is not decided.
    w.policies.remove("threshold");
    w.lp.on_policy_change(reload::Change::Unloaded("threshold".into()));
    let shown = &w.board.report(0).services[0];
    assert!(!shown.autoscaled);
    assert!(shown.problems.iter().any(|p| p.contains("threshold")), "{:?}", shown.problems);
    w.lp.on_probe_event(cpu("c1", 0.9));
    w.lp.on_probe_event(cpu("c2", 0.9));
    assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none());
    assert!(w.swarm.writes().is_empty());
    assert!(w.zero.0.lock().expect("lock").is_empty(), "no scale to zero for a min=1 service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_coming_back_rebuilds_tracking_and_forgets_old_readings() {
    let mut w = world();
    read_docker(&mut w);
    w.probe.told();
    w.lp.on_probe_event(cpu("c1", 0.9));
    // Docker restarted meanwhile: c2 was replaced by c3.
    w.lp.on_inventory_change(Change::Resync {
        services: vec![web(2)],
        containers: vec![replica("c1", "s1"), replica("c3", "s1")],
    });
    assert_eq!(w.probe.told(), ["untrack c1", "untrack c2", "track c1", "track c3"]);
    assert_eq!(w.board.report(0).inventory_reads, 2);
    // c1's reading from before the read is forgotten: the service waits
    // for both replicas again.
    w.lp.on_probe_event(cpu("c3", 0.9));
    assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none());
    w.lp.on_probe_event(cpu("c1", 0.9));
    let done = testing::answer(&mut w.answers).await;
    assert_eq!(done.job.state.aggregate(&Metric::CPU).map(|a| a.reporting), Some(2));
}

/// Multi-node mode: the loop of a manager with a real decider endpoint on
/// loopback, and real agents for two nodes.
mod multi_node {
    use tokio::sync::watch;

    use super::*;
    use crate::cluster::{AgentHandle, ChannelSettings, Leadership, RemoteEvent, Token};
    use crate::daemon::multi_node::ClusterTracking;

    fn settings() -> ChannelSettings {
        ChannelSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            heartbeat: Duration::from_millis(200),
            handshake_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_millis(1000),
            reconnect_base: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(200),
            ..ChannelSettings::default()
        }
    }

    fn on(id: &str, node: &str) -> ContainerInfo {
        ContainerInfo { node_id: node.into(), ..replica(id, "s1") }
    }

    fn leading(is_leader: bool) -> Leadership {
        Leadership { is_leader, leader_addr: None }
    }

    async fn remote(events: &mut mpsc::Receiver<RemoteEvent>) -> RemoteEvent {
        tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("an event in time").expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_leader_decides_on_what_each_node_measures_of_its_own_replicas() {
        let mut w = world();
        let token = Token::new(b"a test token, long enough").expect("token");
        let (leadership, follow) = watch::channel(leading(true));
        let (tracking, mut inputs) = ClusterTracking::bind_for_test(settings(), token.clone(), follow).await;
        let addr = tracking.local_addr().to_string();
        w.lp.set_cluster(tracking);
        w.lp.on_leadership_change();
        let agents: Vec<AgentHandle> = ["node1", "node2"]
            .iter()
            .map(|node| {
                AgentHandle::spawn(settings(), token.clone(), node.to_string(), node.to_string(), vec![addr.clone()])
            })
            .collect();

        // web has c1 on node1 and c2 on node2: each node's agent is told
        // to measure its own replica; the manager's own probe is not told.
        w.swarm.set("s1", 2);
        w.lp.on_inventory_change(Change::Resync {
            services: vec![web(2)],
            containers: vec![on("c1", "node1"), on("c2", "node2")],
        });
        assert!(w.probe.told().is_empty(), "each node's agent drives its own probe");
        for (agent, container) in agents.iter().zip(["c1", "c2"]) {
            let mut set = agent.tracking();
            tokio::time::timeout(Duration::from_secs(5), set.wait_for(|s| s.is_some()))
                .await
                .expect("a tracking set in time")
                .expect("open");
            let ids: Vec<String> =
                set.borrow().as_ref().expect("a set").iter().map(|t| t.container_id.clone()).collect();
            assert_eq!(ids, [container]);
        }

        // A node reporting a container the inventory places elsewhere is ignored.
        w.lp.on_remote_event(RemoteEvent { node_id: "node2".into(), event: cpu("c1", 0.99) });
        // Each node's reading of its own replica, over the channel: decided
        // on the aggregate of both.
        agents[0].forward(cpu("c1", 0.8));
        agents[1].forward(cpu("c2", 0.9));
        for _ in 0..2 {
            let event = remote(&mut inputs.events).await;
            w.lp.on_remote_event(event);
        }
        let done = testing::answer(&mut w.answers).await;
        let aggregate = done.job.state.aggregate(&Metric::CPU).expect("cpu").clone();
        assert_eq!(aggregate.reporting, 2);
        assert!((aggregate.value.mean - 0.85).abs() < 1e-9, "{aggregate:?}");
        assert_eq!(done.result.as_ref().ok().cloned().flatten().and_then(|d| d.target()), Some(3));

        // Leadership moved while the policy ran: the decision is dropped
        // (the new leader decides on what its agents send), and so is what
        // arrives now.
        leadership.send(leading(false)).expect("send");
        w.lp.on_leadership_change();
        w.lp.on_decided(done);
        w.lp.on_remote_event(RemoteEvent { node_id: "node1".into(), event: cpu("c1", 0.9) });
        w.lp.on_remote_event(RemoteEvent { node_id: "node2".into(), event: cpu("c2", 0.9) });
        assert!(testing::no_answer(&mut w.answers, Duration::from_millis(300)).await.is_none());
        assert!(w.swarm.writes().is_empty(), "a standby wrote: {:?}", w.swarm.writes());

        // Leading again: a new term starts from what the agents send now.
        leadership.send(leading(true)).expect("send");
        w.lp.on_leadership_change();
        w.lp.on_remote_event(RemoteEvent { node_id: "node1".into(), event: cpu("c1", 0.9) });
        assert!(testing::no_answer(&mut w.answers, Duration::from_millis(200)).await.is_none(), "waits for node2");
        w.lp.on_remote_event(RemoteEvent { node_id: "node2".into(), event: cpu("c2", 0.9) });
        let done = testing::answer(&mut w.answers).await;
        w.lp.on_decided(done);
        written(&w.swarm, &[("s1", 3)]).await;
    }
}
