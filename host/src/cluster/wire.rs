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
//!
//! Metrics are data (protocol 3): a reading names its metric and a tracking
//! set names each band's metric, as strings of the metrics table
//! ([`crate::model::METRICS`]), so a new metric needs no new protocol. A
//! name the receiver's table does not know (a newer node's metric) is
//! refused and counted, never passed on: [`WireEvent::into_probe`],
//! [`WireTracked::into_tracked`]. A probe's control signals have variants
//! of their own: they are not measurements.
//!
//! A tracking set larger than one frame travels in pieces
//! ([`DeciderMsg::TrackPart`], [`track_messages`]); a set that fits is one
//! [`DeciderMsg::Track`] as before, so this needs no new protocol version:
//! two daemons of protocol 3 that never exchange a set over one frame
//! behave exactly as they did, and a set over one frame could never be
//! sent before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Band, EventKind, Metric, Thresholds, Tracked, Unit};
use crate::probe::{ProbeEvent, Reading, Signal};

/// Version of this protocol; both sides must speak the same. 2: scale to
/// zero's commands and reports. 3: readings and thresholds name their
/// metric (metrics as data), signals typed apart from readings.
pub const PROTOCOL: u32 = 3;

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
    /// One piece of a tracking set too large for one frame. Pieces come
    /// in order, `part` 0 to `parts - 1`, with no other tracking message
    /// between them; the last one completes the set, which then replaces
    /// any earlier set, as a `Track` does.
    TrackPart {
        /// Containers and thresholds of this piece.
        containers: Vec<WireTracked>,
        /// This piece's index, from 0.
        part: u32,
        /// How many pieces the set has (at most [`MAX_TRACK_PARTS`]).
        parts: u32,
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

/// A [`ProbeEvent`] on the wire: a reading of a metric named by its table
/// name, or a control signal. Times are ages, see the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum WireEvent {
    /// A [`Reading`].
    Reading {
        /// Full container id.
        container_id: String,
        /// The metric's name in the table.
        metric: String,
        /// The value, in `unit`.
        value: f64,
        /// The unit.
        unit: Unit,
        /// Sample or crossing.
        kind: EventKind,
        /// Nanoseconds between the measurement and the moment the agent
        /// wrote the frame.
        age_ns: u64,
    },
    /// [`Signal::Accepted`].
    Accepted {
        /// Full container id.
        container_id: String,
        /// Connections accepted since the previous sample.
        count: u64,
        /// As in `Reading`.
        age_ns: u64,
    },
    /// [`Signal::MemoryLimit`].
    MemoryLimit {
        /// Full container id.
        container_id: String,
        /// The limit, bytes.
        bytes: u64,
        /// As in `Reading`.
        age_ns: u64,
    },
    /// [`Signal::Wake`] of a replica the agent did not freeze itself.
    Wake {
        /// Full container id.
        container_id: String,
        /// As in `Reading`.
        age_ns: u64,
    },
    /// [`Signal::PortSyn`].
    PortSyn {
        /// The parked port.
        port: u16,
        /// As in `Reading`.
        age_ns: u64,
    },
    /// [`Signal::PortListen`].
    PortListen {
        /// The parked port.
        port: u16,
        /// As in `Reading`.
        age_ns: u64,
    },
}

/// A reading of a metric the receiver's table does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric {0:?} is not in this daemon's metrics table (a newer node?)")]
pub struct UnknownMetric(pub String);

impl WireEvent {
    /// `event` as measured on this node, aged against `now_ns` (this node's
    /// CLOCK_MONOTONIC).
    pub fn from_probe(event: &ProbeEvent, now_ns: u64) -> WireEvent {
        let age_ns = now_ns.saturating_sub(event.timestamp_ns());
        match event {
            ProbeEvent::Reading(r) => WireEvent::Reading {
                container_id: r.container_id.clone(),
                metric: r.metric.name().to_string(),
                value: r.value,
                unit: r.unit.clone(),
                kind: r.kind,
                age_ns,
            },
            ProbeEvent::Signal(Signal::Accepted { container_id, count, .. }) => {
                WireEvent::Accepted { container_id: container_id.clone(), count: *count, age_ns }
            }
            ProbeEvent::Signal(Signal::MemoryLimit { container_id, bytes, .. }) => {
                WireEvent::MemoryLimit { container_id: container_id.clone(), bytes: *bytes, age_ns }
            }
            ProbeEvent::Signal(Signal::Wake { container_id, .. }) => {
                WireEvent::Wake { container_id: container_id.clone(), age_ns }
            }
            ProbeEvent::Signal(Signal::PortSyn { port, .. }) => WireEvent::PortSyn { port: *port, age_ns },
            ProbeEvent::Signal(Signal::PortListen { port, .. }) => WireEvent::PortListen { port: *port, age_ns },
        }
    }

    /// The event on the receiver's clock, `now_ns` being the receiver's
    /// CLOCK_MONOTONIC when the frame arrived (the transit time is not
    /// known and is counted as zero). A reading of a metric this daemon's
    /// table does not know is refused: the caller counts it.
    pub fn into_probe(self, now_ns: u64) -> Result<ProbeEvent, UnknownMetric> {
        let at = |age_ns: u64| now_ns.saturating_sub(age_ns);
        Ok(match self {
            WireEvent::Reading { container_id, metric, value, unit, kind, age_ns } => {
                let Some(def) = crate::model::metrics::lookup(&metric) else { return Err(UnknownMetric(metric)) };
                ProbeEvent::Reading(Reading {
                    container_id,
                    metric: def.metric(),
                    value,
                    unit,
                    kind,
                    timestamp_ns: at(age_ns),
                })
            }
            WireEvent::Accepted { container_id, count, age_ns } => {
                Signal::Accepted { container_id, count, timestamp_ns: at(age_ns) }.into()
            }
            WireEvent::MemoryLimit { container_id, bytes, age_ns } => {
                Signal::MemoryLimit { container_id, bytes, timestamp_ns: at(age_ns) }.into()
            }
            WireEvent::Wake { container_id, age_ns } => Signal::Wake { container_id, timestamp_ns: at(age_ns) }.into(),
            WireEvent::PortSyn { port, age_ns } => Signal::PortSyn { port, timestamp_ns: at(age_ns) }.into(),
            WireEvent::PortListen { port, age_ns } => Signal::PortListen { port, timestamp_ns: at(age_ns) }.into(),
        })
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

/// A [`Tracked`] on the wire: the bands that are set, by metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WireTracked {
    /// Full container id.
    pub container_id: String,
    /// Metric name -> band; metrics without a threshold are left out.
    #[serde(default)]
    pub bands: BTreeMap<String, WireBand>,
}

impl From<&Tracked> for WireTracked {
    fn from(t: &Tracked) -> Self {
        let bands = t
            .thresholds
            .bands()
            .filter(|(_, band)| band.upper.is_some() || band.lower.is_some())
            .map(|(def, band)| (def.name.to_string(), WireBand { upper: band.upper, lower: band.lower }))
            .collect();
        WireTracked { container_id: t.container_id.clone(), bands }
    }
}

impl WireTracked {
    /// The tracking request, and how many bands named a metric this
    /// daemon's table does not know (left out: the probe could not measure
    /// it; the caller counts them).
    pub fn into_tracked(self) -> (Tracked, usize) {
        let mut unknown = 0;
        // The event bounds are not on the wire yet: agents use the defaults.
        let mut thresholds = Thresholds::default();
        for (name, band) in self.bands {
            if !thresholds.set(&Metric::named(&name), Band { upper: band.upper, lower: band.lower }) {
                unknown += 1;
            }
        }
        (Tracked { container_id: self.container_id, thresholds }, unknown)
    }
}

/// Most pieces of one tracking set: with the default 1 MiB frame, about
/// 500,000 containers on one node, far beyond what an engine runs. Bounds
/// what an agent buffers before the set is complete.
pub const MAX_TRACK_PARTS: u32 = 64;

/// Room left in a frame for the message's envelope and the MAC.
const FRAME_SLACK: usize = 256;

/// The messages that send `set` to an agent in frames of at most
/// `max_frame` bytes: one [`DeciderMsg::Track`] when it fits, else
/// [`DeciderMsg::TrackPart`]s, each filled up to the frame.
pub fn track_messages(set: &[WireTracked], max_frame: usize) -> Vec<DeciderMsg> {
    let budget = max_frame.saturating_sub(FRAME_SLACK).max(1);
    let mut pieces: Vec<Vec<WireTracked>> = vec![Vec::new()];
    let mut used = 0;
    for tracked in set {
        // A comma and the entry; a failed size estimate counts as a full frame.
        let size = serde_json::to_vec(tracked).map_or(budget, |bytes| bytes.len() + 1);
        if used + size > budget && !pieces.last().is_none_or(Vec::is_empty) {
            pieces.push(Vec::new());
            used = 0;
        }
        used += size;
        pieces.last_mut().expect("never empty").push(tracked.clone());
    }
    if pieces.len() == 1 {
        return vec![DeciderMsg::Track { containers: pieces.pop().unwrap_or_default() }];
    }
    let parts = pieces.len() as u32;
    pieces
        .into_iter()
        .enumerate()
        .map(|(part, containers)| DeciderMsg::TrackPart { containers, part: part as u32, parts })
        .collect()
}

/// Puts a tracking set sent in pieces back together, on the agent.
#[derive(Debug, Default)]
pub struct TrackAssembler {
    /// The pieces received so far of the set in transit.
    pending: Vec<WireTracked>,
    /// The piece expected next (0: none in transit).
    next: u32,
}

/// A piece out of order or beyond [`MAX_TRACK_PARTS`]: the decider does
/// not follow the protocol, and the session ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tracking set piece {part} of {parts} out of order (expected piece {expected}, at most {MAX_TRACK_PARTS} pieces)"
)]
pub struct BadPiece {
    /// The piece received.
    pub part: u32,
    /// The pieces announced.
    pub parts: u32,
    /// The piece expected.
    pub expected: u32,
}

impl TrackAssembler {
    /// Take one piece; the complete set once its last piece arrived.
    pub fn piece(
        &mut self,
        containers: Vec<WireTracked>,
        part: u32,
        parts: u32,
    ) -> Result<Option<Vec<WireTracked>>, BadPiece> {
        if part == 0 {
            self.pending.clear();
            self.next = 0;
        }
        if part != self.next || part >= parts || parts > MAX_TRACK_PARTS {
            let expected = self.next;
            self.pending.clear();
            self.next = 0;
            return Err(BadPiece { part, parts, expected });
        }
        self.pending.extend(containers);
        self.next += 1;
        if self.next < parts {
            return Ok(None);
        }
        self.next = 0;
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    /// A whole set arrived in one `Track`: any set in transit is abandoned.
    pub fn whole(&mut self) {
        self.pending.clear();
        self.next = 0;
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

    fn reading(metric: Metric) -> ProbeEvent {
        ProbeEvent::Reading(Reading {
            container_id: "c1".into(),
            metric,
            value: 0.9,
            unit: Unit::FractionOfLimit,
            kind: EventKind::Crossing(Crossing { threshold: 0.8, direction: Direction::Up }),
            timestamp_ns: 1_000,
        })
    }

    fn through_the_wire(events: &[ProbeEvent]) -> (String, Vec<WireEvent>) {
        let wire = events.iter().map(|e| WireEvent::from_probe(e, 1_500)).collect();
        let json = serde_json::to_string(&AgentMsg::Events { events: wire, dropped: 0 }).expect("json");
        let AgentMsg::Events { events, .. } = serde_json::from_str(&json).expect("parse") else {
            panic!("not events: {json}")
        };
        (json, events)
    }

    #[test]
    fn events_keep_their_age_across_clocks() {
        let event = reading(Metric::CPU);
        let (json, mut events) = through_the_wire(std::slice::from_ref(&event));
        assert!(json.contains(r#""metric":"cpu""#), "the metric travels as its name: {json}");
        let wire = events.pop().expect("one event");
        assert!(matches!(wire, WireEvent::Reading { age_ns: 500, .. }), "{wire:?}");
        let ProbeEvent::Reading(back) = wire.into_probe(10_000_000).expect("a known metric") else {
            panic!("a reading")
        };
        let ProbeEvent::Reading(sent) = event else { unreachable!() };
        assert_eq!(back, Reading { timestamp_ns: 10_000_000 - 500, ..sent });
    }

    #[test]
    fn every_table_metric_crosses_by_name_and_unknown_names_are_refused() {
        for def in crate::model::METRICS {
            let (json, mut events) = through_the_wire(&[reading(def.metric())]);
            assert!(json.contains(&format!(r#""metric":"{}""#, def.name)), "{json}");
            let back = events.pop().expect("one").into_probe(2_000).expect("known");
            assert!(matches!(back, ProbeEvent::Reading(r) if r.metric == def.metric()));
        }
        // A newer node's metric: the frame parses, the reading is refused.
        let json = r#"{"type":"events","dropped":0,"events":[{"type":"reading","container-id":"c1",
            "metric":"gpu-busy","value":1.0,"unit":"count","kind":"sample","age-ns":0}]}"#;
        let AgentMsg::Events { mut events, .. } = serde_json::from_str(json).expect("parse") else { panic!() };
        assert_eq!(events.pop().expect("one").into_probe(1), Err(UnknownMetric("gpu-busy".into())));
    }

    #[test]
    fn signals_cross_as_signals() {
        let signals = [
            Signal::Accepted { container_id: "c1".into(), count: 2, timestamp_ns: 1_000 },
            Signal::MemoryLimit { container_id: "c1".into(), bytes: 1 << 30, timestamp_ns: 1_000 },
            Signal::Wake { container_id: "c1".into(), timestamp_ns: 1_000 },
            Signal::PortSyn { port: 8080, timestamp_ns: 1_000 },
            Signal::PortListen { port: 8080, timestamp_ns: 1_000 },
        ];
        let events: Vec<ProbeEvent> = signals.iter().cloned().map(ProbeEvent::Signal).collect();
        let (json, wire) = through_the_wire(&events);
        assert!(!json.contains("metric"), "a signal names no metric: {json}");
        for (sent, got) in signals.into_iter().zip(wire) {
            let back = got.into_probe(1_500).expect("signals are never refused");
            assert_eq!(back, ProbeEvent::Signal(sent));
        }
    }

    #[test]
    fn tracking_round_trips() {
        let tracked = Tracked {
            container_id: "c1".into(),
            thresholds: Thresholds::default()
                .with(&Metric::CPU, Band { upper: Some(0.7), lower: Some(0.2) })
                .with(&Metric::MEMORY, Band { upper: Some(1e9), lower: None }),
        };
        let json = serde_json::to_string(&DeciderMsg::Track { containers: vec![(&tracked).into()] }).expect("json");
        assert!(json.starts_with(r#"{"type":"track""#), "{json}");
        assert!(json.contains(r#""bands":{"cpu":{"upper":0.7,"lower":0.2},"memory":"#), "{json}");
        assert!(!json.contains("connections"), "bands not set stay off the wire: {json}");
        let DeciderMsg::Track { containers } = serde_json::from_str(&json).expect("parse") else { panic!("{json}") };
        assert_eq!(containers[0].clone().into_tracked(), (tracked, 0));
        // A band of a metric this daemon does not know is left out, counted.
        let json = r#"{"type":"track","containers":[{"container-id":"c1","bands":{"cpu":{"upper":0.5,"lower":null},"gpu-busy":{"upper":1.0,"lower":null}}}]}"#;
        let DeciderMsg::Track { containers } = serde_json::from_str(json).expect("parse") else { panic!() };
        let (tracked, unknown) = containers[0].clone().into_tracked();
        assert_eq!(unknown, 1);
        assert_eq!(tracked.thresholds.band(&Metric::CPU).upper, Some(0.5));
    }

    fn big_set(n: usize) -> Vec<WireTracked> {
        (0..n)
            .map(|i| WireTracked {
                container_id: format!("{i:064x}"),
                bands: BTreeMap::from([("cpu".to_string(), WireBand { upper: Some(0.7), lower: Some(0.2) })]),
            })
            .collect()
    }

    #[test]
    fn a_set_that_fits_is_one_track_and_a_larger_one_travels_in_pieces_under_the_cap() {
        let small = big_set(100);
        assert_eq!(track_messages(&small, 1 << 20), vec![DeciderMsg::Track { containers: small.clone() }]);
        assert_eq!(track_messages(&[], 1 << 20), vec![DeciderMsg::Track { containers: Vec::new() }]);
        let set = big_set(10_000);
        let max_frame = 1 << 20;
        let messages = track_messages(&set, max_frame);
        assert!(messages.len() > 1, "10,000 containers do not fit one MiB");
        let mut assembler = TrackAssembler::default();
        let mut done = None;
        for (i, msg) in messages.iter().enumerate() {
            let json = serde_json::to_vec(msg).expect("json");
            assert!(json.len() + 32 <= max_frame, "piece {i} is {} bytes", json.len());
            let DeciderMsg::TrackPart { containers, part, parts } = msg.clone() else { panic!("a piece") };
            assert_eq!((part as usize, parts as usize), (i, messages.len()));
            let back: DeciderMsg = serde_json::from_slice(&json).expect("parse");
            assert_eq!(&back, msg);
            let complete = assembler.piece(containers, part, parts).expect("in order");
            assert_eq!(complete.is_some(), i + 1 == messages.len());
            done = complete.or(done);
        }
        assert_eq!(done.expect("complete"), set);
    }

    #[test]
    fn pieces_out_of_order_or_too_many_are_refused_and_a_new_set_starts_over() {
        let mut a = TrackAssembler::default();
        assert_eq!(a.piece(big_set(1), 0, 3), Ok(None));
        assert_eq!(a.piece(big_set(1), 2, 3), Err(BadPiece { part: 2, parts: 3, expected: 1 }));
        assert!(a.piece(big_set(1), 1, 3).is_err(), "after a bad piece only a piece 0 starts a set");
        assert!(a.piece(big_set(1), 0, MAX_TRACK_PARTS + 1).is_err());
        // A set abandoned half way: the next piece 0 starts a fresh one.
        assert_eq!(a.piece(big_set(2), 0, 2), Ok(None));
        assert_eq!(a.piece(big_set(3), 0, 2), Ok(None));
        assert_eq!(a.piece(big_set(1), 1, 2).expect("in order").map(|s| s.len()), Some(4));
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
