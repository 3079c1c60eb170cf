//! The ABI shared with the kernel programs (`ebpf/probe.h`): the numbers
//! `build.rs` copies from the header, the `#[repr(C)]` mirrors of its
//! structs with their layout checked at compile time, the per-container
//! configuration built from [`Thresholds`] through the metrics table, and
//! the decoder of ring-buffer records into [`ProbeEvent`]s.
//!
//! Both [`super::ebpf`] (the loader and reader) and [`super::park`] (the tc
//! classifier) use it; it imports neither.

use aya::Pod;

use crate::model::metrics::by_kernel_id;
use crate::model::{Crossing, Direction, EventKind, METRICS, Metric, Thresholds};

use super::event::{ProbeEvent, Reading, Signal};

include!(concat!(env!("OUT_DIR"), "/probe_abi.rs"));

/// `PROBE_HAS_UPPER(m)` of `ebpf/probe.h`.
pub const fn has_upper(metric: usize) -> u32 {
    1 << (2 * metric)
}

/// `PROBE_HAS_LOWER(m)` of `ebpf/probe.h`.
pub const fn has_lower(metric: usize) -> u32 {
    1 << (2 * metric + 1)
}

/// One ring-buffer record: `struct probe_event` of `ebpf/probe.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()` when measured (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// v2 cgroup id of the container.
    pub cgroup_id: u64,
    /// Value in the metric's kernel unit (CPU in millionths).
    pub value: u64,
    /// Crossed threshold, same unit; 0 for samples.
    pub threshold: u64,
    /// `PROBE_METRIC_*` or `PROBE_SIGNAL_*`.
    pub metric: u32,
    /// `PROBE_KIND_*`.
    pub kind: u32,
    /// `PROBE_EVENT_*` flags.
    pub flags: u32,
    /// Padding to 8 bytes, always 0.
    pub pad: u32,
}

/// `struct probe_band` of `ebpf/probe.h`: one metric's thresholds in
/// kernel units.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Band {
    /// Upper threshold.
    pub upper: u64,
    /// Lower threshold.
    pub lower: u64,
}

/// `struct tracked_cfg` of `ebpf/probe.h`: one tracked container's
/// thresholds and bounds in kernel units.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackedCfg {
    /// One band per metric, index `PROBE_METRIC_*` (the table's kernel id).
    pub bands: [Band; PROBE_MAX_METRICS as usize],
    /// CPU limit in millionths of a core; 0 means none.
    pub cpu_limit_ppm: u64,
    /// On-CPU nanoseconds within one window that prove an upward CPU
    /// crossing before the window closes; 0: none.
    pub cpu_upper_ns: u64,
    /// Hysteresis of the connection thresholds, connections.
    pub conn_hysteresis: u64,
    /// Least nanoseconds between two connection crossing events.
    pub conn_gap_ns: u64,
    /// The container's v2 cgroup id.
    pub cgroup_id: u64,
    /// [`has_upper`] and [`has_lower`] bits: which thresholds are set.
    pub flags: u32,
    /// Most crossing events per window; 0: no bound.
    pub budget: u32,
}

/// The kernel's per-container accounting, opaque here; written zeroed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct StateBlob(pub [u8; PROBE_STATE_SIZE as usize]);

/// `struct probe_control` of `ebpf/probe.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Control {
    /// Bumped after every change of the `slots` map: per-CPU caches of
    /// cgroup id -> slot are valid for one generation.
    pub generation: u64,
}

// SAFETY: plain `#[repr(C)]` data without padding holes or pointers; any
// bit pattern is valid.
unsafe impl Pod for TrackedCfg {}
// SAFETY: a byte array.
unsafe impl Pod for StateBlob {}
// SAFETY: one integer.
unsafe impl Pod for Control {}

// The layout check: C asserts the same numbers with _Static_assert in
// state.h, so a change on one side only fails the build.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RawEvent>() == PROBE_EVENT_SIZE as usize);
    assert!(offset_of!(RawEvent, timestamp_ns) == PROBE_EVENT_OFF_TIMESTAMP as usize);
    assert!(offset_of!(RawEvent, cgroup_id) == PROBE_EVENT_OFF_CGROUP as usize);
    assert!(offset_of!(RawEvent, value) == PROBE_EVENT_OFF_VALUE as usize);
    assert!(offset_of!(RawEvent, threshold) == PROBE_EVENT_OFF_THRESHOLD as usize);
    assert!(offset_of!(RawEvent, metric) == PROBE_EVENT_OFF_METRIC as usize);
    assert!(offset_of!(RawEvent, kind) == PROBE_EVENT_OFF_KIND as usize);
    assert!(offset_of!(RawEvent, flags) == PROBE_EVENT_OFF_FLAGS as usize);
    assert!(size_of::<Band>() == PROBE_BAND_SIZE as usize);
    assert!(size_of::<TrackedCfg>() == PROBE_CFG_SIZE as usize);
    assert!(offset_of!(TrackedCfg, cpu_limit_ppm) == PROBE_CFG_OFF_CPU_LIMIT as usize);
    assert!(offset_of!(TrackedCfg, cpu_upper_ns) == PROBE_CFG_OFF_CPU_UPPER_NS as usize);
    assert!(offset_of!(TrackedCfg, conn_hysteresis) == PROBE_CFG_OFF_CONN_HYSTERESIS as usize);
    assert!(offset_of!(TrackedCfg, conn_gap_ns) == PROBE_CFG_OFF_CONN_GAP as usize);
    assert!(offset_of!(TrackedCfg, cgroup_id) == PROBE_CFG_OFF_CGROUP as usize);
    assert!(offset_of!(TrackedCfg, flags) == PROBE_CFG_OFF_FLAGS as usize);
    assert!(offset_of!(TrackedCfg, budget) == PROBE_CFG_OFF_BUDGET as usize);
    assert!(size_of::<Control>() == PROBE_CONTROL_SIZE as usize);
    // Every metric of the table has a band, and no signal is a metric.
    assert!(crate::model::metrics::MAX_METRICS == PROBE_MAX_METRICS as usize);
    assert!(PROBE_SIGNAL_BASE >= PROBE_MAX_METRICS);
};

/// Millionths: the kernel's fixed-point unit for CPU values.
const PPM: f64 = 1e6;

impl TrackedCfg {
    /// Thresholds in kernel units, every metric of the table by its
    /// encoding. CPU thresholds are in the unit the events use: a fraction
    /// of `cpu_limit_cores` when set, else cores. `window` gives the on-CPU
    /// time that proves an early upward CPU crossing.
    pub fn new(
        t: &Thresholds,
        cpu_limit_cores: Option<f64>,
        window: std::time::Duration,
        cgroup_id: u64,
    ) -> TrackedCfg {
        let mut cfg = TrackedCfg { cgroup_id, budget: t.bounds.events_per_window, ..TrackedCfg::default() };
        for def in METRICS {
            let (band, i) = (t.band_of(def), def.index());
            let Some(slot) = cfg.bands.get_mut(i) else { continue };
            if let Some(upper) = band.upper {
                slot.upper = def.encoding.encode(upper);
                cfg.flags |= has_upper(i);
            }
            if let Some(lower) = band.lower {
                slot.lower = def.encoding.encode(lower);
                cfg.flags |= has_lower(i);
            }
        }
        // CPU's own fields: upper (fraction of the limit, or cores) x limit
        // x window, rounded up: at least that much CPU within one window
        // proves the crossing.
        let cores = cpu_limit_cores.unwrap_or(1.0);
        cfg.cpu_upper_ns =
            t.band(&Metric::CPU).upper.map_or(0, |u| (u.max(0.0) * cores * window.as_nanos() as f64).ceil() as u64);
        cfg.cpu_limit_ppm = cpu_limit_cores.map_or(0, |c| (c * PPM).round().max(1.0) as u64);
        // Connections' own fields: hysteresis and the least gap.
        cfg.conn_hysteresis = t.bounds.connection_hysteresis_for(&t.band(&Metric::CONNECTIONS)).max(0.0).round() as u64;
        cfg.conn_gap_ns = t.bounds.connection_min_gap.as_nanos() as u64;
        cfg
    }
}

impl RawEvent {
    /// Copy a record out of the ring buffer; `None` if it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<RawEvent> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the length is checked; RawEvent is plain integers, valid
        // for any bit pattern; read_unaligned makes no alignment assumption.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) })
    }
}

/// Turn a kernel record into the daemon's event: a reading of a metric of
/// the table, or a signal. `container_of` names the container of a cgroup
/// id (parked-port signals name a port and do not ask). `None` for a record
/// of an untracked cgroup, or of an unknown metric, signal or kind (a newer
/// kernel object than this decoder).
pub fn decode(raw: &RawEvent, container_of: impl FnOnce(u64) -> Option<String>) -> Option<ProbeEvent> {
    let timestamp_ns = raw.timestamp_ns;
    let id = u64::from(raw.metric);
    if id >= PROBE_SIGNAL_BASE {
        let port = || u16::try_from(raw.value).ok();
        let signal = match id {
            PROBE_SIGNAL_PORT_SYN => Signal::PortSyn { port: port()?, timestamp_ns },
            PROBE_SIGNAL_PORT_LISTEN => Signal::PortListen { port: port()?, timestamp_ns },
            PROBE_SIGNAL_ACCEPTED => {
                Signal::Accepted { container_id: container_of(raw.cgroup_id)?, count: raw.value, timestamp_ns }
            }
            PROBE_SIGNAL_MEMORY_LIMIT => {
                Signal::MemoryLimit { container_id: container_of(raw.cgroup_id)?, bytes: raw.value, timestamp_ns }
            }
            PROBE_SIGNAL_WAKE => Signal::Wake { container_id: container_of(raw.cgroup_id)?, timestamp_ns },
            _ => return None,
        };
        return Some(ProbeEvent::Signal(signal));
    }
    let def = by_kernel_id(raw.metric)?;
    let of_limit = u64::from(raw.flags) & PROBE_EVENT_CPU_OF_LIMIT != 0;
    let threshold = def.encoding.decode(raw.threshold);
    let kind = match u64::from(raw.kind) {
        PROBE_KIND_SAMPLE => EventKind::Sample,
        PROBE_KIND_UP => EventKind::Crossing(Crossing { threshold, direction: Direction::Up }),
        PROBE_KIND_DOWN => EventKind::Crossing(Crossing { threshold, direction: Direction::Down }),
        _ => return None,
    };
    Some(ProbeEvent::Reading(Reading {
        container_id: container_of(raw.cgroup_id)?,
        metric: def.metric(),
        value: def.encoding.decode(raw.value),
        unit: def.unit.unit(of_limit),
        kind,
        timestamp_ns,
    }))
}

/// The effective capability mask of this process (`CapEff`).
pub(super) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Band as ModelBand, Unit};

    #[test]
    fn thresholds_become_kernel_units() {
        let t = Thresholds::default()
            .with(&Metric::CPU, ModelBand { upper: Some(0.8), lower: Some(0.2) })
            .with(&Metric::MEMORY, ModelBand { upper: Some(1e6), lower: None })
            .with(&Metric::CONNECTIONS, ModelBand { upper: Some(10.5), lower: Some(2.0) });
        let cfg = TrackedCfg::new(&t, Some(0.5), std::time::Duration::from_millis(100), 42);
        let band = |id: u64| cfg.bands[id as usize];
        assert_eq!((band(PROBE_METRIC_CPU).upper, band(PROBE_METRIC_CPU).lower), (800_000, 200_000));
        assert_eq!(cfg.cpu_limit_ppm, 500_000);
        // 0.8 of half a core over 100 ms: 40 ms of CPU prove the crossing.
        assert_eq!(cfg.cpu_upper_ns, 40_000_000);
        assert_eq!(band(PROBE_METRIC_MEMORY).upper, 1_000_000);
        assert_eq!((band(PROBE_METRIC_CONNECTIONS).upper, band(PROBE_METRIC_CONNECTIONS).lower), (11, 2));
        // A tenth of the upper connections threshold, at least one.
        assert_eq!((cfg.conn_hysteresis, cfg.conn_gap_ns, cfg.budget, cfg.cgroup_id), (1, 100_000_000, 16, 42));
        let unlimited = TrackedCfg::new(&Thresholds::default(), None, std::time::Duration::from_millis(100), 1);
        assert_eq!((unlimited.cpu_upper_ns, unlimited.cpu_limit_ppm, unlimited.flags), (0, 0, 0));
        assert_eq!(cfg.flags & has_lower(PROBE_METRIC_MEMORY as usize), 0);
        assert_ne!(cfg.flags & has_upper(PROBE_METRIC_MEMORY as usize), 0);
        assert_ne!(cfg.flags & has_lower(PROBE_METRIC_CONNECTIONS as usize), 0);
    }

    #[test]
    fn every_table_metric_gets_its_band_and_has_bits() {
        for def in METRICS {
            let t = Thresholds::default().with(&def.metric(), ModelBand { upper: Some(3.0), lower: Some(1.0) });
            let cfg = TrackedCfg::new(&t, None, std::time::Duration::from_millis(100), 1);
            let i = def.index();
            assert_eq!(cfg.flags & !(has_upper(i) | has_lower(i)), 0, "{}: only its own bits", def.name);
            assert_eq!(cfg.flags, has_upper(i) | has_lower(i), "{}", def.name);
            assert_eq!(cfg.bands[i], Band { upper: def.encoding.encode(3.0), lower: def.encoding.encode(1.0) });
        }
    }

    fn raw(metric: u64, kind: u64, value: u64) -> RawEvent {
        RawEvent {
            timestamp_ns: 7,
            cgroup_id: 1,
            value,
            threshold: 0,
            metric: metric as u32,
            kind: kind as u32,
            flags: 0,
            pad: 0,
        }
    }

    fn container(id: u64) -> Option<String> {
        (id == 1).then(|| "c".to_string())
    }

    #[test]
    fn decodes_crossings_and_samples() {
        let mut raw = RawEvent {
            timestamp_ns: 7,
            cgroup_id: 1,
            value: 930_000,
            threshold: 800_000,
            metric: PROBE_METRIC_CPU as u32,
            kind: PROBE_KIND_UP as u32,
            flags: PROBE_EVENT_CPU_OF_LIMIT as u32,
            pad: 0,
        };
        // SAFETY: RawEvent is 48 bytes of plain integers.
        let bytes: [u8; 48] = unsafe { std::mem::transmute(raw) };
        let Some(ProbeEvent::Reading(ev)) = decode(&RawEvent::from_bytes(&bytes).expect("48 bytes"), container) else {
            panic!("a reading")
        };
        assert_eq!((ev.metric, ev.unit.clone()), (Metric::CPU, Unit::FractionOfLimit));
        assert!((ev.value - 0.93).abs() < 1e-9);
        assert_eq!(ev.kind, EventKind::Crossing(Crossing { threshold: 0.8, direction: Direction::Up }));
        raw.metric = PROBE_METRIC_MEMORY as u32;
        raw.kind = PROBE_KIND_SAMPLE as u32;
        let Some(ProbeEvent::Reading(ev)) = decode(&raw, container) else { panic!("a reading") };
        assert_eq!((ev.metric, ev.value, ev.kind), (Metric::MEMORY, 930_000.0, EventKind::Sample));
        raw.metric = 99;
        assert!(decode(&raw, container).is_none());
        raw.metric = (PROBE_MAX_METRICS - 1) as u32;
        assert!(decode(&raw, container).is_none(), "an id without a row is refused");
        raw.metric = PROBE_METRIC_CPU as u32;
        raw.cgroup_id = 2;
        assert!(decode(&raw, container).is_none(), "an untracked cgroup");
        assert!(RawEvent::from_bytes(&bytes[..40]).is_none());
    }

    #[test]
    fn control_signals_decode_into_signals_never_readings() {
        let signal = |raw: RawEvent| match decode(&raw, container) {
            Some(ProbeEvent::Signal(s)) => s,
            other => panic!("not a signal: {other:?}"),
        };
        assert_eq!(
            signal(raw(PROBE_SIGNAL_ACCEPTED, PROBE_KIND_SAMPLE, 3)),
            Signal::Accepted { container_id: "c".into(), count: 3, timestamp_ns: 7 }
        );
        assert_eq!(
            signal(raw(PROBE_SIGNAL_MEMORY_LIMIT, PROBE_KIND_SAMPLE, 1 << 30)),
            Signal::MemoryLimit { container_id: "c".into(), bytes: 1 << 30, timestamp_ns: 7 }
        );
        assert_eq!(
            signal(raw(PROBE_SIGNAL_WAKE, PROBE_KIND_UP, 1)),
            Signal::Wake { container_id: "c".into(), timestamp_ns: 7 }
        );
        // Parked ports name a port, and no container is looked up.
        let mut syn = raw(PROBE_SIGNAL_PORT_SYN, PROBE_KIND_UP, 8080);
        syn.cgroup_id = 0;
        assert_eq!(signal(syn), Signal::PortSyn { port: 8080, timestamp_ns: 7 });
        syn.metric = PROBE_SIGNAL_PORT_LISTEN as u32;
        assert_eq!(signal(syn), Signal::PortListen { port: 8080, timestamp_ns: 7 });
        syn.value = 70_000;
        assert!(decode(&syn, container).is_none(), "not a port");
        let mut wake = raw(PROBE_SIGNAL_WAKE, PROBE_KIND_UP, 1);
        wake.cgroup_id = 2;
        assert!(decode(&wake, container).is_none(), "a signal of an untracked cgroup");
    }
}
