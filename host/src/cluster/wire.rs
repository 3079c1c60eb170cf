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

use serde::{Deserialize, Serialize};

use crate::model::{Band, EventKind, Metric, Thresholds, Tracked, Unit};
use crate::probe::ProbeEvent;

/// Version of this protocol; both sides must speak the same.
pub const PROTOCOL: u32 = 1;

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
    fn names_are_checked() {
        assert!(valid_name("ojzux1fjq3lismuopaunqr1du"));
        assert!(valid_name("node-1.example"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("x\u{1b}[31m"));
        assert!(!valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }
}
