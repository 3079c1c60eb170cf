//! Demand beyond saturation: the userspace half of `ebpf/demand.h`.
//!
//! For request/response protocols over TCP the kernel measures, per tracked
//! container and without parsing the protocol (see `docs/demand.md`):
//! - [`QUEUE_METRIC`]: connections waiting in the accept queues (and SYN
//!   backlogs) of the container's listening sockets;
//! - [`INFLIGHT_METRIC`]: requests received and not yet answered;
//! - [`REQUEST_RATE_METRIC`]: requests that arrived per second since the
//!   previous sample;
//! - [`RESPONSE_P50_METRIC`], [`RESPONSE_P95_METRIC`],
//!   [`RESPONSE_P99_METRIC`]: percentiles of the response time (arrival of
//!   a request's first segment in the kernel to the replica's first send
//!   after it) of the requests answered since the previous sample, in
//!   seconds; no sample when none was answered.
//!
//! Queue and in-flight crossings of their upper thresholds are pushed at
//! once (in-flight as it changes, queue at the window close), the p95 one at
//! the window close; samples at most every sample interval.
//!
//! Programs: `tp_btf/tcp_probe` (a segment received), `tp_btf/tcp_sendmsg_locked`
//! (the replica sends), the connection state changes the probe already
//! follows, and an `iter/tcp` program run once per newly tracked container
//! to find the listeners it had before. fentry/fexit programs do not load
//! on this project's kernels (EPERM), so only tracepoints are used.

use aya::maps::{Array, MapData};
use aya::programs::{BtfTracePoint, Iter};
use aya::{Btf, Ebpf, Pod};

use crate::model::{Crossing, Direction, EventKind, Metric, Unit};

use super::ProbeEvent;
use super::ebpf::{LoadError, RawEvent, abi};

/// Connections in the container's listeners' accept queues and SYN backlogs.
pub const QUEUE_METRIC: &str = "queue";
/// Requests received and not yet answered.
pub const INFLIGHT_METRIC: &str = "inflight";
/// Requests that arrived per second since the previous sample.
pub const REQUEST_RATE_METRIC: &str = "request-rate";
/// Median response time, seconds.
pub const RESPONSE_P50_METRIC: &str = "response-time-p50";
/// 95th percentile of the response time, seconds.
pub const RESPONSE_P95_METRIC: &str = "response-time-p95";
/// 99th percentile of the response time, seconds.
pub const RESPONSE_P99_METRIC: &str = "response-time-p99";

/// `struct demand_cfg` of `ebpf/probe.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemandCfg {
    /// In-flight requests upper threshold.
    pub inflight_upper: u64,
    /// Queued connections upper threshold.
    pub queue_upper: u64,
    /// Response time p95 upper threshold, ns.
    pub p95_upper_ns: u64,
    /// Hysteresis of the count thresholds.
    pub hysteresis: u64,
    /// Least ns between two crossings of one threshold.
    pub gap_ns: u64,
    /// `PROBE_DEMAND_HAS_*`.
    pub flags: u32,
    /// Padding, always 0.
    pub pad: u32,
}

/// The kernel's per-container demand accounting, opaque here.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DemandBlob([u8; abi::PROBE_DEMAND_STATE_SIZE as usize]);

// SAFETY: plain `#[repr(C)]` integers without padding holes; any bit
// pattern is valid.
unsafe impl Pod for DemandCfg {}
// SAFETY: a byte array.
unsafe impl Pod for DemandBlob {}

const _: () = {
    assert!(std::mem::size_of::<DemandCfg>() == abi::PROBE_DEMAND_CFG_SIZE as usize);
    // 14 counters, then the histogram's 32-bit buckets.
    assert!(abi::PROBE_DEMAND_STATE_SIZE == 14 * 8 + abi::PROBE_DEMAND_BUCKETS * 4);
};

/// Upper thresholds of the demand metrics, in the daemon's units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DemandThresholds {
    /// In-flight requests.
    pub inflight: Option<f64>,
    /// Queued connections.
    pub queue: Option<f64>,
    /// Response time p95, seconds.
    pub response_p95: Option<f64>,
}

impl DemandCfg {
    /// Kernel units: counts rounded up (`value >= upper`), hysteresis a
    /// tenth of the smaller count threshold (at least one), ns.
    pub fn new(t: &DemandThresholds, gap: std::time::Duration) -> DemandCfg {
        let mut flags = 0u64;
        let mut set = |value: Option<f64>, bit: u64, scale: f64| -> u64 {
            value.map_or(0, |v| {
                flags |= bit;
                (v.max(0.0) * scale).ceil() as u64
            })
        };
        let inflight_upper = set(t.inflight, abi::PROBE_DEMAND_HAS_INFLIGHT_UPPER, 1.0);
        let queue_upper = set(t.queue, abi::PROBE_DEMAND_HAS_QUEUE_UPPER, 1.0);
        let p95_upper_ns = set(t.response_p95, abi::PROBE_DEMAND_HAS_P95_UPPER, 1e9);
        let smallest = [t.inflight, t.queue].into_iter().flatten().fold(f64::INFINITY, f64::min);
        let hysteresis = if smallest.is_finite() { (smallest / 10.0).round().max(1.0) as u64 } else { 0 };
        DemandCfg {
            inflight_upper,
            queue_upper,
            p95_upper_ns,
            hysteresis,
            gap_ns: gap.as_nanos() as u64,
            flags: flags as u32,
            pad: 0,
        }
    }
}

/// The demand programs and maps of a loaded probe.
pub(super) struct Demand {
    /// Slot -> kernel accounting (written zeroed when a slot is taken).
    state: Array<MapData, DemandBlob>,
    /// Slot -> thresholds.
    cfg: Array<MapData, DemandCfg>,
}

impl std::fmt::Debug for Demand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demand").finish_non_exhaustive()
    }
}

/// Name of the listener iterator in `ebpf/demand.h`.
const ITERATOR: &str = "demand_find_listeners";

impl Demand {
    /// Load and attach the tracepoint programs, load the iterator, take the
    /// maps.
    pub(super) fn load(ebpf: &mut Ebpf, btf: &Btf) -> Result<Demand, LoadError> {
        for (program, tracepoint) in [("on_tcp_probe", "tcp_probe"), ("on_tcp_sendmsg", "tcp_sendmsg_locked")] {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(LoadError::Program { program, source: aya::programs::ProgramError::NotLoaded })?
                .try_into()
                .map_err(|source| LoadError::Program { program, source })?;
            prog.load(tracepoint, btf).map_err(|source| LoadError::Program { program, source })?;
            prog.attach().map_err(|source| LoadError::Program { program, source })?;
        }
        let program = ITERATOR;
        let iter: &mut Iter = ebpf
            .program_mut(program)
            .ok_or(LoadError::Program { program, source: aya::programs::ProgramError::NotLoaded })?
            .try_into()
            .map_err(|source| LoadError::Program { program, source })?;
        iter.load("tcp", btf).map_err(|source| LoadError::Program { program, source })?;
        let state = take(ebpf, "demand")?;
        let cfg = take(ebpf, "demand_cfg")?;
        Ok(Demand { state, cfg })
    }

    /// A slot is taken: zeroed accounting and its thresholds, before the
    /// slot appears in `slots`.
    pub(super) fn add_slot(&mut self, slot: u32, cfg: DemandCfg) -> anyhow::Result<()> {
        use anyhow::Context;
        self.state
            .set(slot, DemandBlob([0; abi::PROBE_DEMAND_STATE_SIZE as usize]), 0)
            .context("writing the eBPF demand map")?;
        self.set_cfg(slot, cfg)
    }

    /// New thresholds for a tracked slot.
    pub(super) fn set_cfg(&mut self, slot: u32, cfg: DemandCfg) -> anyhow::Result<()> {
        use anyhow::Context;
        self.cfg.set(slot, cfg, 0).context("writing the eBPF demand_cfg map")
    }

    /// Run the listener iterator once: every TCP socket of the host is
    /// visited and the listening ones of tracked containers are noted (those
    /// already noted keep their state). Call after the slot is in `slots`.
    pub(super) fn find_listeners(ebpf: &mut Ebpf) -> anyhow::Result<()> {
        use anyhow::Context;
        use std::io::Read;
        let iter: &mut Iter = ebpf.program_mut(ITERATOR).context("the listener iterator is missing")?.try_into()?;
        let link = iter.attach().context("attaching the listener iterator")?;
        let link = iter.take_link(link).context("taking the listener iterator's link")?;
        let mut file = link.into_file().context("creating the listener iterator")?;
        let mut out = Vec::new();
        file.read_to_end(&mut out).context("running the listener iterator")?;
        Ok(())
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// Whether a kernel metric id is one of the demand metrics.
pub fn is_demand(metric: u32) -> bool {
    (abi::PROBE_METRIC_QUEUE..=abi::PROBE_METRIC_RESPONSE_P99).contains(&u64::from(metric))
}

/// Seconds: the unit of the response time percentiles.
pub fn seconds_unit() -> Unit {
    Unit::Other("seconds".into())
}

/// Per second: the unit of the request rate.
pub fn per_second_unit() -> Unit {
    Unit::Other("per-second".into())
}

/// A demand record into the daemon's event; `None` for any other metric
/// or an unknown kind.
pub fn decode(raw: &RawEvent, container_id: String) -> Option<ProbeEvent> {
    let (name, scale, unit) = match u64::from(raw.metric) {
        abi::PROBE_METRIC_QUEUE => (QUEUE_METRIC, 1.0, Unit::Count),
        abi::PROBE_METRIC_INFLIGHT => (INFLIGHT_METRIC, 1.0, Unit::Count),
        abi::PROBE_METRIC_REQUEST_RATE => (REQUEST_RATE_METRIC, 1e3, per_second_unit()),
        abi::PROBE_METRIC_RESPONSE_P50 => (RESPONSE_P50_METRIC, 1e9, seconds_unit()),
        abi::PROBE_METRIC_RESPONSE_P95 => (RESPONSE_P95_METRIC, 1e9, seconds_unit()),
        abi::PROBE_METRIC_RESPONSE_P99 => (RESPONSE_P99_METRIC, 1e9, seconds_unit()),
        _ => return None,
    };
    let threshold = raw.threshold as f64 / scale;
    let kind = match u64::from(raw.kind) {
        abi::PROBE_KIND_SAMPLE => EventKind::Sample,
        abi::PROBE_KIND_UP => EventKind::Crossing(Crossing { threshold, direction: Direction::Up }),
        abi::PROBE_KIND_DOWN => EventKind::Crossing(Crossing { threshold, direction: Direction::Down }),
        _ => return None,
    };
    Some(ProbeEvent {
        container_id,
        metric: Metric::Other(name.into()),
        value: raw.value as f64 / scale,
        unit,
        kind,
        timestamp_ns: raw.timestamp_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(metric: u64, kind: u64, value: u64, threshold: u64) -> RawEvent {
        RawEvent {
            timestamp_ns: 5,
            cgroup_id: 1,
            value,
            threshold,
            metric: metric as u32,
            kind: kind as u32,
            flags: 0,
            pad: 0,
        }
    }

    #[test]
    fn decodes_each_demand_metric_in_the_daemon_units() {
        let ev = decode(&raw(abi::PROBE_METRIC_RESPONSE_P95, abi::PROBE_KIND_SAMPLE, 2_500_000, 0), "c".into())
            .expect("a demand metric");
        assert_eq!(
            (ev.metric, ev.unit, ev.kind),
            (Metric::Other("response-time-p95".into()), seconds_unit(), EventKind::Sample)
        );
        assert!((ev.value - 0.0025).abs() < 1e-12);
        let ev = decode(&raw(abi::PROBE_METRIC_REQUEST_RATE, abi::PROBE_KIND_SAMPLE, 1_500_500, 0), "c".into())
            .expect("a demand metric");
        assert!((ev.value - 1500.5).abs() < 1e-9);
        let ev = decode(&raw(abi::PROBE_METRIC_INFLIGHT, abi::PROBE_KIND_UP, 12, 10), "c".into()).expect("known");
        assert_eq!(ev.kind, EventKind::Crossing(Crossing { threshold: 10.0, direction: Direction::Up }));
        assert_eq!((ev.metric.name(), ev.value), ("inflight", 12.0));
        assert!(decode(&raw(abi::PROBE_METRIC_CPU, abi::PROBE_KIND_SAMPLE, 1, 0), "c".into()).is_none());
        assert!(is_demand(9) && is_demand(14) && !is_demand(8) && !is_demand(15));
    }

    #[test]
    fn thresholds_become_kernel_units() {
        let t = DemandThresholds { inflight: Some(20.0), queue: Some(4.5), response_p95: Some(0.2) };
        let cfg = DemandCfg::new(&t, std::time::Duration::from_millis(100));
        assert_eq!((cfg.inflight_upper, cfg.queue_upper, cfg.p95_upper_ns), (20, 5, 200_000_000));
        assert_eq!((cfg.hysteresis, cfg.gap_ns), (1, 100_000_000));
        assert_eq!(
            u64::from(cfg.flags),
            abi::PROBE_DEMAND_HAS_INFLIGHT_UPPER | abi::PROBE_DEMAND_HAS_QUEUE_UPPER | abi::PROBE_DEMAND_HAS_P95_UPPER
        );
        assert_eq!(DemandCfg::new(&DemandThresholds::default(), std::time::Duration::ZERO).flags, 0);
    }
}
