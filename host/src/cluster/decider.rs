//! The decider's end of the agent channel: a TCP listener on every
//! manager that accepts authenticated agents, hands their measurements to
//! the event loop, and sends each node the containers it should measure.
//!
//! Only the Raft leader keeps agents: a manager that is not the leader
//! answers an authenticated agent with [`DeciderMsg::NotLeader`] (and the
//! leader's address when it knows it) and closes; a leader that loses
//! leadership does the same to every agent it holds, at once. Agents then
//! find the new leader.
//!
//! Bounds: at most `max_handshakes` connections in their handshake (of
//! which `max_handshakes_per_source` from one address), apart from the
//! `max_connections` authenticated sessions, so idle or slow peers cannot
//! crowd out real agents; a handshake must finish within
//! `handshake_timeout` in frames of a few KiB,
//! authenticated frames are capped at `max_frame`, events go to the event
//! loop with `try_send` (a full queue drops and counts, it never blocks a
//! connection), and a node sends a frame at least every heartbeat or is
//! disconnected after three.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use super::auth::Side;
use super::frame::{FrameReader, FrameWriter};
use super::handshake::{self, HandshakeError, Peer};
use super::tls::{Credentials, ReadHalf, WriteHalf};
use super::wire::{AgentMsg, DeciderMsg, WireTracked, ZeroCommand, ZeroReport, track_messages};
use super::{ChannelSettings, Leadership, Membership, RemoteEvent, RemoteZero};
use crate::model::{Tracked, monotonic_ns};

/// What a session watches for its node's tracking set.
type TrackingRx = watch::Receiver<Option<Arc<Vec<WireTracked>>>>;

/// Counters of the decider, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeciderStats {
    /// Sessions authenticated since start.
    pub sessions: u64,
    /// Connections refused: failed handshakes, over a handshake budget or
    /// the session cap.
    pub refused: u64,
    /// Events handed to the event loop.
    pub events: u64,
    /// Events dropped because the event loop's queue was full.
    pub dropped: u64,
    /// Events agents report they dropped (their queue full or stale).
    pub agent_dropped: u64,
    /// Readings refused because their metric is not in this daemon's
    /// table (a node running a newer daemon); one count, whatever the name.
    pub unknown_metric: u64,
    /// Nodes connected right now.
    pub connected: u64,
    /// Scale-to-zero reports dropped because the queue to the event loop
    /// held [`ZERO_REPORTS_PER_NODE`] of their node's, or
    /// [`ZERO_REPORTS_QUEUED`] in all.
    pub zero_dropped: u64,
}

/// Scale-to-zero reports waiting for the event loop, every node's together.
pub const ZERO_REPORTS_QUEUED: usize = 4096;

/// Of those, one node's: a node flooding reports cannot crowd out the
/// others'. An honest node sends one report per command (and per wake),
/// and the loop reads them as they come: a few at a time.
pub const ZERO_REPORTS_PER_NODE: usize = 256;

/// One node as the decider knows it.
#[derive(Debug)]
struct Node {
    /// The containers it should measure; `None` until the event loop set it.
    tracking: watch::Sender<Option<Arc<Vec<WireTracked>>>>,
    /// Id of the session that owns the node: a newer connection from the
    /// same node replaces an older one.
    session: watch::Sender<u64>,
    /// Hostname from its last hello.
    hostname: String,
    /// Last frame received from it.
    last_seen: Instant,
    /// Whether it is part of the aggregate (reported within the timeout).
    live: bool,
    /// Drops the agent reported in its last frame (a running total).
    agent_dropped: u64,
    /// Scale-to-zero commands to its current session, if it has one.
    zero: Option<mpsc::UnboundedSender<ZeroCommand>>,
    /// Its scale-to-zero reports queued for the event loop, not yet read.
    zero_queued: usize,
}

/// State shared by the accept loop, the sessions and the handle.
#[derive(Debug)]
struct Shared {
    credentials: Credentials,
    settings: ChannelSettings,
    nodes: Mutex<HashMap<String, Node>>,
    events: mpsc::Sender<RemoteEvent>,
    membership: mpsc::UnboundedSender<Membership>,
    /// Scale-to-zero reports of every node: bounded per node and in all,
    /// the excess dropped and counted (`zero_dropped`).
    zero_reports: mpsc::Sender<RemoteZero>,
    leadership: watch::Receiver<Leadership>,
    next_session: AtomicU64,
    sessions: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    unknown_metric: AtomicU64,
    connected: AtomicU64,
    zero_dropped: AtomicU64,
    /// Second of the last refusal logged at warn level (the rest go to debug,
    /// so a port scan cannot flood the log).
    last_refusal_log: AtomicU64,
    /// Closed when the [`Decider`] is dropped: every session ends.
    stop: watch::Receiver<()>,
}

/// A running decider endpoint. Dropping it stops the listener and every
/// session.
#[derive(Debug)]
pub struct Decider {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The listener and the reaper, aborted on drop.
    tasks: Vec<tokio::task::AbortHandle>,
    /// Dropped with the decider: sessions watch it and end.
    _stop: watch::Sender<()>,
    /// The reports' receiving end, until [`Decider::take_zero_reports`].
    zero_reports: Mutex<Option<ZeroReports>>,
}

impl Drop for Decider {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Decider {
    /// Listen on `settings.listen`. Measurements of every authenticated node
    /// go to `events` (bounded: full means dropped and counted); nodes
    /// joining and going silent go to `membership`. `leadership` says
    /// whether this manager decides; it is re-read on every change.
    pub async fn bind(
        settings: ChannelSettings,
        credentials: impl Into<Credentials>,
        leadership: watch::Receiver<Leadership>,
        events: mpsc::Sender<RemoteEvent>,
        membership: mpsc::UnboundedSender<Membership>,
    ) -> std::io::Result<Decider> {
        let credentials = credentials.into();
        let listener = TcpListener::bind(settings.listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(());
        let (zero_tx, zero_rx) = mpsc::channel(ZERO_REPORTS_QUEUED);
        let shared = Arc::new(Shared {
            credentials,
            settings,
            nodes: Mutex::new(HashMap::new()),
            events,
            membership,
            zero_reports: zero_tx,
            leadership,
            next_session: AtomicU64::new(1),
            sessions: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unknown_metric: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            zero_dropped: AtomicU64::new(0),
            last_refusal_log: AtomicU64::new(0),
            stop,
        });
        tracing::info!(addr = %local_addr, "cluster channel listening for agents");
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        let reaper = tokio::spawn(reap_silent_nodes(shared.clone()));
        let zero_reports = ZeroReports { rx: zero_rx, shared: shared.clone() };
        Ok(Decider {
            shared,
            local_addr,
            tasks: vec![accept.abort_handle(), reaper.abort_handle()],
            _stop: stop_tx,
            zero_reports: Mutex::new(Some(zero_reports)),
        })
    }

    /// Every node's scale-to-zero reports; `None` after the first call.
    pub fn take_zero_reports(&self) -> Option<ZeroReports> {
        lock(&self.zero_reports).take()
    }

    /// Send node `node_id` a scale-to-zero command; false when it has no
    /// session to take it (the caller says what that means).
    pub fn send_zero(&self, node_id: &str, command: ZeroCommand) -> bool {
        let nodes = lock(&self.shared.nodes);
        nodes.get(node_id).and_then(|n| n.zero.as_ref()).is_some_and(|tx| tx.send(command).is_ok())
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The complete set of containers node `node_id` should measure. Sent
    /// at once if the node is connected, else when it connects; replaces
    /// the node's earlier set.
    pub fn set_tracking(&self, node_id: &str, tracked: &[Tracked]) {
        let set = Arc::new(tracked.iter().map(WireTracked::from).collect::<Vec<_>>());
        let mut nodes = lock(&self.shared.nodes);
        let node = nodes.entry(node_id.to_string()).or_insert_with(|| Node::new(String::new()));
        node.tracking.send_replace(Some(set));
    }

    /// Nodes that reported within the node timeout, with their hostnames.
    pub fn live_nodes(&self) -> Vec<(String, String)> {
        let nodes = lock(&self.shared.nodes);
        let mut live: Vec<_> =
            nodes.iter().filter(|(_, n)| n.live).map(|(id, n)| (id.clone(), n.hostname.clone())).collect();
        live.sort();
        live
    }

    /// Counters so far.
    pub fn stats(&self) -> DeciderStats {
        let s = &self.shared;
        DeciderStats {
            sessions: s.sessions.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            events: s.delivered.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            agent_dropped: lock(&s.nodes).values().map(|n| n.agent_dropped).sum(),
            unknown_metric: s.unknown_metric.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            zero_dropped: s.zero_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Node {
    fn new(hostname: String) -> Node {
        Node {
            tracking: watch::channel(None).0,
            session: watch::channel(0).0,
            hostname,
            last_seen: Instant::now(),
            live: false,
            agent_dropped: 0,
            zero: None,
            zero_queued: 0,
        }
    }
}

/// The node map's lock. Never held across an await; a panic while holding
/// it would be a bug in this file, and the map is still consistent after
/// any single statement, so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let sessions = Arc::new(Semaphore::new(shared.settings.max_connections));
    let handshakes = Arc::new(Semaphore::new(shared.settings.max_handshakes));
    let per_source: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: wait rather than spin.
                tracing::warn!(error = %err, "cluster channel: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pre_auth =
            match PreAuth::take(&handshakes, &per_source, peer.ip(), shared.settings.max_handshakes_per_source) {
                Ok(pre_auth) => pre_auth,
                Err(reason) => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    log_refusal(&shared, peer, reason);
                    continue;
                }
            };
        let (shared, sessions) = (shared.clone(), sessions.clone());
        tokio::spawn(async move {
            serve(stream, peer, &shared, pre_auth, &sessions).await;
        });
    }
}

/// A connection's place in the handshake budget: one of `max_handshakes`,
/// and one of its source address's; given back when dropped (the
/// handshake ended, however).
struct PreAuth {
    _permit: tokio::sync::OwnedSemaphorePermit,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl PreAuth {
    fn take(
        handshakes: &Arc<Semaphore>,
        per_source: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        source: IpAddr,
        most_per_source: usize,
    ) -> Result<PreAuth, &'static str> {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            return Err("too many handshakes at once");
        };
        let mut counts = lock(per_source);
        let count = counts.entry(source).or_insert(0);
        if *count >= most_per_source {
            return Err("too many handshakes from this address");
        }
        *count += 1;
        Ok(PreAuth { _permit: permit, per_source: per_source.clone(), source })
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        let mut counts = lock(&self.per_source);
        if let Some(count) = counts.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

fn log_refusal(shared: &Shared, peer: SocketAddr, reason: &str) {
    let now = monotonic_ns() / 1_000_000_000;
    if shared.last_refusal_log.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(%peer, reason, "cluster channel: refused a peer");
    } else {
        tracing::debug!(%peer, reason, "cluster channel: refused a peer");
    }
}

/// One connection, from the handshake to its end: the handshake in the
/// pre-auth budget, the session in the sessions'.
async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    shared: &Arc<Shared>,
    pre_auth: PreAuth,
    sessions: &Arc<Semaphore>,
) {
    let _ = stream.set_nodelay(true);
    let settings = &shared.settings;
    let shook = tokio::time::timeout(settings.handshake_timeout, authenticate(stream, shared)).await;
    drop(pre_auth);
    let (peer, reader, mut writer) = match shook {
        Ok(Ok(authenticated)) => authenticated,
        Ok(Err(reason)) => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            log_refusal(shared, addr, &reason);
            return;
        }
        Err(_) => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            log_refusal(shared, addr, "handshake timed out");
            return;
        }
    };
    let Ok(_session) = sessions.clone().try_acquire_owned() else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        log_refusal(shared, addr, "too many sessions");
        return;
    };
    let leadership = shared.leadership.borrow().clone();
    if !leadership.is_leader {
        let _ = writer.write(&DeciderMsg::NotLeader { leader_addr: leadership.leader_addr }).await;
        writer.shutdown().await;
        return;
    }
    if writer.write(&DeciderMsg::Welcome).await.is_err() {
        return;
    }
    shared.sessions.fetch_add(1, Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let why = session(reader, &mut writer, addr, &peer, shared).await;
    shared.connected.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(node = %peer.node_id, hostname = %peer.hostname, %addr, "cluster channel: agent disconnected: {why}");
    writer.shutdown().await;
}

/// The transport's handshake (TLS with the swarm's certificates, or none),
/// then the channel's. With TLS the node id the agent announces must be the
/// CN of its certificate: a node can speak only for itself. Returns why not
/// as the line to log.
async fn authenticate(
    stream: TcpStream,
    shared: &Shared,
) -> Result<(Peer, FrameReader<ReadHalf>, FrameWriter<WriteHalf>), String> {
    let secured = shared.credentials.accept(stream).await.map_err(|err| err.to_string())?;
    let (read_half, write_half) = tokio::io::split(secured.stream);
    let mut reader = FrameReader::new(read_half, Side::Agent);
    let mut writer = FrameWriter::new(write_half, Side::Decider);
    let peer = handshake::decider(&mut reader, &mut writer, &secured.token, shared.settings.max_frame).await.map_err(
        |err| match err {
            HandshakeError::BadProof => "wrong cluster token".to_string(),
            other => other.to_string(),
        },
    )?;
    if let Some(cert) = &secured.peer
        && cert.node_id != peer.node_id
    {
        return Err(format!(
            "claims node {} but its certificate is node {}'s ({}): a node speaks only for itself",
            peer.node_id, cert.node_id, cert.role
        ));
    }
    Ok((peer, reader, writer))
}

/// What a session watches: its id, the node's owner id, its tracking set
/// and its scale-to-zero commands.
type Registered = (u64, watch::Receiver<u64>, TrackingRx, mpsc::UnboundedReceiver<ZeroCommand>);

/// Register the node for this session; returns the session id and the
/// receivers the session watches.
fn register(shared: &Shared, peer: &Peer) -> Registered {
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let mut nodes = lock(&shared.nodes);
    let node = nodes.entry(peer.node_id.clone()).or_insert_with(|| Node::new(peer.hostname.clone()));
    node.hostname = peer.hostname.clone();
    node.last_seen = Instant::now();
    node.session.send_replace(id);
    if !node.live {
        node.live = true;
        let _ =
            shared.membership.send(Membership::Live { node_id: peer.node_id.clone(), hostname: peer.hostname.clone() });
    }
    let mut tracking = node.tracking.subscribe();
    // Send the current set, if there is one, as the first frame.
    tracking.mark_changed();
    let (zero_tx, zero_rx) = mpsc::unbounded_channel();
    node.zero = Some(zero_tx);
    (id, node.session.subscribe(), tracking, zero_rx)
}

/// The authenticated part of a connection. Returns why it ended.
async fn session(
    mut reader: FrameReader<ReadHalf>,
    writer: &mut FrameWriter<WriteHalf>,
    addr: SocketAddr,
    peer: &Peer,
    shared: &Arc<Shared>,
) -> String {
    let (id, mut owner, mut tracking, mut zero) = register(shared, peer);
    tracing::info!(node = %peer.node_id, hostname = %peer.hostname, %addr, "cluster channel: agent connected");
    let mut leadership = shared.leadership.clone();
    let mut stop = shared.stop.clone();
    let heartbeat = shared.settings.heartbeat;
    let silence = heartbeat * 3;
    // Frames are read in a task of their own: a read cut by select! would
    // lose its place in the stream.
    let mut read_task = {
        let shared = shared.clone();
        let node_id = peer.node_id.clone();
        tokio::spawn(async move {
            loop {
                let msg = match tokio::time::timeout(silence, reader.read::<AgentMsg>()).await {
                    Ok(Ok(msg)) => msg,
                    Ok(Err(err)) => return err.to_string(),
                    Err(_) => return format!("nothing received for {silence:?}"),
                };
                receive(&shared, &node_id, msg);
            }
        })
    };
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            // In this order: a freeze or thaw must follow the tracking set
            // that names its container (an agent refuses a command for a
            // container it does not track).
            biased;
            ended = &mut read_task => break ended.unwrap_or_else(|e| format!("reader failed: {e}")),
            _ = stop.changed() => break "the decider stopped".into(),
            changed = tracking.changed() => {
                if changed.is_err() { break "node forgotten".into(); }
                let set = tracking.borrow_and_update().clone();
                if let Some(set) = set {
                    // One frame, or pieces when the set is larger than a frame.
                    let mut failed = None;
                    for msg in track_messages(&set, shared.settings.max_frame) {
                        if let Err(err) = writer.write(&msg).await { failed = Some(err.to_string()); break; }
                    }
                    if let Some(err) = failed { break err; }
                }
            }
            _ = tick.tick() => {
                if let Err(err) = writer.write(&DeciderMsg::Heartbeat).await { break err.to_string(); }
            }
            Some(command) = zero.recv() => {
                if let Err(err) = writer.write(&DeciderMsg::Zero { command }).await { break err.to_string(); }
            }
            changed = leadership.changed() => {
                let now = leadership.borrow_and_update().clone();
                if changed.is_err() || !now.is_leader {
                    let _ = writer.write(&DeciderMsg::NotLeader { leader_addr: now.leader_addr }).await;
                    break "this manager is no longer the leader".into();
                }
            }
            changed = owner.changed() => {
                if changed.is_err() || *owner.borrow_and_update() != id {
                    break "replaced by a newer connection from the same node".into();
                }
            }
        }
    };
    read_task.abort();
    why
}

/// Handle one frame from node `node_id`.
fn receive(shared: &Shared, node_id: &str, msg: AgentMsg) {
    let dropped = match &msg {
        AgentMsg::Events { dropped, .. } | AgentMsg::Heartbeat { dropped } => Some(*dropped),
        AgentMsg::Zero { .. } => None,
    };
    {
        let mut nodes = lock(&shared.nodes);
        if let Some(node) = nodes.get_mut(node_id) {
            node.last_seen = Instant::now();
            if let Some(dropped) = dropped {
                node.agent_dropped = dropped;
            }
            if !node.live {
                node.live = true;
                tracing::info!(node = %node_id, hostname = %node.hostname, "cluster: node reports again");
                let _ = shared
                    .membership
                    .send(Membership::Live { node_id: node_id.to_string(), hostname: node.hostname.clone() });
            }
        }
    }
    let events = match msg {
        AgentMsg::Events { events, .. } => events,
        AgentMsg::Zero { report } => {
            queue_zero_report(shared, node_id, report);
            return;
        }
        AgentMsg::Heartbeat { .. } => return,
    };
    let now = monotonic_ns();
    for event in events {
        let event = match event.into_probe(now) {
            Ok(event) => event,
            Err(unknown) => {
                if shared.unknown_metric.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(node = %node_id, "cluster: {unknown}; its readings are refused and counted (autoscaler_cluster_decider_unknown_metric_total)");
                }
                continue;
            }
        };
        let remote = RemoteEvent { node_id: node_id.to_string(), event };
        match shared.events.try_send(remote) {
            Ok(()) => shared.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => shared.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Queue a node's scale-to-zero report for the event loop, unless the
/// queue already holds its node's share or is full: then it is dropped,
/// counted, and said once.
fn queue_zero_report(shared: &Shared, node_id: &str, report: ZeroReport) {
    {
        let mut nodes = lock(&shared.nodes);
        if let Some(node) = nodes.get_mut(node_id)
            && node.zero_queued < ZERO_REPORTS_PER_NODE
            && shared.zero_reports.try_send(RemoteZero { node_id: node_id.to_string(), report }).is_ok()
        {
            node.zero_queued += 1;
            return;
        }
    }
    if shared.zero_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(
            node = %node_id,
            "cluster: scale-to-zero report dropped: {ZERO_REPORTS_PER_NODE} of this node's (or {ZERO_REPORTS_QUEUED} in all) wait for the event loop; further drops are only counted (autoscaler_cluster_decider_zero_reports_dropped_total)"
        );
    }
}

/// Every node's scale-to-zero reports, as the event loop reads them.
#[derive(Debug)]
pub struct ZeroReports {
    rx: mpsc::Receiver<RemoteZero>,
    /// To give the report's node its share of the queue back.
    shared: Arc<Shared>,
}

impl ZeroReports {
    /// The next report; `None` once the decider is gone.
    pub async fn recv(&mut self) -> Option<RemoteZero> {
        let report = self.rx.recv().await?;
        if let Some(node) = lock(&self.shared.nodes).get_mut(&report.node_id) {
            node.zero_queued = node.zero_queued.saturating_sub(1);
        }
        Some(report)
    }

    /// A report already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<RemoteZero> {
        let report = self.rx.try_recv().ok()?;
        if let Some(node) = lock(&self.shared.nodes).get_mut(&report.node_id) {
            node.zero_queued = node.zero_queued.saturating_sub(1);
        }
        Some(report)
    }
}

/// Every second, drop nodes silent for longer than the node timeout from
/// the aggregate, and say so once per node.
async fn reap_silent_nodes(shared: Arc<Shared>) {
    let timeout = shared.settings.node_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(timeout));
    loop {
        tick.tick().await;
        let mut nodes = lock(&shared.nodes);
        for (node_id, node) in nodes.iter_mut() {
            let silent = node.last_seen.elapsed();
            if node.live && silent > timeout {
                node.live = false;
                tracing::warn!(
                    node = %node_id, hostname = %node.hostname,
                    "cluster: node silent for {:.1}s (timeout {timeout:?}); its replicas leave the service aggregates until it reports again",
                    silent.as_secs_f64()
                );
                let _ = shared.membership.send(Membership::Lost {
                    node_id: node_id.clone(),
                    hostname: node.hostname.clone(),
                    silent_for: silent,
                });
            }
        }
    }
}
