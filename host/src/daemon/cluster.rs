//! Multi-node mode (`--cluster`): the daemon's side of [`crate::cluster`].
//!
//! Every node runs the same binary. On every node:
//! - the local probe's events go to the node's [`AgentHandle`], which
//!   forwards them to the decider on the deciding manager (never waiting:
//!   a full queue drops and counts);
//! - the tracking set the decider sends drives the local probe
//!   ([`NodeIo::apply_tracking`]); a node that cannot reach any manager
//!   keeps its last set and keeps measuring;
//! - scale to zero by freezing runs here, on the decider's command
//!   ([`NodeIo::on_zero_command`]): the node's own engine pauses its own
//!   container and its own probe arms the wake; a connection to a frozen
//!   replica is handled here at once, without a round trip to the decider
//!   (the replica is thawed, the wake event not forwarded, a report sent
//!   for the audit); what a node froze it thaws when its daemon stops.
//!
//! On managers, in addition, the [`Decider`] endpoint accepts agents while
//! this manager leads (Raft leader or lease holder, `--cluster-leadership`)
//! and hands their events to the event loop as [`RemoteEvent`]s, which feed
//! the same service view as single-node events do; the inventory covers
//! every node's tasks and [`ClusterTracking::sync`] sends each node its
//! set. Decisions and Swarm writes happen only while this manager leads.
//!
//! Workers run [`run_worker`]: probe, agent, nothing else (a worker's
//! engine can neither list services nor scale them).
//!
//! The role is read once, at start. When Swarm promotes or demotes the node
//! ([`role_changed`]), the daemon ends with an error that says so, and its
//! restart policy (the stack's `condition: any`) starts it again in the new
//! role: a promoted worker gets a decider, a demoted manager stops
//! following the swarm's services with an engine that refuses to list them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use tokio::sync::{mpsc, watch};

use crate::cluster::docker::{EngineManagers, NodeIdentity, identity, role_change, watch_leadership};
use crate::cluster::lease::{LeaseTiming, watch_lease};
use crate::cluster::{
    AgentHandle, ClusterArgs, Decider, Leadership, LeadershipMode, ManagerSource, Membership, RemoteEvent, RemoteZero,
    Token, TrackingSet, ZeroCommand, ZeroReport,
};
use crate::cluster::{AgentStats, DeciderStats};
use crate::metrics::Metrics;
use crate::model::Tracked;
use crate::probe::{self, ProbeEvent, ProbeHandle, ProbeSettings, Signal};
use crate::swarm::audit::ZeroOutcome;
use crate::swarm::inventory::Inventory;
use crate::swarm::{Freezer, SwarmClient};

/// Where the agent looks for deciders: the fixed `--cluster-managers`, or
/// the managers the node's engine lists.
#[derive(Debug, Clone)]
pub enum Managers {
    /// `--cluster-managers`.
    Fixed(Vec<String>),
    /// `docker info`: Swarm.RemoteManagers.
    Engine(EngineManagers),
}

impl ManagerSource for Managers {
    async fn managers(&self) -> Vec<String> {
        match self {
            Managers::Fixed(list) => list.clone(),
            Managers::Engine(engine) => engine.managers().await,
        }
    }
}

/// How often a node asks its engine whether Swarm changed its role.
const ROLE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when Swarm promoted or demoted this node since the daemon
/// started, with the error that ends the daemon so that its supervisor
/// starts it again in the new role.
pub async fn role_changed(node: &Node) -> anyhow::Error {
    let manager = role_change(node.swarm.docker.clone(), node.me.is_manager, ROLE_POLL).await;
    let (now, again) = if manager {
        ("promoted this node to a manager", "with a decider")
    } else {
        ("demoted this node to a worker", "as a worker's agent")
    };
    anyhow::anyhow!(
        "swarm {now} (node {}): the autoscaler stops so that its restart policy starts it again {again}",
        node.me.hostname
    )
}

/// This node in the swarm, connected: what both roles need.
#[derive(Debug)]
pub struct Node {
    /// The node's own engine.
    pub swarm: SwarmClient,
    /// Who this node is.
    pub me: NodeIdentity,
    /// The channel's token.
    pub token: Token,
    /// The flags.
    pub args: ClusterArgs,
}

/// Connect to this node's engine and read the token: the checks that make
/// `--cluster` fail at start with one clear line.
pub async fn join(args: &ClusterArgs) -> anyhow::Result<Node> {
    let token = Token::from_file(&args.cluster_token_file)
        .with_context(|| format!("reading the cluster token from {}", args.cluster_token_file.display()))?;
    let swarm = crate::swarm::connect_node().await?;
    let me = identity(&swarm.docker).await?;
    if args.cluster_leadership == LeadershipMode::Lease && me.is_manager && args.cluster_service.is_none() {
        bail!(
            "--cluster-leadership lease needs the autoscaler's own service name: --cluster-service NAME (in a stack: AUTOSCALER_SERVICE: \"{{{{.Service.Name}}}}\")"
        );
    }
    tracing::info!(
        endpoint = %swarm.endpoint, node = %me.node_id, hostname = %me.hostname,
        role = if me.is_manager { "manager" } else { "worker" },
        "cluster mode: connected to this node's engine ({})", swarm.version
    );
    Ok(Node { swarm, me, token, args: args.clone() })
}

/// The agent of this node and the local probe it drives.
#[derive(Debug)]
pub struct NodeIo {
    agent: Arc<AgentHandle>,
    tracking: watch::Receiver<TrackingSet>,
    probe: ProbeHandle,
    /// What the local probe was told to track, by container id.
    current: HashMap<String, Tracked>,
    /// The decider's scale-to-zero commands.
    commands: Option<mpsc::UnboundedReceiver<ZeroCommand>>,
    /// Scale to zero on this node.
    zero: LocalZero,
}

/// Where one of this node's containers stands with scale to zero; a
/// container not frozen by this node has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// The pause is in flight; `wake_ns`: a connection came meanwhile;
    /// `thaw`: the decider asked for a thaw meanwhile.
    Freezing { wake_ns: Option<u64>, thaw: bool },
    /// Paused, the wake armed.
    Frozen,
    /// The unpause is in flight.
    Thawing,
}

/// Freezing and thawing this node's containers: the decider commands, the
/// node carries out and reports; a wake is handled here.
#[derive(Debug, Clone)]
struct LocalZero {
    freezer: Freezer,
    probe: ProbeHandle,
    agent: Arc<AgentHandle>,
    /// This node's containers frozen or on their way, by id.
    state: Arc<Mutex<HashMap<String, Local>>>,
}

/// How long a stopping node waits for its thaws.
const THAW_GRACE: Duration = Duration::from_secs(5);

impl NodeIo {
    /// Start the agent of `node`; the local probe is `probe`.
    pub fn start(node: &Node, probe: ProbeHandle) -> NodeIo {
        let settings = node.args.settings();
        let managers = if node.args.cluster_managers.is_empty() {
            Managers::Engine(EngineManagers { docker: node.swarm.docker.clone(), port: settings.listen.port() })
        } else {
            Managers::Fixed(node.args.cluster_managers.clone())
        };
        let agent = AgentHandle::spawn(
            settings,
            node.token.clone(),
            node.me.node_id.clone(),
            node.me.hostname.clone(),
            managers,
        );
        let tracking = agent.tracking();
        let commands = agent.take_zero_commands();
        let agent = Arc::new(agent);
        let zero = LocalZero {
            freezer: Freezer { docker: node.swarm.docker.clone() },
            probe: probe.clone(),
            agent: agent.clone(),
            state: Arc::default(),
        };
        NodeIo { agent, tracking, probe, current: HashMap::new(), commands, zero }
    }

    /// A local measurement: to the decider; the first connection to a
    /// replica this node froze is handled here instead.
    pub fn forward(&self, event: ProbeEvent) {
        if let ProbeEvent::Signal(Signal::Wake { container_id, timestamp_ns }) = &event
            && self.zero.on_wake(container_id, *timestamp_ns)
        {
            return;
        }
        self.agent.forward(event);
    }

    /// The decider's scale-to-zero commands for this node, for
    /// [`NodeIo::on_zero_command`]; `None` after the first call.
    pub fn take_zero_commands(&mut self) -> Option<mpsc::UnboundedReceiver<ZeroCommand>> {
        self.commands.take()
    }

    /// Carry out a scale-to-zero command with this node's engine and probe.
    pub fn on_zero_command(&self, command: ZeroCommand) {
        self.zero.command(command);
    }

    /// The daemon stops: thaw what this node froze, within a grace period.
    pub async fn thaw_all(&self) {
        self.zero.thaw_all().await;
    }

    /// Resolves when the decider sent a new tracking set.
    pub async fn tracking_changed(&mut self) {
        if self.tracking.changed().await.is_err() {
            // The agent is gone (shutdown): nothing will change again.
            std::future::pending::<()>().await;
        }
    }

    /// Bring the local probe in line with the decider's latest set.
    pub fn apply_tracking(&mut self) {
        let Some(set) = self.tracking.borrow_and_update().clone() else { return };
        let (track, untrack) = crate::cluster::diff(&self.current, &set);
        if !track.is_empty() || !untrack.is_empty() {
            tracing::info!(
                tracking = set.len(),
                added = track.len(),
                removed = untrack.len(),
                "cluster: new tracking set"
            );
        }
        for id in untrack {
            self.probe.untrack(&id);
            self.current.remove(&id);
        }
        for tracked in track {
            self.current.insert(tracked.container_id.clone(), tracked.clone());
            self.probe.track(tracked);
        }
    }
}

impl LocalZero {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, command: ZeroCommand) {
        match command {
            ZeroCommand::Freeze { container_id } => self.freeze(container_id),
            ZeroCommand::Thaw { container_id } => {
                let mut state = self.lock();
                match state.get(&container_id).copied() {
                    Some(Local::Frozen) | None => {
                        // Not frozen here: a replica left paused before this
                        // daemon; unpausing it is what the decider wants.
                        state.insert(container_id.clone(), Local::Thawing);
                        drop(state);
                        self.thaw(container_id, None);
                    }
                    Some(Local::Freezing { wake_ns, .. }) => {
                        state.insert(container_id, Local::Freezing { wake_ns, thaw: true });
                    }
                    Some(Local::Thawing) => {}
                }
            }
            ZeroCommand::Recover { container_id } => {
                if self.lock().contains_key(&container_id) {
                    return;
                }
                let this = self.clone();
                tokio::spawn(async move {
                    if let Ok(true) = this.freezer.is_paused(&container_id).await {
                        let unpaused = this.freezer.thaw(&container_id).await;
                        let (took_us, error) = match unpaused {
                            Ok(took) => (Some(took.as_micros() as u64), None),
                            Err(reason) => (None, Some(reason)),
                        };
                        this.agent.report(ZeroReport::FoundPaused { container_id, took_us, error });
                    }
                });
            }
        }
    }

    fn freeze(&self, container_id: String) {
        {
            let mut state = self.lock();
            match state.get(&container_id) {
                Some(Local::Frozen) => {
                    drop(state);
                    self.agent.report(ZeroReport::Frozen { container_id, took_us: 0, already: true });
                    return;
                }
                Some(_) => return,
                None => {
                    state.insert(container_id.clone(), Local::Freezing { wake_ns: None, thaw: false });
                }
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Paused already, by a daemon of this node that was killed: keep
            // it so, with the wake armed this time.
            if let Ok(true) = this.freezer.is_paused(&container_id).await
                && this.probe.set_wake(&container_id, true).await.is_ok()
            {
                this.lock().insert(container_id.clone(), Local::Frozen);
                this.agent.report(ZeroReport::Frozen { container_id, took_us: 0, already: true });
                return;
            }
            let done = super::zero::freeze(&this.freezer, &this.probe, container_id.clone()).await;
            let report = match done {
                super::zero::Done::Frozen { took, .. } => {
                    let next = {
                        let mut state = this.lock();
                        match state.get(&container_id).copied() {
                            Some(Local::Freezing { wake_ns, thaw }) if wake_ns.is_some() || thaw => {
                                state.insert(container_id.clone(), Local::Thawing);
                                Some(wake_ns)
                            }
                            _ => {
                                state.insert(container_id.clone(), Local::Frozen);
                                None
                            }
                        }
                    };
                    let took_us = took.as_micros() as u64;
                    this.agent.report(ZeroReport::Frozen {
                        container_id: container_id.clone(),
                        took_us,
                        already: false,
                    });
                    if let Some(wake_ns) = next {
                        this.thaw(container_id, wake_ns);
                    }
                    return;
                }
                super::zero::Done::Busy { .. } => ZeroReport::Busy { container_id: container_id.clone() },
                super::zero::Done::NotFrozen { outcome, reason, .. } => ZeroReport::NotFrozen {
                    container_id: container_id.clone(),
                    refused: outcome == ZeroOutcome::Refused,
                    reason,
                },
                other => {
                    tracing::warn!("unexpected end of a freeze: {other:?}");
                    return;
                }
            };
            this.lock().remove(&container_id);
            this.agent.report(report);
        });
    }

    /// A wake event for `container`: whether this node handles it (it froze
    /// the container), thawing it at once.
    fn on_wake(&self, container: &str, kernel_ns: u64) -> bool {
        let mut state = self.lock();
        match state.get(container).copied() {
            Some(Local::Frozen) => {
                state.insert(container.to_string(), Local::Thawing);
                drop(state);
                self.thaw(container.to_string(), Some(kernel_ns));
                true
            }
            Some(Local::Freezing { thaw, .. }) => {
                state.insert(container.to_string(), Local::Freezing { wake_ns: Some(kernel_ns), thaw });
                true
            }
            Some(Local::Thawing) => true,
            None => false,
        }
    }

    /// Unpause `container` (marked thawing), disarm its wake, report.
    fn thaw(&self, container_id: String, wake_ns: Option<u64>) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.freezer.thaw(&container_id).await;
            let _ = this.probe.set_wake(&container_id, false).await;
            this.lock().remove(&container_id);
            let report = match result {
                Ok(took) => {
                    let wake = wake_ns.map(|ns| Duration::from_nanos(crate::model::monotonic_ns().saturating_sub(ns)));
                    if let Some(wake) = wake {
                        tracing::info!(
                            container = %container_id,
                            "woke replica {} on this node: connection to unpaused in {:.1} ms",
                            &container_id[..container_id.len().min(12)],
                            wake.as_secs_f64() * 1000.0
                        );
                    }
                    ZeroReport::Thawed {
                        container_id,
                        took_us: took.as_micros() as u64,
                        wake_us: wake.map(|w| w.as_micros() as u64),
                    }
                }
                Err(reason) => ZeroReport::ThawFailed { container_id, reason },
            };
            this.agent.report(report);
        });
    }

    async fn thaw_all(&self) {
        let frozen: Vec<String> = {
            let mut state = self.lock();
            let ids: Vec<String> =
                state.iter().filter(|(_, l)| **l == Local::Frozen).map(|(id, _)| id.clone()).collect();
            for id in &ids {
                state.insert(id.clone(), Local::Thawing);
            }
            ids
        };
        for id in frozen {
            self.thaw(id, None);
        }
        let deadline = tokio::time::Instant::now() + THAW_GRACE;
        while !self.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<String> = self.lock().keys().cloned().collect();
        if !left.is_empty() {
            tracing::error!("replicas still frozen at shutdown (run docker unpause on them): {}", left.join(", "));
        }
    }
}

/// The manager's side: the decider endpoint and what the event loop sent
/// to each node.
#[derive(Debug)]
pub struct ClusterTracking {
    decider: Arc<Decider>,
    leadership: watch::Receiver<Leadership>,
    /// The set last given to the decider for each node.
    sent: BTreeMap<String, Vec<Tracked>>,
}

/// What the decider endpoint produces for the event loop.
#[derive(Debug)]
pub struct DeciderInputs {
    /// Events of every node, this one included.
    pub events: mpsc::Receiver<RemoteEvent>,
    /// Nodes joining and going silent.
    pub membership: mpsc::UnboundedReceiver<Membership>,
    /// Every node's scale-to-zero reports.
    pub zero: mpsc::UnboundedReceiver<RemoteZero>,
}

/// Events buffered between the decider's sessions and the event loop.
const REMOTE_CHANNEL: usize = 4096;

impl ClusterTracking {
    /// Follow leadership (`--cluster-leadership`) and bind the decider.
    pub async fn start(node: &Node) -> anyhow::Result<(ClusterTracking, DeciderInputs)> {
        let settings = node.args.settings();
        let port = settings.listen.port();
        let docker: Docker = node.swarm.docker.clone();
        let leadership = match (node.args.cluster_leadership, &node.args.cluster_service) {
            (LeadershipMode::Lease, Some(service)) => {
                watch_lease(docker, service.clone(), node.me.node_id.clone(), port, LeaseTiming::default())
            }
            _ => watch_leadership(docker, port, settings.leader_poll),
        };
        let (events_tx, events) = mpsc::channel(REMOTE_CHANNEL);
        let (membership_tx, membership) = mpsc::unbounded_channel();
        let listen = settings.listen;
        let decider = Decider::bind(settings, node.token.clone(), leadership.clone(), events_tx, membership_tx)
            .await
            .with_context(|| format!("listening for agents on {listen} (--cluster-listen)"))?;
        let zero = decider.take_zero_reports().context("the decider's scale-to-zero reports")?;
        let decider = Arc::new(decider);
        let inputs = DeciderInputs { events, membership, zero };
        Ok((ClusterTracking { decider, leadership, sent: BTreeMap::new() }, inputs))
    }

    /// Send node `node_id` a scale-to-zero command; false when its agent
    /// is not connected.
    pub fn send_zero(&self, node_id: &str, command: ZeroCommand) -> bool {
        self.decider.send_zero(node_id, command)
    }

    /// Whether this manager decides right now.
    pub fn is_leader(&self) -> bool {
        self.leadership.borrow().is_leader
    }

    /// Leadership as it changes.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Send every node whose set changed its new set (an empty one to a node
    /// that no longer runs a tracked container).
    pub fn sync(&mut self, inventory: &Inventory) {
        let wanted = inventory.tracked_by_node();
        for (node, set) in &wanted {
            if self.sent.get(node) != Some(set) {
                self.decider.set_tracking(node, set);
            }
        }
        for node in self.sent.keys() {
            if !wanted.contains_key(node) {
                self.decider.set_tracking(node, &[]);
            }
        }
        self.sent = wanted;
    }

    /// Export the decider's counters and whether this manager leads.
    pub fn export_counters(&self, metrics: &Metrics) {
        type Read = fn(&DeciderStats) -> u64;
        let counters: [(&str, &str, &'static str, Read); 5] = [
            ("autoscaler_cluster_decider_events_total", "Events agents forwarded to this decider.", "counter", |s| {
                s.events
            }),
            (
                "autoscaler_cluster_decider_dropped_events_total",
                "Events dropped at this decider (event loop queue full) plus those agents report dropping.",
                "counter",
                |s| s.dropped + s.agent_dropped,
            ),
            (
                "autoscaler_cluster_refused_total",
                "Connections refused: failed handshakes, over the cap.",
                "counter",
                |s| s.refused,
            ),
            (
                "autoscaler_cluster_decider_unknown_metric_total",
                "Readings refused because their metric is not in this daemon's metrics table (a newer node).",
                "counter",
                |s| s.unknown_metric,
            ),
            ("autoscaler_cluster_nodes_connected", "Agents connected to this decider now.", "gauge", |s| s.connected),
        ];
        for (name, help, kind, read) in counters {
            let decider = self.decider.clone();
            metrics.set_source(name, help, kind, move || read(&decider.stats()) as f64);
        }
        let leadership = self.leadership.clone();
        metrics.set_source("autoscaler_cluster_leader", "1 while this manager decides.", "gauge", move || {
            f64::from(u8::from(leadership.borrow().is_leader))
        });
    }
}

impl NodeIo {
    /// Export the agent's counters.
    pub fn export_counters(&self, metrics: &Metrics) {
        type Read = fn(&AgentStats) -> f64;
        let counters: [(&str, &str, &'static str, Read); 3] = [
            (
                "autoscaler_cluster_forwarded_events_total",
                "Events this node's agent sent to the decider.",
                "counter",
                |s| s.forwarded as f64,
            ),
            (
                "autoscaler_cluster_agent_dropped_events_total",
                "Events this node's agent dropped: queue full (no decider) or too old to send.",
                "counter",
                |s| s.dropped as f64,
            ),
            ("autoscaler_cluster_agent_connected", "1 while this node's agent has a decider session.", "gauge", |s| {
                f64::from(u8::from(s.connected_to.is_some()))
            }),
        ];
        for (name, help, kind, read) in counters {
            let agent = self.agent.clone();
            metrics.set_source(name, help, kind, move || read(&agent.stats()));
        }
    }
}

/// A worker: measure and forward until `shutdown`. No policies, no
/// inventory, no Swarm writes; metrics (probe and agent counters) on
/// `metrics_addr` if given.
pub async fn run_worker(
    node: Node,
    probe: ProbeSettings,
    metrics_addr: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (probe_tx, mut probe_events) = mpsc::channel(super::PROBE_CHANNEL);
    let probe = probe::start(probe, probe_tx).await.context("starting the probe")?;
    let mut io = NodeIo::start(&node, probe.clone());
    let mut zero_commands = io.take_zero_commands();
    let metrics = Arc::new(Metrics::default());
    let _server = match metrics_addr {
        Some(addr) => {
            // A worker decides for no service: its board stays empty, and
            // it is ready as soon as its probe and agent run.
            let board = Arc::new(crate::status::Board::default());
            board.set_ready(true);
            let (bound, task) = crate::metrics::serve(addr, metrics.clone(), board).await?;
            tracing::info!(address = %bound, "prometheus metrics on http://{bound}/metrics");
            Some(super::AbortOnDrop(task))
        }
        None => None,
    };
    super::export_probe_counters(&metrics, &probe);
    io.export_counters(&metrics);
    tracing::info!(node = %node.me.node_id, "autoscaler agent running (worker: measures and forwards, the leader decides)");
    let mut shutdown = std::pin::pin!(shutdown);
    let mut role = std::pin::pin!(role_changed(&node));
    let ended = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            err = &mut role => break Err(err),
            Some(event) = probe_events.recv() => io.forward(event),
            () = io.tracking_changed() => io.apply_tracking(),
            Some(command) = super::maybe(zero_commands.as_mut().map(mpsc::UnboundedReceiver::recv)) => io.on_zero_command(command),
        }
    };
    io.thaw_all().await;
    let stats = probe.stats();
    let agent = io.agent.stats();
    tracing::info!(
        probe_events = stats.events,
        probe_dropped = stats.dropped,
        forwarded = agent.forwarded,
        agent_dropped = agent.dropped,
        "stopped"
    );
    ended
}
