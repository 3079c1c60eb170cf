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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use tokio::sync::{mpsc, watch};

use crate::cluster::docker::{EngineManagers, NodeIdentity, identity, role_change, watch_leadership};
use crate::cluster::lease::{LeaseTiming, watch_lease};
use crate::cluster::{
    AgentHandle, ClusterArgs, Credentials, Decider, Leadership, LeadershipMode, ManagerSource, Membership, RemoteEvent,
    TrackingSet, ZeroCommand, ZeroReport, ZeroReports,
};
use crate::cluster::{AgentStats, DeciderStats};
use crate::metrics::Metrics;
use crate::model::Tracked;
use crate::probe::{self, ProbeEvent, ProbeHandle, ProbeSettings, Signal};
use crate::status::{Board, ClusterStatus};
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

mod node;
pub use node::NodeIo;

/// This node in the swarm, connected: what both roles need.
#[derive(Debug)]
pub struct Node {
    /// The node's own engine.
    pub swarm: SwarmClient,
    /// Who this node is.
    pub me: NodeIdentity,
    /// How this node proves who it is on the channel.
    pub credentials: Credentials,
    /// The flags.
    pub args: ClusterArgs,
}

/// Connect to this node's engine and read the token: the checks that make
/// `--cluster` fail at start with one clear line.
pub async fn join(args: &ClusterArgs) -> anyhow::Result<Node> {
    let credentials = args.credentials()?;
    let swarm = crate::swarm::connect_node().await?;
    let me = identity(&swarm.docker).await?;
    if let Credentials::Swarm { certs, .. } = &credentials {
        let cert = certs.identity()?;
        if cert.node_id != me.node_id {
            bail!(
                "the certificate in {} is node {}'s, but this engine is node {}: point --cluster-cert-dir at this engine's <data-root>/swarm/certificates",
                certs.dir().display(),
                cert.node_id,
                me.node_id
            );
        }
    }
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
    Ok(Node { swarm, me, credentials, args: args.clone() })
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
    /// Every node's scale-to-zero reports (bounded per node and in all).
    pub zero: ZeroReports,
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
        let decider = Decider::bind(settings, node.credentials.clone(), leadership.clone(), events_tx, membership_tx)
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
        let counters: [(&str, &str, &'static str, Read); 6] = [
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
                "Connections refused: failed handshakes, over the handshake budget (all, or one address's) or the session cap.",
                "counter",
                |s| s.refused,
            ),
            (
                "autoscaler_cluster_decider_unknown_metric_total",
                "Readings refused because their metric is not in this daemon's metrics table (a newer node).",
                "counter",
                |s| s.unknown_metric,
            ),
            (
                "autoscaler_cluster_decider_zero_reports_dropped_total",
                "Scale-to-zero reports dropped at this decider: their node's share of the queue to the event loop, or the queue, was full.",
                "counter",
                |s| s.zero_dropped,
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

#[cfg(test)]
impl ClusterTracking {
    /// A decider endpoint on `settings.listen` (loopback in tests) whose
    /// leadership the test sets through `leadership`.
    pub(crate) async fn bind_for_test(
        settings: crate::cluster::ChannelSettings,
        credentials: impl Into<crate::cluster::Credentials>,
        leadership: watch::Receiver<Leadership>,
    ) -> (ClusterTracking, DeciderInputs) {
        let (events_tx, events) = mpsc::channel(REMOTE_CHANNEL);
        let (membership_tx, membership) = mpsc::unbounded_channel();
        let decider = Decider::bind(settings, credentials, leadership.clone(), events_tx, membership_tx)
            .await
            .expect("bind the decider");
        let zero = decider.take_zero_reports().expect("the decider's reports");
        let tracking = ClusterTracking { decider: Arc::new(decider), leadership, sent: BTreeMap::new() };
        (tracking, DeciderInputs { events, membership, zero })
    }

    /// Where the decider endpoint listens.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.decider.local_addr()
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
            // A worker decides for no service: its board has no service,
            // and it is ready as soon as its probe and agent run.
            let board = Arc::new(Board::default());
            io.show_on(&board, None);
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
