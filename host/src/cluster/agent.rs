//! The agent's end of the channel: every node forwards what its own probe
//! measures to the decider on the leader, and receives the containers it
//! should measure.
//!
//! The agent asks a [`ManagerSource`] for the managers' channel addresses
//! (on a real node: its own engine's `docker info`, see
//! [`super::docker::EngineManagers`]), tries them in order, follows a
//! [`DeciderMsg::NotLeader`] redirect to the leader, and keeps one session.
//! When the session ends it reconnects with a jittered back-off. While no
//! decider is reachable the probe keeps measuring and keeps its last
//! tracking set; the agent logs one warning when it loses the last
//! decider and one line when forwarding resumes.
//!
//! Scale to zero: the decider's [`ZeroCommand`]s come out of
//! [`AgentHandle::take_zero_commands`] for the daemon to carry out with the
//! node's engine and probe, and its [`ZeroReport`]s go back with
//! [`AgentHandle::report`]; both queues survive a reconnection.
//!
//! Bounds: the queue between the probe and the connection holds
//! `agent_queue` events and [`AgentHandle::forward`] never waits (full
//! means dropped and counted); events older than `max_event_age` are
//! dropped rather than sent late; one frame carries at most
//! `batch` events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

mod admit;

use super::ChannelSettings;
use super::auth::Side;
use super::backoff::Backoff;
use super::frame::{FrameReader, FrameWriter};
use super::handshake;
use super::tls::{Credentials, ReadHalf, WriteHalf};
use super::wire::{AgentMsg, DeciderMsg, TrackAssembler, WireEvent, WireTracked, ZeroCommand, ZeroReport};
use crate::model::{Tracked, monotonic_ns};
use crate::probe::ProbeEvent;

/// Where the deciders may be: the managers' channel addresses
/// (`host:port`), in the order to try them.
pub trait ManagerSource: Send + Sync + 'static {
    /// The current candidates; an empty list counts as "none reachable".
    fn managers(&self) -> impl std::future::Future<Output = Vec<String>> + Send;
}

/// A fixed list (`--cluster-managers`, tests).
impl ManagerSource for Vec<String> {
    async fn managers(&self) -> Vec<String> {
        self.clone()
    }
}

/// The tracking set the decider last sent: `None` until the first one.
pub type TrackingSet = Option<Arc<Vec<Tracked>>>;

/// Counters of the agent, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Events written to a decider.
    pub forwarded: u64,
    /// Events dropped: queue full, or older than `max_event_age` when a
    /// connection could take them.
    pub dropped: u64,
    /// Sessions established since start.
    pub sessions: u64,
    /// The decider connected to right now.
    pub connected_to: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    sessions: AtomicU64,
    connected: AtomicBool,
    connected_to: Mutex<Option<String>>,
}

/// A running agent. Dropping it ends the agent and its connection.
#[derive(Debug)]
pub struct AgentHandle {
    queue: mpsc::Sender<ProbeEvent>,
    shared: Arc<Shared>,
    tracking: watch::Receiver<TrackingSet>,
    task: tokio::task::AbortHandle,
    /// Scale-to-zero reports to the decider.
    reports: mpsc::Sender<ZeroReport>,
    /// The decider's scale-to-zero commands, until taken.
    zero_commands: Mutex<Option<mpsc::UnboundedReceiver<ZeroCommand>>>,
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AgentHandle {
    /// Start the agent of node `node_id` (its Swarm node id) on this node.
    pub fn spawn<M: ManagerSource>(
        settings: ChannelSettings,
        credentials: impl Into<Credentials>,
        node_id: String,
        hostname: String,
        managers: M,
    ) -> AgentHandle {
        let (queue, rx) = mpsc::channel(settings.agent_queue.max(1));
        let (tracking_tx, tracking) = watch::channel(None);
        let (reports, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let agent = Agent {
            settings,
            credentials: credentials.into(),
            node_id,
            hostname,
            shared: shared.clone(),
            tracking: tracking_tx,
            zero_commands: commands_tx,
        };
        let task = tokio::spawn(agent.run(managers, rx, reports_rx)).abort_handle();
        AgentHandle { queue, shared, tracking, task, reports, zero_commands: Mutex::new(Some(commands)) }
    }

    /// The decider's scale-to-zero commands for this node; `None` after the
    /// first call.
    pub fn take_zero_commands(&self) -> Option<mpsc::UnboundedReceiver<ZeroCommand>> {
        self.zero_commands.lock().ok().and_then(|mut c| c.take())
    }

    /// Tell the decider how a scale-to-zero command ended (or of a wake).
    /// Never waits: queued until a session takes it.
    pub fn report(&self, report: ZeroReport) {
        if let Err(err) = self.reports.try_send(report) {
            let why = err.to_string();
            tracing::warn!("cluster: scale-to-zero report dropped ({why}): {:?}", err.into_inner());
        }
    }

    /// Queue one measurement for the decider. Never waits: when the queue
    /// is full (no decider, or a slow one) the event is dropped and counted.
    pub fn forward(&self, event: ProbeEvent) {
        if self.queue.try_send(event).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The containers this node should measure, as the decider last said.
    /// The set survives a lost connection: the probe keeps measuring them.
    pub fn tracking(&self) -> watch::Receiver<TrackingSet> {
        self.tracking.clone()
    }

    /// Whether a decider session is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Counters so far.
    pub fn stats(&self) -> AgentStats {
        let s = &self.shared;
        AgentStats {
            forwarded: s.forwarded.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            sessions: s.sessions.load(Ordering::Relaxed),
            connected_to: s.connected_to.lock().map(|c| c.clone()).unwrap_or(None),
        }
    }
}

/// A complete tracking set from the decider becomes the node's set.
fn publish(tracking: &watch::Sender<TrackingSet>, containers: Vec<WireTracked>) {
    let (mut set, mut unknown) = (Vec::with_capacity(containers.len()), 0);
    for wire in containers {
        let (tracked, refused) = wire.into_tracked();
        set.push(tracked);
        unknown += refused;
    }
    if unknown > 0 {
        tracing::warn!(
            bands = unknown,
            "cluster: the decider set thresholds of metrics this daemon does not know (a newer decider?); left out"
        );
    }
    tracing::debug!(containers = set.len(), "cluster: new tracking set from the decider");
    tracking.send_replace(Some(Arc::new(set)));
}

/// Scale-to-zero reports queued for the decider; beyond this they are
/// dropped (a node never has that many in flight).
const REPORT_QUEUE: usize = 1024;

/// What a manager that does not decide says, in the list of failures.
const NOT_LEADER: &str = "not the leader";

/// How one connection attempt went.
enum Attempt {
    /// A session with the leader ran and ended; maybe with a hint where
    /// the new leader is.
    Ended { why: String, hint: Option<String> },
    /// An authenticated manager that is not the leader.
    NotLeader { leader_addr: Option<String> },
}

struct Agent {
    settings: ChannelSettings,
    credentials: Credentials,
    node_id: String,
    hostname: String,
    shared: Arc<Shared>,
    tracking: watch::Sender<TrackingSet>,
    /// Where the decider's scale-to-zero commands go.
    zero_commands: mpsc::UnboundedSender<ZeroCommand>,
}

/// The outage the agent is in, if any: since when, and the drop counter
/// at its start, for the line that says forwarding resumed.
#[derive(Debug, Default)]
struct Outage {
    /// Set once the "no decider reachable" line was logged: since the
    /// session was lost (or the agent started), not since the line.
    since: Option<(Instant, u64)>,
    /// When the last session ended (or the agent started) and the drop
    /// counter then, while no session runs.
    lost: Option<(Instant, u64)>,
}

impl Agent {
    async fn run<M: ManagerSource>(
        self,
        managers: M,
        mut rx: mpsc::Receiver<ProbeEvent>,
        mut reports: mpsc::Receiver<ZeroReport>,
    ) {
        let s = &self.settings;
        let mut backoff = Backoff::new(s.reconnect_base, s.reconnect_max);
        let mut hint: Option<String> = None;
        let mut outage = Outage { since: None, lost: Some((Instant::now(), 0)) };
        loop {
            let mut candidates: VecDeque<String> = managers.managers().await.into();
            if let Some(h) = hint.take() {
                candidates.retain(|c| *c != h);
                candidates.push_front(h);
            }
            let mut tried = Vec::new();
            let mut failures = Vec::new();
            let mut had_session = false;
            while let Some(addr) = candidates.pop_front() {
                if tried.contains(&addr) {
                    continue;
                }
                tried.push(addr.clone());
                match self.attempt(&addr, (&mut rx, &mut reports), &mut outage).await {
                    Ok(Attempt::Ended { why, hint: next }) => {
                        tracing::info!(decider = %addr, "cluster: session with the decider ended ({why}); reconnecting");
                        outage.lost = Some((Instant::now(), self.shared.dropped.load(Ordering::Relaxed)));
                        hint = next;
                        had_session = true;
                        break;
                    }
                    Ok(Attempt::NotLeader { leader_addr }) => {
                        failures.push(format!("{addr}: {NOT_LEADER}"));
                        if let Some(leader) = leader_addr.filter(|l| !tried.contains(l)) {
                            candidates.push_front(leader);
                        }
                    }
                    Err(err) => failures.push(format!("{addr}: {err}")),
                }
            }
            // A manager answered "not the leader": leadership is moving (the
            // old decider may be gone, the new one not yet told). A manager
            // is reachable, so this is not an outage.
            let moving = failures.iter().any(|f| f.ends_with(NOT_LEADER));
            if had_session {
                // The leader may have moved: look again soon.
                backoff.reset();
            } else if moving {
                tracing::debug!(node = %self.node_id, "cluster: leadership is moving: {}", failures.join("; "));
            } else if outage.since.is_none() {
                let tried_text = if failures.is_empty() { "no manager known".to_string() } else { failures.join("; ") };
                tracing::warn!(
                    node = %self.node_id,
                    "cluster: no autoscaler decider reachable ({tried_text}); still measuring, forwarding resumes when a manager answers (retrying with back-off up to {:?})",
                    backoff.max()
                );
                let now = (Instant::now(), self.shared.dropped.load(Ordering::Relaxed));
                outage.since = Some(outage.lost.unwrap_or(now));
            } else {
                tracing::debug!(node = %self.node_id, "cluster: still no decider reachable: {}", failures.join("; "));
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Connect to `addr`, authenticate, and if it is the leader run the
    /// session until it ends.
    async fn attempt(
        &self,
        addr: &str,
        (rx, reports): (&mut mpsc::Receiver<ProbeEvent>, &mut mpsc::Receiver<ZeroReport>),
        outage: &mut Outage,
    ) -> Result<Attempt, String> {
        let s = &self.settings;
        let stream = match tokio::time::timeout(s.handshake_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", s.handshake_timeout)),
        };
        let _ = stream.set_nodelay(true);
        let welcome = tokio::time::timeout(s.handshake_timeout, async {
            // With TLS: only a manager of this swarm gets this far.
            let secured = self.credentials.connect(stream).await.map_err(|err| err.to_string())?;
            let (read_half, write_half) = tokio::io::split(secured.stream);
            let mut reader = FrameReader::new(read_half, Side::Decider);
            let mut writer = FrameWriter::new(write_half, Side::Agent);
            let shook =
                handshake::agent(&mut reader, &mut writer, &secured.token, &self.node_id, &self.hostname, s.max_frame)
                    .await;
            match shook {
                Ok(()) => {}
                Err(handshake::HandshakeError::BadProof) if self.credentials.is_swarm() => {
                    return Err(
                        "it does not hold this cluster's token (the second factor: check the autoscaler_token secret)"
                            .to_string(),
                    );
                }
                Err(handshake::HandshakeError::BadProof) => {
                    return Err("it does not hold this cluster's token (check the autoscaler_token secret)".to_string());
                }
                Err(err) => return Err(err.to_string()),
            }
            let first = reader.read::<DeciderMsg>().await.map_err(|err| err.to_string())?;
            Ok((first, reader, writer))
        })
        .await;
        let (reader, writer) = match welcome {
            Ok(Ok((DeciderMsg::Welcome, reader, writer))) => (reader, writer),
            Ok(Ok((DeciderMsg::NotLeader { leader_addr }, _, _))) => return Ok(Attempt::NotLeader { leader_addr }),
            Ok(Ok((other, _, _))) => return Err(format!("unexpected first message {other:?}")),
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(format!("handshake not done within {:?}", s.handshake_timeout)),
        };
        outage.lost = None;
        match outage.since.take() {
            Some((since, dropped_before)) => tracing::info!(
                decider = %addr,
                "cluster: decider reachable again after {:.1}s; forwarding resumes ({} events dropped meanwhile)",
                since.elapsed().as_secs_f64(),
                self.shared.dropped.load(Ordering::Relaxed).saturating_sub(dropped_before)
            ),
            None => tracing::info!(decider = %addr, node = %self.node_id, "cluster: connected to the decider"),
        }
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        self.set_connected(Some(addr));
        let ended = self.session(reader, writer, rx, reports).await;
        self.set_connected(None);
        Ok(ended)
    }

    fn set_connected(&self, to: Option<&str>) {
        self.shared.connected.store(to.is_some(), Ordering::Relaxed);
        if let Ok(mut c) = self.shared.connected_to.lock() {
            *c = to.map(str::to_string);
        }
    }

    /// Forward events and receive tracking sets until the connection ends.
    async fn session(
        &self,
        mut reader: FrameReader<ReadHalf>,
        mut writer: FrameWriter<WriteHalf>,
        rx: &mut mpsc::Receiver<ProbeEvent>,
        reports: &mut mpsc::Receiver<ZeroReport>,
    ) -> Attempt {
        let s = &self.settings;
        let silence = s.heartbeat * 3;
        // Reads run in a task of their own: a read cut by select! would lose
        // its place in the stream.
        let tracking = self.tracking.clone();
        let zero_commands = self.zero_commands.clone();
        let mut read_task = tokio::spawn(async move {
            let mut pieces = TrackAssembler::default();
            loop {
                let msg = match tokio::time::timeout(silence, reader.read::<DeciderMsg>()).await {
                    Ok(Ok(msg)) => msg,
                    Ok(Err(err)) => return Attempt::Ended { why: err.to_string(), hint: None },
                    Err(_) => return Attempt::Ended { why: format!("nothing received for {silence:?}"), hint: None },
                };
                match msg {
                    DeciderMsg::Track { containers } => {
                        pieces.whole();
                        publish(&tracking, containers);
                    }
                    DeciderMsg::TrackPart { containers, part, parts } => match pieces.piece(containers, part, parts) {
                        Ok(Some(set)) => publish(&tracking, set),
                        Ok(None) => {}
                        Err(err) => return Attempt::Ended { why: err.to_string(), hint: None },
                    },
                    DeciderMsg::NotLeader { leader_addr } => {
                        return Attempt::Ended { why: "the decider is no longer the leader".into(), hint: leader_addr };
                    }
                    DeciderMsg::Zero { command } => {
                        // Only full ids of this node's own containers reach Docker.
                        if let Err(why) = admit::admit(&command, tracking.borrow().as_deref().map(Vec::as_slice)) {
                            tracing::warn!("cluster: refused a command from the decider: {why}");
                            continue;
                        }
                        let _ = zero_commands.send(command);
                    }
                    DeciderMsg::Welcome | DeciderMsg::Heartbeat => {}
                }
            }
        });
        let mut tick = tokio::time::interval(s.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_write = Instant::now();
        let mut batch = Vec::with_capacity(s.batch);
        let ended = loop {
            tokio::select! {
                ended = &mut read_task => break ended.unwrap_or_else(|e| Attempt::Ended { why: format!("reader failed: {e}"), hint: None }),
                received = rx.recv_many(&mut batch, s.batch.max(1)) => {
                    if received == 0 {
                        break Attempt::Ended { why: "the probe stopped".into(), hint: None };
                    }
                    let now = monotonic_ns();
                    let max_age = s.max_event_age.as_nanos() as u64;
                    let before = batch.len();
                    let events: Vec<WireEvent> = batch
                        .drain(..)
                        .filter(|e| now.saturating_sub(e.timestamp_ns()) <= max_age)
                        .map(|e| WireEvent::from_probe(&e, now))
                        .collect();
                    let stale = (before - events.len()) as u64;
                    let dropped = self.shared.dropped.fetch_add(stale, Ordering::Relaxed) + stale;
                    if events.is_empty() { continue; }
                    let n = events.len() as u64;
                    if let Err(err) = writer.write(&AgentMsg::Events { events, dropped }).await {
                        break Attempt::Ended { why: err.to_string(), hint: None };
                    }
                    self.shared.forwarded.fetch_add(n, Ordering::Relaxed);
                    last_write = Instant::now();
                }
                Some(report) = reports.recv() => {
                    if let Err(err) = writer.write(&AgentMsg::Zero { report }).await {
                        break Attempt::Ended { why: err.to_string(), hint: None };
                    }
                    last_write = Instant::now();
                }
                _ = tick.tick() => {
                    if last_write.elapsed() >= s.heartbeat / 2 {
                        let dropped = self.shared.dropped.load(Ordering::Relaxed);
                        if let Err(err) = writer.write(&AgentMsg::Heartbeat { dropped }).await {
                            break Attempt::Ended { why: err.to_string(), hint: None };
                        }
                        last_write = Instant::now();
                    }
                }
            }
        };
        read_task.abort();
        writer.shutdown().await;
        ended
    }
}
