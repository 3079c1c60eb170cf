//! The positional lines of a trace (see the module doc of [`super`]):
//! what [`super::read`] parses and [`super::Recorder`] writes.

use serde::{Deserialize, Serialize};

use super::Header;
use crate::model::{Decision, Metric, Stats, Unit};

/// The metric of a name in a trace, as the probes name it.
pub(super) fn metric_named(name: String) -> Metric {
    Metric::named(&name)
}

/// A unit as one letter (`f`, `c`, `b`, `n`, `r`, `s`), or `{"o": NAME}`.
#[derive(Serialize, Deserialize)]
pub(super) enum U {
    #[serde(rename = "f")]
    FractionOfLimit,
    #[serde(rename = "c")]
    Cores,
    #[serde(rename = "b")]
    Bytes,
    #[serde(rename = "n")]
    Count,
    #[serde(rename = "r")]
    PerSecond,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "o")]
    Other(String),
}

impl From<&Unit> for U {
    fn from(u: &Unit) -> U {
        match u {
            Unit::FractionOfLimit => U::FractionOfLimit,
            Unit::Cores => U::Cores,
            Unit::Bytes => U::Bytes,
            Unit::Count => U::Count,
            Unit::PerSecond => U::PerSecond,
            Unit::Seconds => U::Seconds,
            Unit::Other(name) => U::Other(name.clone()),
        }
    }
}

impl From<U> for Unit {
    fn from(u: U) -> Unit {
        match u {
            U::FractionOfLimit => Unit::FractionOfLimit,
            U::Cores => Unit::Cores,
            U::Bytes => Unit::Bytes,
            U::Count => Unit::Count,
            U::PerSecond => Unit::PerSecond,
            U::Seconds => Unit::Seconds,
            U::Other(name) => Unit::Other(name),
        }
    }
}

/// `[mean, min, max, sum]`.
pub(super) type S = [f64; 4];

pub(super) fn s(stats: &Stats) -> S {
    [stats.mean, stats.min, stats.max, stats.sum]
}

pub(super) fn stats([mean, min, max, sum]: S) -> Stats {
    Stats { mean, min, max, sum }
}

/// One aggregate, positional.
#[derive(Serialize, Deserialize)]
pub(super) struct A(
    pub(super) String,
    pub(super) U,
    pub(super) u32,
    pub(super) u32,
    pub(super) S,
    pub(super) Option<S>,
    pub(super) u64,
);

/// One record line, positional (see the module doc).
#[derive(Serialize, Deserialize)]
pub(super) struct R(
    pub(super) u32,
    pub(super) u32,
    pub(super) i64,
    pub(super) u64,
    pub(super) i64,
    pub(super) String,
    pub(super) f64,
    pub(super) U,
    pub(super) Option<(f64, char)>,
    pub(super) u32,
    pub(super) u32,
    pub(super) u32,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Vec<A>,
    pub(super) Option<Decision>,
);

/// `at` relative to `now`, signed.
pub(super) fn rel(at: Option<u64>, now: u64) -> Option<i64> {
    at.map(|at| i64::try_from(i128::from(at) - i128::from(now)).unwrap_or(0))
}

pub(super) fn abs(delta: Option<i64>, now: u64) -> Option<u64> {
    delta.map(|d| now.saturating_add_signed(d))
}
/// Non-record lines.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Line {
    Header(Header),
    Service(u32, String, String, String, Vec<(String, String)>),
    Container(u32, String),
}
