//! The messages of the agent channel, protocol version [`PROTOCOL`].
//!
//! Handshake (plain frames, small cap):
//! 1. agent -> decider: [`AgentHello`]: protocol, node id, hostname, nonce;
//! 2. decider -> agent: [`DeciderChallenge`]: its nonce and its proof of
//!    the token over both nonces (the agent checks it: a listener without
//!    the token cannot feed it tracking instructions);
//! 3. agent -> decider: [`AgentProof`]: the agent's proof. A wrong proof
//!    closes the connection without another byte; the refusal is logged.
//!
//! Then every frame carries a MAC ([`super::frame`]): the decider sends
//! [`DeciderMsg::Welcome`] (or [`DeciderMsg::NotLeader`] and closes), and
//! from there on [`AgentMsg`]s and [`DeciderMsg`]s flow both ways.
//!
//! Events carry their age rather than a timestamp: CLOCK_MONOTONIC is per
//! machine, so the decider re-bases each event on its own clock.
//!
//! Scale to zero crosses the channel too (protocol 2): the decider tells a
//! node's agent to freeze or thaw one of its containers
//! ([`DeciderMsg::Zero`]), and the agent says how that ended, and when a
//! connection woke a replica it had frozen, which it thaws on its own,
//! without waiting for the decider ([`AgentMsg::Zero`]).

use serde::{Deserialize, Serialize};

use crate::model::{Band, EventKind, Metric, Thresholds, Tracked, Unit};
use crate::probe::ProbeEvent;

/// Version of this protocol; both sides must speak the same. 2: scale to
/// zero's commands and reports.
pub const PROTOCOL: u32 = 2;

/// Longest node id or hostname accepted in a hello.
pub const MAX_NAME_LEN: usize = 128;

/// Step 1 of the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentHello {
    /// [`PROTOCOL`] of the agent.
    pub protocol: u32,
    /// The agent's Swarm node id (`docker info`: Swarm.NodeID).
    pub node_id: String,
    /// The agent's hostname, for log lines.
    pub hostname: String,
    /// Fresh nonce, hex.
    pub nonce: String,
}

/// Step 2 of the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeciderChallenge {
    /// [`PROTOCOL`] of the decider.
    pub protocol: u32,
    /// Fresh nonce, hex.
    pub nonce: String,
    /// The decider's proof of the token, hex.
    pub proof: String,
}

/// Step 3 of the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentProof {
    /// The agent's proof of the token, hex.
    pub proof: String,
}

/// From an agent, after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AgentMsg {
    /// Measurements, oldest first.
    Events {
        /// The batch.
        events: Vec<WireEvent>,
        /// Events the agent dropped so far (queue full or too old), in total.
        dropped: u64,
    },
    /// Nothing measured lately; the agent is alive.
    Heartbeat {
        /// As in `Events`.
        dropped: u64,
    },
    /// A scale-to-zero command ended, or a connection woke a replica.
    Zero {
        /// What happened.
        report: ZeroReport,
    },
}

/// From the decider, after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DeciderMsg {
    /// Authenticated, and this manager is the leader: forward away.
    Welcome,
    /// Authenticated, but this manager does not decide (any more); try the
    /// leader, if known. The decider closes the connection after it.
    NotLeader {
        /// The leader's channel address, when this manager knows it.
        leader_addr: Option<String>,
    },
    /// The complete set of this node's containers to measure, replacing
    /// any earlier set.
    Track {
        /// Containers and thresholds.
        containers: Vec<WireTracked>,
    },
    /// The decider is alive.
    Heartbeat,
    /// Freeze, thaw or recover one of this node's containers.
    Zero {
        /// What to do.
        command: ZeroCommand,
    },
}

/// Scale to zero on a node, one container at a time. The agent carries it
/// out with its own engine and probe, and answers with a [`ZeroReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum ZeroCommand {
    /// Refuse a replica with a health check, arm its wake, give up if a
    /// connection is open, pause it. While it is frozen, its first
    /// connection makes the agent thaw it at once.
    Freeze {
        /// Full container id.
        container_id: String,
    },
    /// Unpause it (the decider's choice: labels changed, say).
    Thaw {
        /// Full container id.
        container_id: String,
    },
    /// If it is paused and this agent did not freeze it (a daemon killed
    /// while it was frozen), unpause it.
    Recover {
        /// Full container id.
        container_id: String,
    },
}

/// How a [`ZeroCommand`] ended on the node, or a wake the node handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum ZeroReport {
    /// Paused (`already`: it was, by this agent).
    Frozen {
        /// Full container id.
        container_id: String,
        /// Docker's pause, microseconds.
        took_us: u64,
        /// It was frozen already: nothing was done.
        already: bool,
    },
    /// A connection was open: not frozen now.
    Busy {
        /// Full container id.
        container_id: String,
    },
    /// Not frozen: refused for good (a health check, a probe without the
    /// wake) or failed.
    NotFrozen {
        /// Full container id.
        container_id: String,
        /// Refused (true) or failed (false).
        refused: bool,
        /// Why.
        reason: String,
    },
    /// Unpaused: on the decider's command, or (`wake_us`) because a
    /// connection arrived, which the agent handled at once.
    Thawed {
        /// Full container id.
        container_id: String,
        /// Docker's unpause, microseconds.
        took_us: u64,
        /// From the kernel's connection to the unpause returning,
        /// microseconds, when a connection woke it.
        wake_us: Option<u64>,
    },
    /// The unpause failed.
    ThawFailed {
        /// Full container id.
        container_id: String,
        /// Docker's answer.
        reason: String,
    },
    /// Found paused on a recover, and unpaused (`took_us`) or not (`error`).
    FoundPaused {
        /// Full container id.
        container_id: String,
        /// Docker's unpause, microseconds.
        took_us: Option<u64>,
        /// Why the unpause failed.
        error: Option<String>,
    },
}

/// A [`ProbeEvent`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WireEvent {
    /// Full container id.
    pub container_id: String,
    /// What was measured.
    pub metric: Metric,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit.
    pub unit: Unit,
    /// Sample or crossing.
    pub kind: EventKind,
    /// Nanoseconds between the measurement and the moment the agent wrote
    /// the frame.
    pub age_ns: u64,
}

impl WireEvent {
    /// `event` as measured on this node, aged against `now_ns` (this node's
    /// CLOCK_MONOTONIC).
    pub fn from_probe(event: &ProbeEvent, now_ns: u64) -> WireEvent {
        WireEvent {
            container_id: event.container_id.clone(),
            metric: event.metric.clone(),
            value: event.value,
            unit: event.unit.clone(),
            kind: event.kind,
            age_ns: now_ns.saturating_sub(event.timestamp_ns),
        }
    }

    /// The event on the receiver's clock, `now_ns` being the receiver's
    /// CLOCK_MONOTONIC when the frame arrived (the transit time is not
    /// known and is counted as zero).
    pub fn into_probe(self, now_ns: u64) -> ProbeEvent {
        ProbeEvent {
            container_id: self.container_id,
            metric: self.metric,
            value: self.value,
            unit: self.unit,
            kind: self.kind,
            timestamp_ns: now_ns.saturating_sub(self.age_ns),
        }
    }
}

/// A [`Band`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WireBand {
    /// Upper threshold.
    pub upper: Option<f64>,
    /// Lower threshold.
    pub lower: Option<f64>,
}

/// A [`Tracked`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WireTracked {
    /// Full container id.
    pub container_id: String,
    /// CPU band.
    pub cpu: WireBand,
    /// Memory band.
    pub memory: WireBand,
    /// Connections band.
    pub connections: WireBand,
}

impl From<&Tracked> for WireTracked {
    fn from(t: &Tracked) -> Self {
        let band = |b: Band| WireBand { upper: b.upper, lower: b.lower };
        WireTracked {
            container_id: t.container_id.clone(),
            cpu: band(t.thresholds.cpu),
            memory: band(t.thresholds.memory),
            connections: band(t.thresholds.connections),
        }
    }
}

impl From<WireTracked> for Tracked {
    fn from(w: WireTracked) -> Self {
        let band = |b: WireBand| Band { upper: b.upper, lower: b.lower };
        Tracked {
            container_id: w.container_id,
            // The event bounds are not on the wire yet: agents use the defaults.
            thresholds: Thresholds {
                cpu: band(w.cpu),
                memory: band(w.memory),
                connections: band(w.connections),
                ..Thresholds::default()
            },
        }
    }
}

/// A node id or hostname we are willing to log and key maps on: short,
/// printable, no spaces (Swarm's ids are 25 lowercase alphanumerics).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Crossing, Direction};

    #[test]
    fn events_keep_their_age_across_clocks() {
        let event = ProbeEvent {
            container_id: "c1".into(),
            metric: Metric::Cpu,
            value: 0.9,
            unit: Unit::FractionOfLimit,
            kind: EventKind::Crossing(Crossing { threshold: 0.8, direction: Direction::Up }),
            timestamp_ns: 1_000,
        };
        let wire = WireEvent::from_probe(&event, 1_500);
        assert_eq!(wire.age_ns, 500);
        let json = serde_json::to_string(&AgentMsg::Events { events: vec![wire], dropped: 0 }).expect("json");
        let AgentMsg::Events { mut events, .. } = serde_json::from_str(&json).expect("parse") else {
            panic!("not events: {json}")
        };
        let back = events.pop().expect("one event").into_probe(10_000_000);
        assert_eq!(back, ProbeEvent { timestamp_ns: 10_000_000 - 500, ..event });
    }

    #[test]
    fn tracking_round_trips() {
        let tracked = Tracked {
            container_id: "c1".into(),
            thresholds: Thresholds {
                cpu: Band { upper: Some(0.7), lower: Some(0.2) },
                memory: Band { upper: Some(1e9), lower: None },
                connections: Band::default(),
                ..Thresholds::default()
            },
        };
        let json = serde_json::to_string(&DeciderMsg::Track { containers: vec![(&tracked).into()] }).expect("json");
        assert!(json.starts_with(r#"{"type":"track""#), "{json}");
        let DeciderMsg::Track { containers } = serde_json::from_str(&json).expect("parse") else { panic!("{json}") };
        assert_eq!(Tracked::from(containers[0].clone()), tracked);
    }

    #[test]
    fn zero_commands_and_reports_round_trip() {
        let command = DeciderMsg::Zero { command: ZeroCommand::Freeze { container_id: "c1".into() } };
        let json = serde_json::to_string(&command).expect("json");
        assert_eq!(json, r#"{"type":"zero","command":{"op":"freeze","container-id":"c1"}}"#);
        assert_eq!(serde_json::from_str::<DeciderMsg>(&json).expect("parse"), command);
        let report = AgentMsg::Zero {
            report: ZeroReport::Thawed { container_id: "c1".into(), took_us: 25_000, wake_us: Some(27_000) },
        };
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(serde_json::from_str::<AgentMsg>(&json).expect("parse"), report);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ojzux1fjq3lismuopaunqr1du"));
        assert!(valid_name("node-1.example"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("x\u{1b}[31m"));
        assert!(!valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }
}
