//! The push probe: the kernel programs of `ebpf/probe.bpf.c` account tracked
//! containers and push events through a ring buffer, read here through
//! `AsyncFd` and decoded into [`super::ProbeEvent`]s.
//!
//! # Rights
//!
//! Loading needs root, or these capabilities (Linux 5.8+):
//! - `CAP_BPF`: create the maps, load the programs, create the ring buffer;
//! - `CAP_PERFMON`: the programs are tracing programs (`tp_btf`) that read
//!   kernel memory (`task_struct`, the memcg page counter, `struct sock`)
//!   and attach to tracepoints; the kernel asks for CAP_PERFMON for both.
//!
//! `CAP_SYS_ADMIN` covers both on any kernel. `CAP_NET_ADMIN` is needed only
//! to park a port (`autoscale.zero=remove`: a tc classifier, loaded and
//! attached at the first park, see [`super::park`]); without it the probe
//! loads and everything else works. BPF memory is charged to the daemon's memory
//! cgroup, so no `RLIMIT_MEMLOCK` change is needed on 5.11+ kernels. The
//! kernel must have BTF (`/sys/kernel/btf/vmlinux`); kprobes are not used.
//! For the cgroupfs fallback to count other users' connections, it needs to
//! read `/proc/<pid>/fd` of the containers' processes (root, or
//! `CAP_SYS_PTRACE`). Without these rights [`EbpfProbe::load`] fails with
//! [`LoadError::MissingRights`] before touching the kernel, and
//! [`super::start`] falls back to the cgroupfs probe with a warning.
//!
//! # What the kernel measures
//! - CPU: on-CPU time per container from `sched_switch`, over a window
//!   (`--window`, default 100 ms) closed by a `bpf_timer` tick, as a
//!   fraction of the container's CPU limit when it has one (read from
//!   cgroupfs when the container is tracked), else in cores. A fraction of
//!   the limit is never above 1, and a window in which CFS throttled the
//!   container reads 1 (see `ebpf/probe.bpf.c`). An upward crossing is
//!   pushed as soon as the container's on-CPU time within the current
//!   window proves it (`upper x limit x window`), checked every
//!   [`ProbeSettings::check_interval`] for the containers on a CPU;
//!   downward crossings and samples wait for the window to close.
//! - Memory: the memcg page counter (`mem_cgroup.memory.usage` and `.max`),
//!   read with CO-RE when one of the container's tasks leaves a CPU (at most
//!   once a millisecond per container) and at each window. Chosen over
//!   memcg events or PSI because memory is charged in the context of the
//!   task that allocates, so reading the counter as that task is switched
//!   out sees every growth within one time slice, costs two memory reads,
//!   and needs no tracefs, kprobe or PSI (this kernel has neither kprobes
//!   nor PSI enabled).
//! - Connections: accepted TCP connections (`SYN_RECV -> ESTABLISHED`) and
//!   those of them still established, from `inet_sock_set_state`,
//!   attributed by the socket's cgroup. Connections accepted before the
//!   container was tracked are not counted. Their crossings have hysteresis
//!   and a least gap between two events ([`crate::model::EventBounds`]).
//! - Wake: while the daemon has a container frozen it arms the container's
//!   `wake` entry; the first connection the kernel establishes on one of the
//!   container's sockets (the handshake completes while the process is
//!   frozen, the connection waits in the accept queue) disarms it and pushes
//!   one [`Signal::Wake`](super::Signal::Wake) at once, outside the event
//!   budget.
//! - Parked ports: see [`super::park`]; their signals carry a port, not a
//!   container ([`Signal::PortSyn`](super::Signal::PortSyn),
//!   [`Signal::PortListen`](super::Signal::PortListen)).
//!
//! Records are decoded by [`super::abi::decode`]: a metric's number is
//! looked up in the metrics table ([`crate::model::METRICS`]), a signal's
//! becomes a typed [`super::Signal`].
//!
//! Every container has a budget of crossing events per window, so that one
//! container cannot fill the ring buffer all share
//! ([`ProbeSettings::ring_buffer_bytes`]).
//!
//! # Cost
//! Most context switches of a host are between tasks of untracked cgroups:
//! for those the `sched_switch` program reads the incoming task's cgroup id
//! with plain BTF pointer loads, finds it in a per-CPU cache of cgroup id ->
//! slot (valid until userspace changes the tracked set) and returns, without
//! a helper call. Tracked containers are kept in slot-indexed arrays, their
//! on-CPU time in per-CPU counters fed from the scheduler's own per-task run
//! time, so a tracked switch reads no clock, takes no lock and touches no
//! cache line another CPU writes.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, RwLock};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;

use crate::model::Thresholds;

use super::abi::{self, Control, RawEvent, StateBlob, TrackedCfg, decode, effective_caps};
use super::demand::Demand;
use super::park::{ParkMode, Parking};
use super::{Backend, ContainerCgroup, ProbeSettings, Shared};

/// The compiled kernel programs, embedded at build time.
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

pub use super::error::LoadError;

/// The loaded programs and their maps. Dropping it detaches the programs.
pub(super) struct EbpfProbe {
    /// Owns the programs and their links; the tc classifier is loaded from
    /// it at the first park.
    ebpf: Ebpf,
    /// Tracked cgroup id -> slot (userspace writes).
    slots: BpfHashMap<MapData, u64, u32>,
    /// Slot -> thresholds and bounds (userspace writes).
    configs: Array<MapData, TrackedCfg>,
    /// Slot -> kernel accounting (written zeroed when a slot is taken).
    state: Array<MapData, StateBlob>,
    /// The generation of `slots`, bumped after each change.
    control: Array<MapData, Control>,
    /// Slot -> `PROBE_WAKE_ARMED` while the container is frozen.
    wake: Array<MapData, u64>,
    /// Parked ports and the tc classifier (`autoscale.zero=remove`).
    parking: Parking,
    /// The demand maps (`ebpf/demand.h`).
    demand: Demand,
    /// Current generation, mirrored from `control`.
    generation: u64,
    /// Free slots, least recently freed first: a container holds one while
    /// tracked, and a freed slot is reused as late as possible, so that a
    /// CPU still running a task of the old container (its cached slot is
    /// checked again only at the next switch) charges nobody else.
    free_slots: std::collections::VecDeque<u32>,
    /// Kernel counters: ring full, crossings held back by the budget.
    drops: Arc<Mutex<Array<MapData, u64>>>,
    /// The tick's own runs and run time (`PROBE_TICK_*`).
    tick_cost: Arc<Mutex<Array<MapData, u64>>>,
    /// The CPU window, for the early crossing's on-CPU time.
    window: std::time::Duration,
    /// The ring buffer, until the reader task takes it.
    ring: Option<RingBuf<MapData>>,
    /// cgroup id -> container id, read by the decoder.
    registry: Arc<RwLock<HashMap<u64, String>>>,
    /// container id -> (cgroup id, slot), to update and untrack.
    by_container: HashMap<String, (u64, u32)>,
    /// The daemon's channel and counters.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EbpfProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfProbe").field("tracked", &self.by_container.len()).finish_non_exhaustive()
    }
}

impl EbpfProbe {
    /// Check rights, load the object, attach both programs.
    pub(super) fn load(settings: &ProbeSettings, shared: Arc<Shared>) -> Result<EbpfProbe, LoadError> {
        let caps = effective_caps();
        if !has_bpf_rights(caps) {
            return Err(LoadError::MissingRights { caps });
        }
        let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
        let window_ns = (settings.window.as_nanos() as u64).max(1_000_000);
        let check_ns = (settings.check_interval.as_nanos() as u64).clamp(100_000, window_ns);
        let sample_ns = settings.sample_interval.as_nanos() as u64;
        let ring_bytes = ring_buffer_size(settings.ring_buffer_bytes).map_err(LoadError::RingBuffer)?;
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let nr_cpus = aya::util::nr_cpus().map(|n| n as u32).unwrap_or(1).max(1);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("window_ns", &window_ns, true)
            .override_global("check_ns", &check_ns, true)
            .map_max_entries("events", ring_bytes)
            .override_global("sample_ns", &sample_ns, true)
            .override_global("page_size", &page_size, true)
            .override_global("nr_cpus", &nr_cpus, true)
            .load(PROBE_OBJECT)
            .map_err(LoadError::Object)?;
        for (program, tracepoint) in
            [("on_sched_switch", "sched_switch"), ("on_inet_sock_set_state", "inet_sock_set_state")]
        {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(LoadError::Program { program, source: aya::programs::ProgramError::NotLoaded })?
                .try_into()
                .map_err(|source| LoadError::Program { program, source })?;
            prog.load(tracepoint, &btf).map_err(|source| LoadError::Program { program, source })?;
            prog.attach().map_err(|source| LoadError::Program { program, source })?;
        }
        let demand = Demand::load(&mut ebpf, &btf, settings.demand)?;
        let slots = take_map(&mut ebpf, "slots")?;
        let configs = take_map(&mut ebpf, "configs")?;
        let state = take_map(&mut ebpf, "state")?;
        let control = take_map(&mut ebpf, "control")?;
        let drops = take_map(&mut ebpf, "drops")?;
        let tick_cost = take_map(&mut ebpf, "tick_cost")?;
        let wake = take_map(&mut ebpf, "wake")?;
        let parking = Parking::new(take_map(&mut ebpf, "parked")?, settings.pin_dir.as_deref());
        let ring = take_map(&mut ebpf, "events")?;
        Ok(EbpfProbe {
            ebpf,
            slots,
            configs,
            state,
            control,
            wake,
            parking,
            demand,
            generation: 0,
            free_slots: (0..abi::PROBE_MAX_TRACKED as u32).collect(),
            drops: Arc::new(Mutex::new(drops)),
            tick_cost: Arc::new(Mutex::new(tick_cost)),
            window: std::time::Duration::from_nanos(window_ns),
            ring: Some(ring),
            registry: Arc::new(RwLock::new(HashMap::new())),
            by_container: HashMap::new(),
            shared,
        })
    }

    /// Reads the kernel's counters of lost and held-back events.
    pub(super) fn drop_reader(&self) -> Box<dyn Fn() -> KernelDrops + Send + Sync> {
        let drops = self.drops.clone();
        Box::new(move || {
            let Ok(map) = drops.lock() else { return KernelDrops::default() };
            let read = |index: u64| map.get(&(index as u32), 0).unwrap_or(0);
            KernelDrops {
                ring_full: read(abi::PROBE_DROP_RING),
                held_back: read(abi::PROBE_DROP_HELD),
                parked_syns: read(abi::PROBE_DROP_PARKED_SYN),
            }
        })
    }

    /// Reads the tick's own run-time counters.
    pub(super) fn tick_reader(&self) -> Box<dyn Fn() -> TickCost + Send + Sync> {
        let cost = self.tick_cost.clone();
        Box::new(move || {
            let Ok(map) = cost.lock() else { return TickCost::default() };
            let read = |index: u64| map.get(&(index as u32), 0).unwrap_or(0);
            TickCost {
                check_runs: read(abi::PROBE_TICK_CHECK_RUNS),
                check_ns: read(abi::PROBE_TICK_CHECK_NS),
                close_runs: read(abi::PROBE_TICK_CLOSE_RUNS),
                close_ns: read(abi::PROBE_TICK_CLOSE_NS),
            }
        })
    }

    /// Start the task that reads the ring buffer and hands events on.
    pub(super) fn spawn_reader(&mut self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use anyhow::Context;
        let ring = self.ring.take().context("the ring buffer reader is already running")?;
        let fd = ring.as_raw_fd();
        // SAFETY: the RingBuf owns its map fd, which stays open and the same
        // for as long as the AsyncFd owns the RingBuf.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .with_context(|| format!("registering ring buffer fd {fd} with tokio"))?;
        let registry = self.registry.clone();
        let shared = self.shared.clone();
        Ok(tokio::spawn(async move {
            loop {
                let mut guard = match ring.readable_mut().await {
                    Ok(guard) => guard,
                    Err(err) => {
                        tracing::error!(error = %err, "eBPF ring buffer reader stopped");
                        return;
                    }
                };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    let Some(raw) = RawEvent::from_bytes(&item[..]) else { continue };
                    // A read lock per event: uncontended, writers only on
                    // track/untrack. A parked port's signal names a port
                    // and asks for no container.
                    let container_of = |cgroup_id| registry.read().ok().and_then(|r| r.get(&cgroup_id).cloned());
                    match decode(&raw, container_of) {
                        Some(event) => shared.emit(event),
                        None => {
                            shared.unattributed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                guard.clear_ready();
            }
        }))
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

impl Backend for EbpfProbe {
    fn add(&mut self, cgroup: ContainerCgroup, thresholds: Thresholds) -> anyhow::Result<()> {
        use anyhow::Context;
        let limit = cgroup.cpu_limit_cores().context("reading the container's CPU limit")?;
        if let Some((old, _)) = self.by_container.get(&cgroup.container_id).copied()
            && old != cgroup.id
        {
            self.remove(&cgroup.container_id);
        }
        let cfg = TrackedCfg::new(&thresholds, limit, self.window, cgroup.id);
        if let Some((_, slot)) = self.by_container.get(&cgroup.container_id).copied() {
            // A threshold update: same slot, the accounting goes on.
            return self.configs.set(slot, cfg, 0).context("writing the eBPF configs map");
        }
        let Some(slot) = self.free_slots.pop_front() else {
            // Refused before anything is written: the tracked containers
            // keep their slots, and nothing of this one reaches the kernel.
            self.shared.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            anyhow::bail!(
                "the probe already tracks {} containers, the most one host's probe holds: this container gets no readings (the others are unaffected; refusals are counted in autoscaler_probe_refused_containers_total)",
                abi::PROBE_MAX_TRACKED
            );
        };
        // Registry first, so the first event finds its container; zeroed
        // state and the config before the slot appears in `slots`, so the
        // kernel never sees a tracked id without them; the generation last,
        // so no CPU keeps a cached "untracked" for this id.
        let result = (|| -> anyhow::Result<()> {
            self.registry
                .write()
                .map_err(|_| anyhow::anyhow!("probe registry lock poisoned"))?
                .insert(cgroup.id, cgroup.container_id.clone());
            self.state
                .set(slot, StateBlob([0; abi::PROBE_STATE_SIZE as usize]), 0)
                .context("writing the eBPF state map")?;
            self.configs.set(slot, cfg, 0).context("writing the eBPF configs map")?;
            self.demand.add_slot(slot)?;
            // A slot is never handed over armed.
            self.wake.set(slot, 0, 0).context("writing the eBPF wake map")?;
            self.slots.insert(cgroup.id, slot, 0).context("writing the eBPF slots map")?;
            self.bump_generation()
        })();
        if let Err(err) = result {
            let _ = self.slots.remove(&cgroup.id);
            if let Ok(mut registry) = self.registry.write() {
                registry.remove(&cgroup.id);
            }
            self.free_slots.push_front(slot);
            return Err(err);
        }
        // Listeners the container opened before it was tracked.
        if let Err(err) = Demand::find_listeners(&mut self.ebpf) {
            tracing::warn!(container = %cgroup.container_id, error = %format!("{err:#}"), "cannot look for the container's listening sockets: its queue counts only those it opens from now on");
        }
        self.by_container.insert(cgroup.container_id, (cgroup.id, slot));
        Ok(())
    }

    fn set_wake(&mut self, container_id: &str, armed: bool) -> anyhow::Result<i64> {
        self.write_wake(container_id, armed)
    }

    fn open_connections(&mut self, container_id: &str) -> anyhow::Result<i64> {
        self.read_open(container_id)
    }

    fn park(&mut self, port: u16, mode: Option<ParkMode>) -> anyhow::Result<()> {
        match mode {
            Some(mode) => self.parking.park(&mut self.ebpf, port, mode),
            None => self.parking.unpark(&mut self.ebpf, port),
        }
    }

    fn parking(&self) -> bool {
        self.parking.active()
    }

    fn maintain(&mut self) {
        self.parking.maintain(&mut self.ebpf);
    }

    fn remove(&mut self, container_id: &str) {
        let Some((id, slot)) = self.by_container.remove(container_id) else { return };
        // Errors here mean "not there": nothing to undo.
        let _ = self.slots.remove(&id);
        if let Err(err) = self.bump_generation() {
            tracing::warn!(error = %format!("{err:#}"), "cannot bump the eBPF slot generation");
        }
        let _ = self.wake.set(slot, 0, 0);
        self.free_slots.push_back(slot);
        if let Ok(mut registry) = self.registry.write() {
            registry.remove(&id);
        }
    }
}

impl EbpfProbe {
    /// Arm or disarm the container's wake event; returns its open
    /// connections as the kernel counts them right after the change.
    fn write_wake(&mut self, container_id: &str, armed: bool) -> anyhow::Result<i64> {
        use anyhow::Context;
        let (_, slot) = self
            .by_container
            .get(container_id)
            .copied()
            .with_context(|| format!("container {container_id} is not tracked by the probe"))?;
        let value = if armed { abi::PROBE_WAKE_ARMED } else { 0 };
        self.wake.set(slot, value, 0).context("writing the eBPF wake map")?;
        self.read_open(container_id)
    }

    /// The container's open connections as the kernel counts them.
    fn read_open(&mut self, container_id: &str) -> anyhow::Result<i64> {
        use anyhow::Context;
        let (_, slot) = self
            .by_container
            .get(container_id)
            .copied()
            .with_context(|| format!("container {container_id} is not tracked by the probe"))?;
        let state = self.state.get(&slot, 0).context("reading the eBPF state map")?;
        let at = abi::PROBE_STATE_OFF_OPEN_CONNS as usize;
        let mut open = [0u8; 8];
        open.copy_from_slice(&state.0[at..at + 8]);
        Ok(i64::from_ne_bytes(open))
    }

    /// Tell every CPU's cache of cgroup id -> slot that `slots` changed.
    fn bump_generation(&mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        self.generation += 1;
        self.control.set(0, Control { generation: self.generation }, 0).context("writing the eBPF control map")
    }
}

/// The kernel's counters of events it lost or held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDrops {
    /// Ring buffer full: the event was lost.
    pub ring_full: u64,
    /// Crossings over budget: held back to the next window (counted once
    /// per attempt).
    pub held_back: u64,
    /// Connection attempts to parked ports dropped without an answer.
    pub parked_syns: u64,
}

/// The tick's own cost, which bpf_stats does not count (a `bpf_timer`
/// callback is not a program run): runs and total run time of the ticks
/// that only checked the CPUs, and of those that also closed every tracked
/// container's window (every `--window`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickCost {
    /// Ticks that checked the CPUs for early crossings only.
    pub check_runs: u64,
    /// Their total run time, ns.
    pub check_ns: u64,
    /// Ticks that closed every tracked container's window.
    pub close_runs: u64,
    /// Their total run time, ns.
    pub close_ns: u64,
}

/// Check a ring-buffer size: a power of two, at least a page, at most 1 GiB.
pub fn ring_buffer_size(bytes: u32) -> Result<u32, String> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
    if !bytes.is_power_of_two() || !(page..=1 << 30).contains(&bytes) {
        return Err(format!(
            "ring buffer size {bytes} bytes: must be a power of two between the page size ({page}) and 1 GiB"
        ));
    }
    Ok(bytes)
}

/// CAP_SYS_ADMIN, or CAP_BPF together with CAP_PERFMON.
fn has_bpf_rights(caps: u64) -> bool {
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    let has = |cap: u64| caps & (1 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_need_sys_admin_or_bpf_and_perfmon() {
        assert!(has_bpf_rights(1 << 21));
        assert!(has_bpf_rights((1 << 38) | (1 << 39)));
        assert!(!has_bpf_rights(1 << 39));
        assert!(!has_bpf_rights(0));
    }

    #[test]
    fn ring_buffer_sizes_are_powers_of_two_of_pages() {
        assert_eq!(ring_buffer_size(256 * 1024), Ok(256 * 1024));
        assert!(ring_buffer_size(100_000).is_err());
        assert!(ring_buffer_size(1024).is_err());
    }
}
