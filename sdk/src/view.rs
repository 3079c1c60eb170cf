//! What a policy's `decide` sees: [`Event`] and [`State`], built by the SDK
//! from the contract's per-call arguments and the service's binding.
//!
//! Contract 0.3 passes the service's id, name and settings once per
//! binding, not on every call, and names the replica by a number. The SDK
//! keeps each binding and lends its parts to every call as shared values
//! ([`SharedStr`], `Arc<[..]>`: a reference count, no copy), so a policy
//! reads `event.service_name` and `state.number("cpu.upper")` as before.
//! `Arc` costs what `Rc` does in a component (WebAssembly without threads
//! has no atomic instructions to pay for) and keeps the types `Send` for
//! native tests.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::{Aggregate, EventKind, Metric, SettingValue, Unit};

/// One measurement of one replica (container), pushed by the kernel: the
/// event that triggered this call.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What was measured.
    pub metric: Metric,
    /// The measured value, in `unit`.
    pub value: f64,
    /// The unit of `value`.
    pub unit: Unit,
    /// Why the event was pushed.
    pub kind: EventKind,
    /// The replica as the contract names it: the first 16 hex digits of
    /// its Docker container id read as a number, the first digit highest.
    pub container: u64,
    /// The same 16 hex digits as text (`{:016x}` of `container`): a prefix
    /// of the Docker container id, whose first 12 digits are what `docker
    /// ps` shows. Before contract 0.3 this was the whole 64-digit id.
    pub container_id: ContainerId,
    /// The Swarm service id the replica belongs to.
    pub service_id: SharedStr,
    /// The Swarm service name.
    pub service_name: SharedStr,
    /// When the kernel measured it: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
}

/// What the daemon knows about the service when it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Replicas currently requested in the service spec.
    pub current_replicas: u32,
    /// Lower bound from the service's settings (`autoscale.min`).
    pub min_replicas: u32,
    /// Upper bound from the service's settings (`autoscale.max`).
    pub max_replicas: u32,
    /// Now, on the clock of `event.timestamp_ns` (CLOCK_MONOTONIC ns).
    pub now_ns: u64,
    /// When the daemon last raised the replicas; `None` if it never has.
    pub last_scale_up_ns: Option<u64>,
    /// When the daemon last lowered the replicas; `None` if it never has.
    pub last_scale_down_ns: Option<u64>,
    /// Until when scale-in is held by an earlier hold decision of this
    /// policy for this service; `None` if no hold is in force.
    pub hold_until_ns: Option<u64>,
    /// The service view: one aggregate per metric the daemon measures for
    /// this service, over all its running replicas on every node. Read it
    /// with [`State::cpu`], [`State::memory`], [`State::connections`] or
    /// [`State::metric`]; `state.metrics.iter()` visits them all.
    pub metrics: Metrics,
    /// The values of the declared settings, in declared order: the label's
    /// value parsed to the declared type, else the default, else `None`.
    /// Read them by name with [`State::number`] and friends. Shared with
    /// the service's binding: the same list on every call until the
    /// service's labels change.
    pub settings: Arc<[Option<SettingValue>]>,
}

/// The service view of a [`State`]: the aggregates of the three metrics the
/// contract names, and any metric added to the contract since.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// CPU utilisation.
    pub cpu: Option<Aggregate>,
    /// Memory in use.
    pub memory: Option<Aggregate>,
    /// Open TCP connections.
    pub connections: Option<Aggregate>,
    /// Metrics the contract added after this SDK (`Metric::Other`).
    pub others: Vec<Aggregate>,
}

impl Metrics {
    /// The aggregate of `metric`, if the daemon measures it.
    pub fn get(&self, metric: &Metric) -> Option<&Aggregate> {
        match metric {
            Metric::Cpu => self.cpu.as_ref(),
            Metric::Memory => self.memory.as_ref(),
            Metric::Connections => self.connections.as_ref(),
            Metric::Other(_) => self.others.iter().find(|a| a.metric == *metric),
        }
    }

    /// The aggregate of `metric`, to change it (in tests).
    pub fn get_mut(&mut self, metric: &Metric) -> Option<&mut Aggregate> {
        match metric {
            Metric::Cpu => self.cpu.as_mut(),
            Metric::Memory => self.memory.as_mut(),
            Metric::Connections => self.connections.as_mut(),
            Metric::Other(_) => self.others.iter_mut().find(|a| a.metric == *metric),
        }
    }

    /// Put `aggregate` in its metric's place, replacing what was there.
    pub fn set(&mut self, aggregate: Aggregate) {
        match &aggregate.metric {
            Metric::Cpu => self.cpu = Some(aggregate),
            Metric::Memory => self.memory = Some(aggregate),
            Metric::Connections => self.connections = Some(aggregate),
            Metric::Other(_) => {
                self.others.retain(|a| a.metric != aggregate.metric);
                self.others.push(aggregate);
            }
        }
    }

    /// Every aggregate: CPU, memory, connections (those present), then the
    /// others.
    pub fn iter(&self) -> MetricsIter<'_> {
        MetricsIter {
            named: [self.cpu.as_ref(), self.memory.as_ref(), self.connections.as_ref()],
            next: 0,
            others: self.others.iter(),
        }
    }

    /// Every aggregate, to change them (in tests).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Aggregate> {
        self.cpu
            .iter_mut()
            .chain(self.memory.iter_mut())
            .chain(self.connections.iter_mut())
            .chain(self.others.iter_mut())
    }

    /// How many aggregates there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> IntoIterator for &'a Metrics {
    type Item = &'a Aggregate;
    type IntoIter = MetricsIter<'a>;

    fn into_iter(self) -> MetricsIter<'a> {
        self.iter()
    }
}

/// The iterator of [`Metrics::iter`].
#[derive(Debug, Clone)]
pub struct MetricsIter<'a> {
    /// CPU, memory and connections.
    named: [Option<&'a Aggregate>; 3],
    /// The next of `named` to look at.
    next: usize,
    /// Then these.
    others: std::slice::Iter<'a, Aggregate>,
}

impl<'a> Iterator for MetricsIter<'a> {
    type Item = &'a Aggregate;

    fn next(&mut self) -> Option<&'a Aggregate> {
        while let Some(slot) = self.named.get(self.next) {
            self.next += 1;
            if slot.is_some() {
                return *slot;
            }
        }
        self.others.next()
    }
}

/// Text shared between the calls of one service (its id and name): cloning
/// it counts a reference, nothing is copied. Reads as a `&str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The replica's id as text: 16 hex digits held inline when it comes from
/// the contract, or any text a test gave.
#[derive(Clone)]
pub struct ContainerId(IdText);

/// Where a [`ContainerId`]'s text is.
#[derive(Clone)]
enum IdText {
    /// 16 lowercase hex digits.
    Hex([u8; 16]),
    /// Text from a test's builder.
    Given(Arc<str>),
}

impl ContainerId {
    /// The 16 hex digits of `container`, the contract's number.
    pub fn from_number(container: u64) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (i, byte) in text.iter_mut().enumerate() {
            *byte = DIGITS[((container >> (60 - 4 * i)) & 0xf) as usize];
        }
        ContainerId(IdText::Hex(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only hex digits are ever written there: always UTF-8.
            IdText::Hex(text) => std::str::from_utf8(text).unwrap_or_default(),
            IdText::Given(text) => text,
        }
    }

    /// The contract's number for this id: its first 16 hex digits, the
    /// first highest; a shorter id (or one with a character that is not a
    /// hex digit) is read up to there and padded with zeros, as the daemon
    /// reads the ids it is given.
    pub fn number(&self) -> u64 {
        let mut number = 0u64;
        let mut digits = 0;
        for digit in self.as_str().chars().take(16).map_while(|c| c.to_digit(16)) {
            number = number << 4 | u64::from(digit);
            digits += 1;
        }
        number.checked_shl(4 * (16 - digits)).unwrap_or(0)
    }
}

/// `Deref`, `Display`, `Debug`, comparisons and conversions that make a
/// text type read like `&str`.
macro_rules! reads_as_str {
    ($type:ty, $from:expr) => {
        impl Deref for $type {
            type Target = str;

            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl PartialEq<str> for $type {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $type {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<$type> for str {
            fn eq(&self, other: &$type) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$type> for &str {
            fn eq(&self, other: &$type) -> bool {
                *self == other.as_str()
            }
        }

        impl From<&str> for $type {
            fn from(text: &str) -> Self {
                $from(Arc::from(text))
            }
        }

        impl From<String> for $type {
            fn from(text: String) -> Self {
                $from(Arc::from(text))
            }
        }

        impl From<$type> for String {
            fn from(text: $type) -> String {
                text.as_str().to_string()
            }
        }
    };
}

reads_as_str!(SharedStr, SharedStr);
reads_as_str!(ContainerId, |text| ContainerId(IdText::Given(text)));

impl PartialEq for ContainerId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ContainerId {}

impl std::hash::Hash for ContainerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
