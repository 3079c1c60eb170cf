//! Multi-node Swarm: an agent on every node, one decider on the Raft
//! leader, and the authenticated channel between them.
//!
//! The same `host` binary runs on every node as a global service. Each
//! node measures its own engine's containers with its own probe and its
//! [`AgentHandle`] forwards the measurements to the [`Decider`] endpoint of
//! the manager that is the Raft leader; the decider sends each node the
//! set of containers it should measure, with thresholds. Swarm is the
//! distributed engine: leadership is Swarm's ([`docker::watch_leadership`]),
//! the managers' addresses are Swarm's ([`docker::EngineManagers`]), and
//! this module adds no consensus of its own.
//!
//! # How the daemon wires it (`daemon/multi_node.rs`)
//!
//! ```text
//! let docker = <the node's own engine>;
//! let me = cluster::docker::identity(&docker).await?;          // node id, hostname, manager?
//! let token = cluster::Token::from_file(&args.token_file)?;    // Docker secret
//! let settings = args.settings();                              // ClusterArgs -> ChannelSettings
//!
//! // Every node: forward what the local probe measures, measure what the decider says.
//! let managers = cluster::docker::EngineManagers { docker: docker.clone(), port: settings.listen.port() };
//! let agent = AgentHandle::spawn(settings.clone(), token.clone(), me.node_id.clone(), me.hostname, managers);
//! //   probe event           -> agent.forward(event)          (never waits)
//! //   agent.tracking() changes -> cluster::diff(&current, &set) -> probe.track / probe.untrack
//!
//! // Managers only: the decider endpoint, active while this manager leads.
//! let leadership = cluster::docker::watch_leadership(docker.clone(), settings.listen.port(), settings.leader_poll);
//! let (events_tx, events) = mpsc::channel(4096);          // RemoteEvent { node_id, event }
//! let (membership_tx, membership) = mpsc::unbounded_channel(); // Membership::Live / Lost
//! let decider = Decider::bind(settings, token, leadership.clone(), events_tx, membership_tx).await?;
//! //   select! over: events (decide on them, only while leadership.borrow().is_leader),
//! //                 membership (Lost: drop that node's replicas from the aggregates, log),
//! //                 inventory changes -> decider.set_tracking(node_id, &tracked_on_that_node)
//! ```
//!
//! The leader's own agent connects to its own decider like any other node's,
//! so one path carries every node's events, and nothing changes when
//! leadership moves: the old leader's decider sends `NotLeader` and closes
//! every session the moment Swarm says it lost leadership, its agents
//! reconnect to the new leader (within the back-off's first steps, well
//! under a second), and the new leader's decider sends each node its set
//! once the inventory has it. A manager that is not the leader must not
//! decide: gate the decide path on `leadership.borrow().is_leader`.
//!
//! Which manager decides is a choice of one line: [`docker::watch_leadership`]
//! follows Swarm's Raft leader (decisions move when Swarm moves leadership,
//! e.g. on `docker node demote`); [`lease::watch_lease`] takes a lease on
//! the autoscaler's own service (`AUTOSCALER_SERVICE={{.Service.Name}}` in
//! the stack), so decisions also move within `expire` (3 s) when the
//! deciding daemon dies while its engine keeps running. Both give the same
//! `watch::Receiver<Leadership>`.
//!
//! # Layout
//! - [`auth`]: the token, HMAC-SHA256, constant-time compare, session keys;
//! - [`frame`]: length-prefixed, capped, MAC'd frames;
//! - [`wire`]: the messages and the handshake's order;
//! - [`handshake`]: both sides of the handshake;
//! - [`decider`]: the leader's listener; [`agent`]: the node's connection;
//! - [`backoff`]: jittered exponential back-off;
//! - [`docker`]: identity, managers and leadership from the local engine (bollard);
//! - [`lease`]: leadership as a lease in Swarm's Raft store (bollard), which
//!   also moves when the leader's autoscaler dies but its engine lives.
//!
//! Invariant: this module knows nodes, containers and measurements, not
//! services or policies; which containers a node tracks is the event loop's
//! decision, passed in as [`Tracked`] sets.

pub mod agent;
pub mod auth;
pub mod backoff;
pub mod decider;
pub mod docker;
pub mod frame;
pub mod handshake;
pub mod lease;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use agent::{AgentHandle, AgentStats, ManagerSource, TrackingSet};
pub use auth::{DEFAULT_TOKEN_FILE, Token, TokenError};
pub use decider::{Decider, DeciderStats, ZERO_REPORTS_PER_NODE, ZERO_REPORTS_QUEUED, ZeroReports};
pub use tls::{CertIdentity, Credentials, DEFAULT_CERT_DIR, SwarmCerts};
pub use wire::{ZeroCommand, ZeroReport};

use crate::model::Tracked;
use crate::probe::ProbeEvent;

/// The channel's port by default.
pub const DEFAULT_PORT: u16 = 9465;

/// A measurement from a node's agent, on the decider's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEvent {
    /// The Swarm node that measured it.
    pub node_id: String,
    /// The measurement; `timestamp_ns` is on this machine's CLOCK_MONOTONIC.
    pub event: ProbeEvent,
}

/// A scale-to-zero report from a node's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteZero {
    /// The Swarm node that carried out the command, or handled the wake.
    pub node_id: String,
    /// What happened.
    pub report: wire::ZeroReport,
}

/// A node entering or leaving the set of nodes that report.
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    /// The node connected, or reported again after being lost.
    Live {
        /// Swarm node id.
        node_id: String,
        /// Its hostname.
        hostname: String,
    },
    /// The node sent nothing for longer than the node timeout: its replicas
    /// must leave the service aggregates until it is `Live` again.
    Lost {
        /// Swarm node id.
        node_id: String,
        /// Its hostname.
        hostname: String,
        /// How long it has been silent.
        silent_for: Duration,
    },
}

/// Whether this manager decides, and where the one that does is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// This node is the Raft leader.
    pub is_leader: bool,
    /// The leader's channel address (`host:port`), when known.
    pub leader_addr: Option<String>,
}

/// Settings of both ends; defaults in [`Default`], flags in [`ClusterArgs`].
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Where a manager's decider listens (default `0.0.0.0:9465`); agents
    /// dial the managers on this port.
    pub listen: SocketAddr,
    /// Largest authenticated frame (default 1 MiB).
    pub max_frame: usize,
    /// Each side sends at least one frame this often (default 1 s); three
    /// missed ones end the session.
    pub heartbeat: Duration,
    /// Connect plus handshake must finish within this (default 3 s).
    pub handshake_timeout: Duration,
    /// Most authenticated sessions a decider holds (default 1024).
    pub max_connections: usize,
    /// Most connections still in their handshake, from everyone (default
    /// 128): unauthenticated peers wait in this budget, never in the
    /// sessions', so they cannot keep real agents out.
    pub max_handshakes: usize,
    /// Of those, from one source address (default 16).
    pub max_handshakes_per_source: usize,
    /// A node silent for longer leaves the aggregates (default 5 s).
    pub node_timeout: Duration,
    /// Events an agent queues while its connection is busy or down (default 4096).
    pub agent_queue: usize,
    /// Most events in one frame (default 256).
    pub batch: usize,
    /// Events older than this are dropped instead of forwarded (default 5 s).
    pub max_event_age: Duration,
    /// First and largest reconnect delay (default 100 ms and 5 s).
    pub reconnect_base: Duration,
    /// See `reconnect_base`.
    pub reconnect_max: Duration,
    /// How often a manager re-reads whether it is the leader (default 500 ms).
    pub leader_poll: Duration,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            max_frame: frame::DEFAULT_MAX_FRAME,
            heartbeat: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(3),
            max_connections: 1024,
            max_handshakes: 128,
            max_handshakes_per_source: 16,
            node_timeout: Duration::from_secs(5),
            agent_queue: 4096,
            batch: 256,
            max_event_age: Duration::from_secs(5),
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            leader_poll: Duration::from_millis(500),
        }
    }
}

/// The flags of multi-node mode; flatten into the daemon's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Multi-node mode: forward this node's measurements to the decider on
    /// the swarm leader, and on managers accept agents (see deploy/stack.yml).
    #[arg(long, env = "AUTOSCALER_CLUSTER")]
    pub cluster: bool,

    /// Where a manager listens for agents; agents dial managers on its port.
    #[arg(long, env = "AUTOSCALER_CLUSTER_LISTEN", default_value = "0.0.0.0:9465", value_name = "ADDR")]
    pub cluster_listen: SocketAddr,

    /// How nodes prove who they are: `swarm` (mutual TLS with the swarm's
    /// own node certificates; a node speaks only for itself, only a manager
    /// decides) or `token` (the shared token alone: any holder is any node).
    #[arg(long, env = "AUTOSCALER_CLUSTER_AUTH", value_enum, default_value_t = AuthMode::Swarm)]
    pub cluster_auth: AuthMode,

    /// The node's swarm certificates (`<data-root>/swarm/certificates`).
    #[arg(long, env = "AUTOSCALER_CLUSTER_CERT_DIR", default_value = DEFAULT_CERT_DIR, value_name = "DIR")]
    pub cluster_cert_dir: PathBuf,

    /// The shared token (a Docker secret), at least 16 bytes: required with
    /// `--cluster-auth token` (default /run/secrets/autoscaler_token), an
    /// opt-in second factor with `swarm`.
    #[arg(long, env = "AUTOSCALER_CLUSTER_TOKEN_FILE", value_name = "FILE")]
    pub cluster_token_file: Option<PathBuf>,

    /// Deciders to try, `host:port` separated by commas, instead of the
    /// managers the local engine lists.
    #[arg(long, env = "AUTOSCALER_CLUSTER_MANAGERS", value_delimiter = ',', value_name = "ADDRS")]
    pub cluster_managers: Vec<String>,

    /// A node silent for longer leaves the service aggregates.
    #[arg(long, env = "AUTOSCALER_CLUSTER_NODE_TIMEOUT", default_value = "5s", value_parser = crate::units::parse_positive_duration)]
    pub cluster_node_timeout: Duration,

    /// Which manager decides: `raft` follows Swarm's leader; `lease` holds a
    /// lease on the autoscaler's own service (--cluster-service), which also
    /// moves when the deciding daemon dies but its engine lives.
    #[arg(long, env = "AUTOSCALER_CLUSTER_LEADERSHIP", value_enum, default_value_t = LeadershipMode::Raft)]
    pub cluster_leadership: LeadershipMode,

    /// The autoscaler's own Swarm service, for `--cluster-leadership lease`
    /// (in a stack: `AUTOSCALER_SERVICE: "{{.Service.Name}}"`).
    #[arg(long, env = "AUTOSCALER_SERVICE", value_name = "SERVICE")]
    pub cluster_service: Option<String>,
}

/// How the nodes of a deployment authenticate each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Mutual TLS with the swarm's node certificates ([`tls`]).
    Swarm,
    /// The shared token alone, over plain TCP.
    Token,
}

/// How the deciding manager is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeadershipMode {
    /// Swarm's Raft leader ([`docker::watch_leadership`]).
    Raft,
    /// A lease on the autoscaler's service ([`lease::watch_lease`]).
    Lease,
}

impl ClusterArgs {
    /// The credentials these flags give: reads the token file (and, with
    /// `swarm`, checks the certificates), so a mistake fails at start.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        use anyhow::Context as _;
        let read = |path: &std::path::Path| {
            Token::from_file(path).with_context(|| format!("reading the cluster token from {}", path.display()))
        };
        match self.cluster_auth {
            AuthMode::Token => {
                let path = self.cluster_token_file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
                tracing::warn!(
                    "cluster: --cluster-auth token: nodes prove only that they hold the shared token; any holder can speak for any node and act as the decider (docs/security.md)"
                );
                Ok(Credentials::Token(read(&path)?))
            }
            AuthMode::Swarm => {
                let certs = SwarmCerts::new(&self.cluster_cert_dir);
                let me = certs.identity().context("reading this node's swarm certificates")?;
                let token = self.cluster_token_file.as_deref().map(read).transpose()?;
                tracing::info!(
                    node = %me.node_id, role = %me.role, dir = %self.cluster_cert_dir.display(),
                    second_factor = token.is_some(),
                    "cluster: the channel uses mutual TLS with this node's swarm certificate"
                );
                Ok(Credentials::Swarm { certs, token })
            }
        }
    }

    /// The channel settings these flags give.
    pub fn settings(&self) -> ChannelSettings {
        ChannelSettings {
            listen: self.cluster_listen,
            node_timeout: self.cluster_node_timeout,
            ..ChannelSettings::default()
        }
    }
}

/// What to change in a probe to go from `current` (container id -> what it
/// tracks now) to `desired`: containers to (re)track with new thresholds,
/// and ids to untrack.
pub fn diff(current: &HashMap<String, Tracked>, desired: &[Tracked]) -> (Vec<Tracked>, Vec<String>) {
    let wanted: std::collections::HashSet<&str> = desired.iter().map(|t| t.container_id.as_str()).collect();
    let track = desired.iter().filter(|t| current.get(&t.container_id) != Some(*t)).cloned().collect();
    let untrack = current.keys().filter(|id| !wanted.contains(id.as_str())).cloned().collect();
    (track, untrack)
}
