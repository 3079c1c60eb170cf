//! The channel end to end over loopback TCP: real sockets, real
//! handshakes, the decider and agents as the daemon would run them; only
//! leadership is set by the test instead of read from Swarm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::*;
use crate::model::{Band, EventKind, Metric, Thresholds, Unit, monotonic_ns};
use crate::probe::Reading;

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

fn token() -> Token {
    Token::new(b"a test token, long enough").expect("token")
}

fn leader(is_leader: bool, leader_addr: Option<String>) -> (watch::Sender<Leadership>, watch::Receiver<Leadership>) {
    watch::channel(Leadership { is_leader, leader_addr })
}

fn event(container: &str, value: f64) -> ProbeEvent {
    ProbeEvent::Reading(Reading {
        container_id: container.into(),
        metric: Metric::CPU,
        value,
        unit: Unit::FractionOfLimit,
        kind: EventKind::Sample,
        timestamp_ns: monotonic_ns(),
    })
}

/// The reading a remote event carries.
fn reading(event: &ProbeEvent) -> &Reading {
    match event {
        ProbeEvent::Reading(r) => r,
        ProbeEvent::Signal(s) => panic!("a reading was sent, got {s:?}"),
    }
}

fn tracked(container: &str) -> Tracked {
    Tracked {
        container_id: container.into(),
        thresholds: Thresholds::default().with(&Metric::CPU, Band { upper: Some(0.7), lower: Some(0.2) }),
    }
}

struct Endpoint {
    decider: Decider,
    leadership: watch::Sender<Leadership>,
    events: mpsc::Receiver<RemoteEvent>,
    membership: mpsc::UnboundedReceiver<Membership>,
}

async fn endpoint(settings: ChannelSettings, is_leader: bool, capacity: usize) -> Endpoint {
    let (leadership, rx) = leader(is_leader, None);
    let (events_tx, events) = mpsc::channel(capacity);
    let (membership_tx, membership) = mpsc::unbounded_channel();
    let decider = Decider::bind(settings, token(), rx, events_tx, membership_tx).await.expect("bind");
    Endpoint { decider, leadership, events, membership }
}

/// Poll `check` every 10 ms until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn next_event(events: &mut mpsc::Receiver<RemoteEvent>) -> RemoteEvent {
    tokio::time::timeout(Duration::from_secs(3), events.recv()).await.expect("an event in time").expect("open")
}

#[tokio::test]
async fn events_flow_to_the_decider_and_tracking_sets_flow_back() {
    let mut ep = endpoint(settings(), true, 64).await;
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    eventually(Duration::from_secs(3), "agent connected", || agent.is_connected()).await;
    assert_eq!(
        ep.membership.recv().await,
        Some(Membership::Live { node_id: "node-a".into(), hostname: "host-a".into() })
    );

    ep.decider.set_tracking("node-a", &[tracked("c1"), tracked("c2")]);
    let mut tracking = agent.tracking();
    tokio::time::timeout(Duration::from_secs(3), tracking.wait_for(|t| t.is_some()))
        .await
        .expect("in time")
        .expect("open");
    let set = tracking.borrow().clone().expect("a set");
    assert_eq!(*set, vec![tracked("c1"), tracked("c2")]);

    let sent = event("c1", 0.93);
    agent.forward(sent.clone());
    let got = next_event(&mut ep.events).await;
    assert_eq!(got.node_id, "node-a");
    assert_eq!((reading(&got.event).container_id.as_str(), reading(&got.event).value), ("c1", 0.93));
    // Re-based on the receiver's clock: never in the future, and recent.
    let now = monotonic_ns();
    assert!(got.event.timestamp_ns() <= now && now - got.event.timestamp_ns() < 1_000_000_000);
    assert_eq!(ep.decider.live_nodes(), vec![("node-a".to_string(), "host-a".to_string())]);
    assert_eq!(agent.stats().forwarded, 1);
}

/// Issue 25: a node's set over one frame (10,000 containers at the default
/// 1 MiB cap) used to fail every session at its first frame; it travels in
/// pieces, the session holds, events flow, and a later set replaces it.
#[tokio::test]
async fn an_agent_tracking_ten_thousand_containers_connects_and_works() {
    let ids: Vec<String> = (0..10_000).map(|i| format!("{i:064x}")).collect();
    let big: Vec<Tracked> = ids.iter().map(|id| tracked(id)).collect();
    let json =
        serde_json::to_vec(&wire::DeciderMsg::Track { containers: big.iter().map(wire::WireTracked::from).collect() })
            .expect("json");
    assert!(json.len() > frame::DEFAULT_MAX_FRAME, "the set must be over one frame: {} bytes", json.len());

    let mut ep = endpoint(settings(), true, 64).await;
    // Set before the node connects: the first thing its session sends.
    ep.decider.set_tracking("node-a", &big);
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    let mut tracking = agent.tracking();
    tokio::time::timeout(Duration::from_secs(5), tracking.wait_for(|t| t.as_ref().is_some_and(|s| s.len() == 10_000)))
        .await
        .expect("the whole set in time")
        .expect("open");
    assert_eq!(*tracking.borrow().clone().expect("a set"), big);

    agent.forward(event(&ids[9_999], 0.5));
    let got = next_event(&mut ep.events).await;
    assert_eq!(reading(&got.event).container_id, ids[9_999]);

    // A second large set replaces the first, on the same session.
    let next: Vec<Tracked> = ids.iter().skip(1).map(|id| tracked(id)).collect();
    ep.decider.set_tracking("node-a", &next);
    tokio::time::timeout(Duration::from_secs(5), tracking.wait_for(|t| t.as_ref().is_some_and(|s| s.len() == 9_999)))
        .await
        .expect("the new set in time")
        .expect("open");
    // Past several heartbeats, still the one session.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(agent.is_connected());
    assert_eq!(agent.stats().sessions, 1, "the session never broke");
    assert_eq!(ep.decider.stats().sessions, 1);
}

#[tokio::test]
async fn scale_to_zero_commands_reach_the_node_and_its_reports_come_back() {
    let ep = endpoint(settings(), true, 64).await;
    let mut reports = ep.decider.take_zero_reports().expect("the reports, once");
    assert!(ep.decider.take_zero_reports().is_none());
    let id = "c1".repeat(32);
    let freeze = ZeroCommand::Freeze { container_id: id.clone() };
    assert!(!ep.decider.send_zero("node-a", freeze.clone()), "no session: the command is not taken");
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    let mut commands = agent.take_zero_commands().expect("the commands, once");
    // A report made before any session waits for one.
    agent.report(ZeroReport::Busy { container_id: "c0".into() });
    eventually(Duration::from_secs(3), "agent connected", || agent.is_connected()).await;
    ep.decider.set_tracking("node-a", &[tracked(&id)]);
    eventually(Duration::from_secs(3), "tracking set received", || agent.tracking().borrow().is_some()).await;
    // Forged or foreign ids never reach the node's Docker: only the
    // tracked container's freeze comes out, in order after them.
    for forged in [
        ZeroCommand::Thaw { container_id: "../../containers/json".into() },
        ZeroCommand::Thaw { container_id: id[..12].to_string() },
        ZeroCommand::Recover { container_id: "d".repeat(64) },
    ] {
        assert!(ep.decider.send_zero("node-a", forged));
    }
    assert!(ep.decider.send_zero("node-a", freeze.clone()));
    let got = tokio::time::timeout(Duration::from_secs(3), commands.recv()).await.expect("in time");
    assert_eq!(got, Some(freeze));
    let woken = ZeroReport::Thawed { container_id: "c1".into(), took_us: 20_000, wake_us: Some(22_000) };
    agent.report(woken.clone());
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(tokio::time::timeout(Duration::from_secs(3), reports.recv()).await.expect("in time").expect("open"));
    }
    assert_eq!(got[0], RemoteZero { node_id: "node-a".into(), report: ZeroReport::Busy { container_id: "c0".into() } });
    assert_eq!(got[1], RemoteZero { node_id: "node-a".into(), report: woken });
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_nothing_flows() {
    let mut ep = endpoint(settings(), true, 64).await;
    let addr = ep.decider.local_addr().to_string();
    let intruder = Token::new(b"not the cluster's token").expect("token");
    let agent = AgentHandle::spawn(settings(), intruder, "node-x".into(), "host-x".into(), vec![addr]);
    ep.decider.set_tracking("node-x", &[tracked("c1")]);
    agent.forward(event("c1", 0.9));
    eventually(Duration::from_secs(3), "refusals counted", || ep.decider.stats().refused >= 2).await;
    assert!(!agent.is_connected());
    assert!(agent.tracking().borrow().is_none(), "an unauthenticated agent learns nothing");
    assert!(ep.events.try_recv().is_err(), "no event from an unauthenticated agent");
    assert!(ep.membership.try_recv().is_err());
    assert_eq!(ep.decider.stats().sessions, 0);
}

#[tokio::test]
async fn a_raw_peer_cannot_make_the_decider_buffer_a_large_frame() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ep = endpoint(settings(), true, 64).await;
    let mut stream = tokio::net::TcpStream::connect(ep.decider.local_addr()).await.expect("connect");
    stream.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    let mut rest = Vec::new();
    // The decider closes at once, having sent nothing.
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await.expect("closed in time").ok();
    assert!(rest.is_empty(), "nothing is sent to an unauthenticated peer: {rest:?}");
    eventually(Duration::from_secs(1), "refusal counted", || ep.decider.stats().refused == 1).await;
}

/// Issue 24 item 3: idle unauthenticated connections from one address
/// wait in a small handshake budget of their own; a real agent from
/// another address still connects, with every session slot free for it.
#[tokio::test]
async fn idle_peers_from_one_address_cannot_keep_an_agent_out() {
    let patient = ChannelSettings {
        // Long enough that no idle connection is timed out during the test.
        handshake_timeout: Duration::from_secs(20),
        max_connections: 64,
        max_handshakes: 32,
        max_handshakes_per_source: 8,
        ..settings()
    };
    let ep = endpoint(patient.clone(), true, 64).await;
    let addr = ep.decider.local_addr();
    // 200 connections from 127.0.0.2 that never say a word: more than the
    // sessions the decider holds.
    let mut idle = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        idle.push(socket.connect(addr).await.expect("connect"));
    }
    eventually(Duration::from_secs(3), "the flood refused past its address's budget", || {
        ep.decider.stats().refused >= 200 - 8
    })
    .await;
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr.to_string()]);
    eventually(Duration::from_secs(3), "the agent connected despite the flood", || agent.is_connected()).await;
    assert_eq!(ep.decider.stats().sessions, 1);
    drop(idle);
}

#[tokio::test]
async fn a_full_event_queue_drops_and_counts_instead_of_blocking() {
    let ep = endpoint(settings(), true, 4).await;
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    eventually(Duration::from_secs(3), "agent connected", || agent.is_connected()).await;
    for i in 0..100 {
        agent.forward(event("c1", i as f64));
    }
    eventually(Duration::from_secs(3), "all events accounted", || {
        let s = ep.decider.stats();
        s.events + s.dropped == 100
    })
    .await;
    assert_eq!(ep.decider.stats().events, 4, "the event loop's queue holds 4");
    // The session survives the overflow: heartbeats keep it alive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(agent.is_connected());
}

#[tokio::test]
async fn the_agent_survives_a_decider_restart_and_resumes() {
    let mut s = settings();
    let ep = endpoint(s.clone(), true, 64).await;
    let addr = ep.decider.local_addr();
    let agent = AgentHandle::spawn(s.clone(), token(), "node-a".into(), "host-a".into(), vec![addr.to_string()]);
    eventually(Duration::from_secs(3), "agent connected", || agent.is_connected()).await;
    ep.decider.set_tracking("node-a", &[tracked("c1")]);
    let mut tracking = agent.tracking();
    tokio::time::timeout(Duration::from_secs(3), tracking.wait_for(|t| t.is_some()))
        .await
        .expect("in time")
        .expect("open");

    drop(ep);
    eventually(Duration::from_secs(3), "agent notices", || !agent.is_connected()).await;
    // Measuring goes on while no decider is there; the tracking set stays.
    for i in 0..10 {
        agent.forward(event("c1", i as f64));
    }
    assert_eq!(tracking.borrow().as_ref().map(|t| t.len()), Some(1), "the last set is kept");
    tokio::time::sleep(Duration::from_millis(300)).await;

    s.listen = addr;
    let mut ep = endpoint(s, true, 64).await;
    eventually(Duration::from_secs(3), "agent reconnected", || agent.is_connected()).await;
    agent.forward(event("c1", 0.5));
    // The events queued while away were recent, so they arrive too; the
    // last one is the new one.
    let mut last = next_event(&mut ep.events).await;
    while let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(300), ep.events.recv()).await {
        last = more;
    }
    assert_eq!(reading(&last.event).value, 0.5);
    assert_eq!(agent.stats().sessions, 2);
}

#[tokio::test]
async fn agents_follow_leadership_from_one_manager_to_another() {
    let a = endpoint(settings(), true, 64).await;
    let mut b = endpoint(settings(), false, 64).await;
    let (addr_a, addr_b) = (a.decider.local_addr().to_string(), b.decider.local_addr().to_string());
    // B knows A leads; the agent tries B first and is redirected.
    b.leadership.send_replace(Leadership { is_leader: false, leader_addr: Some(addr_a.clone()) });
    let agent =
        AgentHandle::spawn(settings(), token(), "node-w".into(), "host-w".into(), vec![addr_b.clone(), addr_a.clone()]);
    eventually(Duration::from_secs(3), "connected to A", || agent.stats().connected_to.as_deref() == Some(&addr_a))
        .await;
    assert_eq!(b.decider.stats().sessions, 0, "B never kept the agent");

    // Swarm moves leadership from A to B.
    let moved = Instant::now();
    b.leadership.send_replace(Leadership { is_leader: true, leader_addr: Some(addr_b.clone()) });
    a.leadership.send_replace(Leadership { is_leader: false, leader_addr: Some(addr_b.clone()) });
    eventually(Duration::from_secs(3), "connected to B", || agent.stats().connected_to.as_deref() == Some(&addr_b))
        .await;
    let took = moved.elapsed();
    assert!(took < Duration::from_secs(1), "moved in {took:?}");
    agent.forward(event("c9", 0.8));
    assert_eq!(next_event(&mut b.events).await.event.container_id(), Some("c9"));
    eventually(Duration::from_secs(1), "A holds no agent once it stopped leading", || a.decider.stats().connected == 0)
        .await;
}

#[tokio::test]
async fn a_silent_node_is_lost_after_the_timeout_and_live_again_when_it_returns() {
    let mut ep = endpoint(settings(), true, 64).await;
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr.clone()]);
    assert!(matches!(ep.membership.recv().await, Some(Membership::Live { .. })));
    drop(agent);
    let lost = tokio::time::timeout(Duration::from_secs(3), ep.membership.recv()).await.expect("in time");
    let Some(Membership::Lost { node_id, silent_for, .. }) = lost else { panic!("{lost:?}") };
    assert_eq!(node_id, "node-a");
    assert!(silent_for > settings().node_timeout);
    assert!(ep.decider.live_nodes().is_empty());

    let _agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    let back = tokio::time::timeout(Duration::from_secs(3), ep.membership.recv()).await.expect("in time");
    assert!(matches!(back, Some(Membership::Live { ref node_id, .. }) if node_id == "node-a"), "{back:?}");
}

#[tokio::test]
async fn an_agent_with_no_manager_reachable_keeps_its_tracking_and_counts_drops() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut s = settings();
    s.agent_queue = 8;
    let agent = AgentHandle::spawn(s, token(), "node-a".into(), "host-a".into(), vec![format!("127.0.0.1:{port}")]);
    for i in 0..20 {
        agent.forward(event("c1", i as f64));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!agent.is_connected());
    assert_eq!(agent.stats().dropped, 12, "8 queued, 12 dropped, none waited");
}

#[test]
fn diff_tracks_new_and_changed_and_untracks_gone() {
    let mut current = HashMap::new();
    current.insert("c1".to_string(), tracked("c1"));
    current.insert("c2".to_string(), tracked("c2"));
    let mut changed = tracked("c2");
    changed.thresholds.set(&Metric::CPU, Band { upper: Some(0.9), lower: Some(0.2) });
    let (track, untrack) = diff(&current, &[changed.clone(), tracked("c3"), tracked("c1")]);
    assert_eq!(track, vec![changed, tracked("c3")]);
    assert!(untrack.is_empty());
    let (track, untrack) = diff(&current, &[tracked("c1")]);
    assert!(track.is_empty());
    assert_eq!(untrack, vec!["c2".to_string()]);
}

#[tokio::test]
async fn a_flood_of_scale_to_zero_reports_is_bounded_and_counted() {
    let ep = endpoint(settings(), true, 64).await;
    // The event loop is busy: nothing reads the reports meanwhile.
    let mut reports = ep.decider.take_zero_reports().expect("the reports");
    let addr = ep.decider.local_addr().to_string();
    let agent = AgentHandle::spawn(settings(), token(), "node-a".into(), "host-a".into(), vec![addr]);
    eventually(Duration::from_secs(3), "agent connected", || agent.is_connected()).await;
    const SENT: usize = 100_000;
    for i in 0..SENT {
        agent.report(ZeroReport::Busy { container_id: format!("{i:064x}") });
        // The agent's own queue is bounded too (it drops past 1024): wait
        // for the decider to take each batch.
        if i % 256 == 255 || i == SENT - 1 {
            let past_share = (i + 1).saturating_sub(ZERO_REPORTS_PER_NODE) as u64;
            eventually(Duration::from_secs(5), "the batch reached the decider", || {
                ep.decider.stats().zero_dropped >= past_share
            })
            .await;
        }
    }
    let expected = (SENT - ZERO_REPORTS_PER_NODE) as u64;
    let mut queued = Vec::new();
    while let Some(report) = reports.try_recv() {
        queued.push(report);
    }
    eprintln!("sent {SENT}, queued {}, dropped {}", queued.len(), ep.decider.stats().zero_dropped);
    assert_eq!(queued.len(), ZERO_REPORTS_PER_NODE, "the node's share of the queue, no more");
    assert_eq!(ep.decider.stats().zero_dropped, expected);
    // The first ones are kept, in order; the node's share is free again.
    assert_eq!(queued[0].report, ZeroReport::Busy { container_id: format!("{:064x}", 0) });
    agent.report(ZeroReport::Busy { container_id: "after".into() });
    let got = tokio::time::timeout(Duration::from_secs(3), reports.recv()).await.expect("in time").expect("open");
    assert_eq!(got.report, ZeroReport::Busy { container_id: "after".into() });
}
