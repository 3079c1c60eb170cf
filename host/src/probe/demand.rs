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
//! Their rows are in the metrics table ([`crate::model::METRICS`]), which
//! decodes them and parses their threshold labels
//! (`autoscale.inflight.upper=20`, `autoscale.queue.upper=5`,
//! `autoscale.response-time-p95.upper=200ms`); the kernel reads the bands
//! like any other metric's. In-flight crossings are pushed as it changes,
//! queue and response-time ones at the window close; samples at most every
//! sample interval.
//!
//! Programs: `tp_btf/tcp_probe` (a segment received), `tp_btf/tcp_sendmsg_locked`
//! (the replica sends), the connection state changes the probe already
//! follows, and an `iter/tcp` program run once per newly tracked container
//! to find the listeners it had before. fentry/fexit programs do not load
//! on this project's kernels (EPERM), so only tracepoints are used.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{BtfTracePoint, Iter};
use aya::{Btf, Ebpf, Pod};

use super::abi::{PROBE_DEMAND_BUCKETS, PROBE_DEMAND_STATE_SIZE};
use super::error::LoadError;

/// The kernel's per-container demand accounting, opaque here.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DemandBlob([u8; PROBE_DEMAND_STATE_SIZE as usize]);

// SAFETY: a byte array.
unsafe impl Pod for DemandBlob {}

// 6 counters, then the histogram's 32-bit buckets (`struct demand_state`).
const _: () = assert!(PROBE_DEMAND_STATE_SIZE == 6 * 8 + PROBE_DEMAND_BUCKETS * 4);

/// One container's requests opened and closed on one CPU (`struct
/// demand_cpu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct DemandCpu {
    opened: u64,
    closed: u64,
}

// SAFETY: two u64, no padding.
unsafe impl Pod for DemandCpu {}

/// The demand programs and their state map, in a loaded probe.
pub(super) struct Demand {
    /// Slot -> kernel accounting (written zeroed when a slot is taken).
    state: Array<MapData, DemandBlob>,
    /// Slot -> per-CPU request counts (zeroed with the slot).
    per_cpu: PerCpuArray<MapData, DemandCpu>,
}

impl std::fmt::Debug for Demand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demand").finish_non_exhaustive()
    }
}

/// Name of the listener iterator in `ebpf/demand.h`.
const ITERATOR: &str = "demand_find_listeners";

impl Demand {
    /// Load and attach the tracepoint programs (unless `attach` is false:
    /// the probe without them, for benchmarks), load the iterator, take the
    /// state maps.
    pub(super) fn load(ebpf: &mut Ebpf, btf: &Btf, attach: bool) -> Result<Demand, LoadError> {
        let programs: &[_] =
            if attach { &[("on_tcp_probe", "tcp_probe"), ("on_tcp_sendmsg", "tcp_sendmsg_locked")] } else { &[] };
        for &(program, tracepoint) in programs {
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
        let name = "demand";
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let state = Array::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        let name = "demand_cpu";
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let per_cpu = PerCpuArray::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        Ok(Demand { state, per_cpu })
    }

    /// A slot is taken: zeroed accounting, before the slot appears in
    /// `slots`.
    pub(super) fn add_slot(&mut self, slot: u32) -> anyhow::Result<()> {
        use anyhow::Context;
        self.state
            .set(slot, DemandBlob([0; PROBE_DEMAND_STATE_SIZE as usize]), 0)
            .context("writing the eBPF demand map")?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("counting the possible CPUs")?;
        let zeros = PerCpuValues::try_from(vec![DemandCpu::default(); cpus]).context("zeroed per-CPU demand counts")?;
        self.per_cpu.set(slot, zeros, 0).context("writing the eBPF demand_cpu map")
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
