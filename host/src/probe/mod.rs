//! Probes: per-container accounting of the metrics of the table
//! ([`crate::model::METRICS`]), pushed as [`ProbeEvent`]s: readings, and
//! the control signals scale to zero needs. Two implementations share this
//! interface:
//! - `ebpf` (default): kernel programs push through a ring buffer;
//! - `cgroupfs`: reads cgroup files on an interval; the fallback for hosts
//!   without BPF rights and the pull-based baseline benchmarks compare with.
//!
//! Invariant: probes know containers and cgroups, not services or policies.
//! The event loop tells a probe which containers to track and with which
//! thresholds; the probe says nothing about anything else.
//!
//! The daemon calls [`start`] once, then [`ProbeHandle::track`] and
//! [`ProbeHandle::untrack`] as containers come and go; events arrive on the
//! channel it passed. Layout of this module:
//! - [`cgroup`]: cgroup layout detection, container id <-> cgroup id;
//! - [`crossing`]: the threshold crossing rule both probes apply;
//! - [`cgroupfs`]: the pull probe;
//! - [`event`]: what a probe hands the daemon, [`Reading`]s and [`Signal`]s;
//! - [`abi`]: the structs and numbers shared with `ebpf/probe.h`, their
//!   layout check, the kernel configuration built from thresholds, the
//!   record decoder;
//! - [`ebpf`]: the push probe (aya loader, ring buffer reader);
//! - [`error`]: why the eBPF probe could not start;
//! - [`demand`]: queue, in-flight requests, request rate and response time
//!   (eBPF probe only; `ebpf/demand.h`);
//! - [`park`]: parked ports, the tc classifier that holds connection
//!   attempts to a service scaled to zero replicas (eBPF probe only).

pub mod abi;
pub mod cgroup;
pub mod cgroupfs;
pub mod crossing;
pub mod demand;
pub mod ebpf;
pub mod error;
pub mod event;
pub mod park;
pub mod pins;

pub use event::{ProbeEvent, Reading, Signal};
pub use park::{INHERITED_GRACE, ParkMode, listening};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::{Thresholds, Tracked};
use cgroup::{CgroupError, ContainerCgroup, Layout};

/// Which probe to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// eBPF programs pushing through a ring buffer.
    Ebpf,
    /// Reading cgroupfs every `interval`.
    Cgroupfs {
        /// Time between two reads of every tracked container.
        interval: Duration,
    },
}

/// Probe settings; defaults in [`Default`].
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Which probe.
    pub kind: ProbeKind,
    /// CPU utilisation window (default 100 ms).
    pub window: Duration,
    /// Least time between two periodic samples of one container (default 1 s).
    pub sample_interval: Duration,
    /// How often the eBPF probe checks whether a running container's CPU
    /// time in the current window already proves an upward crossing
    /// (default 1 ms; at least 0.1 ms, at most the window).
    pub check_interval: Duration,
    /// Size of the eBPF ring buffer all containers share, bytes: a power of
    /// two, at least a page (default 256 KiB, about 5,000 events).
    pub ring_buffer_bytes: u32,
    /// A directory on bpffs where the tc classifier's links are pinned, so
    /// that a port parked for a service at zero replicas stays held while
    /// no daemon runs (see `park.rs`); `None`, or a parent that is not a
    /// bpffs mount, not to pin.
    pub pin_dir: Option<std::path::PathBuf>,
    /// Attach the demand programs (`ebpf/demand.h`: queue, in-flight,
    /// request rate, response time; default true). False only to measure
    /// the probe without them (the probe benchmark).
    pub demand: bool,
}

/// Default [`ProbeSettings::pin_dir`].
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/swarm-autoscaler";

/// Default [`ProbeSettings::ring_buffer_bytes`].
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 256 * 1024;

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            kind: ProbeKind::Ebpf,
            window: Duration::from_millis(100),
            sample_interval: Duration::from_millis(1000),
            check_interval: Duration::from_millis(1),
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            pin_dir: Some(DEFAULT_PIN_DIR.into()),
            demand: true,
        }
    }
}

/// Parse a ring-buffer size: bytes, or with a `K`/`KiB`/`M`/`MiB` suffix
/// (binary units): `256KiB`, `1M`, `4096`. Must be a power of two.
pub fn parse_ring_buffer_size(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("ring buffer size {text:?}: unknown unit {other:?} (use KiB or MiB)")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("ring buffer size {text:?}: not a number of bytes"))?;
    let bytes =
        u32::try_from(n.saturating_mul(scale)).map_err(|_| format!("ring buffer size {text:?}: above 1 GiB"))?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!("ring buffer size {text:?}: must be a power of two between 4KiB and 1GiB"));
    }
    Ok(bytes)
}

/// Counters of a running probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeStats {
    /// Events handed to the daemon's channel.
    pub events: u64,
    /// Events lost: ring-buffer reserve failures in the kernel plus events
    /// dropped because the daemon's channel was full.
    pub dropped: u64,
    /// Kernel events whose cgroup id matched no tracked container (a
    /// container untracked while its events were in flight). Should stay
    /// near zero: the kernel pushes nothing for untracked cgroups.
    pub unattributed: u64,
    /// Times the kernel held a crossing back to the next window because its
    /// container was over budget (the crossing comes later, not lost).
    pub held_back: u64,
    /// Connection attempts to parked ports the kernel dropped without an
    /// answer (each is retransmitted by its client).
    pub parked_syns: u64,
    /// Containers the probe refused to track because it already tracked
    /// as many as it holds (`PROBE_MAX_TRACKED`, eBPF probe); each refusal
    /// is logged with the container's id.
    pub refused: u64,
}

/// A running probe. Cheap to clone; the probe stops (programs detached,
/// tasks ended) when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ProbeHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    /// What actually runs, after any fallback.
    kind: ProbeKind,
    /// Track and untrack requests, served by the manager task.
    commands: mpsc::UnboundedSender<Command>,
    /// Counters shared with the event producers.
    shared: Arc<Shared>,
    /// Reads the kernel's ring-buffer reserve failure counter (eBPF only).
    kernel_drops: Option<Box<dyn Fn() -> ebpf::KernelDrops + Send + Sync>>,
    /// Reads the tick's own run-time counters (eBPF only).
    tick_cost: Option<Box<dyn Fn() -> ebpf::TickCost + Send + Sync>>,
    /// Tasks to end when the last handle goes away.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for HandleInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandleInner").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ProbeHandle {
    /// Start accounting a container, or update its thresholds. A container
    /// whose cgroup does not exist yet (it is starting) is retried for a few
    /// seconds, then logged and forgotten.
    pub fn track(&self, tracked: Tracked) {
        // A send fails only when the manager has stopped, i.e. at shutdown.
        let _ = self.inner.commands.send(Command::Track(Box::new(tracked)));
    }

    /// Track `container_id` under a cgroup id the caller gives, without
    /// looking the container's cgroup up: for the tests and benchmarks that
    /// need more tracked entries than they can run containers (the entry
    /// has no CPU limit and no memory counter).
    #[doc(hidden)]
    pub fn track_cgroup(&self, container_id: &str, cgroup_id: u64, thresholds: Thresholds) {
        let dir = std::path::PathBuf::from(format!("/nonexistent/{container_id}"));
        let cgroup = ContainerCgroup {
            container_id: container_id.to_string(),
            id: cgroup_id,
            v2_dir: dir.clone(),
            cpu: cgroup::Files::V2(dir.clone()),
            memory: cgroup::Files::V2(dir),
        };
        let _ = self.inner.commands.send(Command::TrackCgroup(Box::new((cgroup, thresholds))));
    }

    /// Stop accounting a container; unknown ids are ignored.
    pub fn untrack(&self, container_id: &str) {
        let _ = self.inner.commands.send(Command::Untrack(container_id.to_string()));
    }

    /// Arm (`armed`) or disarm the container's wake: while armed, the first
    /// TCP connection the kernel establishes on one of the container's
    /// sockets pushes one [`Signal::Wake`] at once (eBPF probe only;
    /// the cgroupfs probe answers with an error, it cannot see a connection
    /// as it happens). Returns the container's open connections as counted
    /// right after the change: a connection established before arming is
    /// waiting for a process that is about to be frozen.
    pub async fn set_wake(&self, container_id: &str, armed: bool) -> Result<i64, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = Command::Wake { container_id: container_id.to_string(), armed, reply };
        self.inner.commands.send(command).map_err(|_| "the probe has stopped".to_string())?;
        answer.await.map_err(|_| "the probe has stopped".to_string())?.map_err(|err| format!("{err:#}"))
    }

    /// The container's open connections as the kernel counts them (eBPF
    /// probe only).
    pub async fn open_connections(&self, container_id: &str) -> Result<i64, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = Command::Open { container_id: container_id.to_string(), reply };
        self.inner.commands.send(command).map_err(|_| "the probe has stopped".to_string())?;
        answer.await.map_err(|_| "the probe has stopped".to_string())?.map_err(|err| format!("{err:#}"))
    }

    /// Park TCP `port` in `mode` (or change its mode): while parked, the
    /// kernel drops connection attempts to it without an answer and pushes
    /// a [`Signal::PortSyn`], and a socket that starts listening on it
    /// pushes a [`Signal::PortListen`] (eBPF probe only, and
    /// `CAP_NET_ADMIN`: the error says what is missing). See [`park`].
    pub async fn park(&self, port: u16, mode: ParkMode) -> Result<(), String> {
        self.park_command(port, Some(mode)).await
    }

    /// Unpark `port`; unknown ports are ignored.
    pub async fn unpark(&self, port: u16) -> Result<(), String> {
        self.park_command(port, None).await
    }

    async fn park_command(&self, port: u16, mode: Option<ParkMode>) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .commands
            .send(Command::Park { port, mode, reply })
            .map_err(|_| "the probe has stopped".to_string())?;
        answer.await.map_err(|_| "the probe has stopped".to_string())?.map_err(|err| format!("{err:#}"))
    }

    /// The probe that actually runs (after a fallback, the cgroupfs one).
    pub fn kind(&self) -> ProbeKind {
        self.inner.kind
    }

    /// Events delivered and lost so far.
    pub fn stats(&self) -> ProbeStats {
        let kernel = self.inner.kernel_drops.as_ref().map(|read| read()).unwrap_or_default();
        ProbeStats {
            events: self.inner.shared.events.load(Ordering::Relaxed),
            dropped: self.inner.shared.channel_drops.load(Ordering::Relaxed) + kernel.ring_full,
            unattributed: self.inner.shared.unattributed.load(Ordering::Relaxed),
            held_back: kernel.held_back,
            parked_syns: kernel.parked_syns,
            refused: self.inner.shared.refused.load(Ordering::Relaxed),
        }
    }

    /// The kernel tick's own runs and run time so far (eBPF probe only).
    pub fn tick_cost(&self) -> Option<ebpf::TickCost> {
        self.inner.tick_cost.as_ref().map(|read| read())
    }
}

/// Start the probe `settings` asks for; events go to `events`.
///
/// With [`ProbeKind::Ebpf`], a failure to load the kernel programs (most
/// often missing rights: see [`ebpf`]) is logged as a warning and the
/// cgroupfs probe runs instead, every second; [`ProbeHandle::kind`] says
/// which one runs. The producers never wait on a full channel: such events
/// are counted in [`ProbeStats::dropped`] and dropped.
pub async fn start(settings: ProbeSettings, events: mpsc::Sender<ProbeEvent>) -> anyhow::Result<ProbeHandle> {
    use anyhow::Context;
    let layout = Layout::detect().context("detecting the cgroup layout under /sys/fs/cgroup")?;
    let described = match &layout {
        Layout::Hybrid { root } => format!("hybrid (cgroup v1, v2 at {})", root.join("unified").display()),
        Layout::Unified { root } => format!("cgroup v2 at {}", root.display()),
    };
    tracing::info!("cgroup layout: {described}");
    let shared = Arc::new(Shared::new(events));
    let (commands, command_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let mut kernel_drops = None;
    let mut tick_cost = None;
    let kind = match settings.kind {
        ProbeKind::Ebpf => match ebpf::EbpfProbe::load(&settings, shared.clone()) {
            Ok(mut probe) => {
                kernel_drops = Some(probe.drop_reader());
                tick_cost = Some(probe.tick_reader());
                let reader = probe.spawn_reader().context("starting the ring buffer reader")?;
                tasks.push(reader.abort_handle());
                tasks.push(spawn_manager(layout, command_rx, Box::new(probe)).abort_handle());
                ProbeKind::Ebpf
            }
            Err(err) => {
                let interval = Duration::from_secs(1);
                tracing::warn!(
                    error = %err,
                    "cannot load the eBPF probes; falling back to the cgroupfs probe every {} (run as root, or grant CAP_BPF and CAP_PERFMON, to get push events)",
                    crate::units::human_duration(interval)
                );
                pins::release_left_behind(settings.pin_dir.as_deref());
                let (probe, task) = cgroupfs::CgroupfsProbe::spawn(interval, &settings, shared.clone());
                tasks.push(task.abort_handle());
                tasks.push(spawn_manager(layout, command_rx, Box::new(probe)).abort_handle());
                ProbeKind::Cgroupfs { interval }
            }
        },
        ProbeKind::Cgroupfs { interval } => {
            pins::release_left_behind(settings.pin_dir.as_deref());
            let (probe, task) = cgroupfs::CgroupfsProbe::spawn(interval, &settings, shared.clone());
            tasks.push(task.abort_handle());
            tasks.push(spawn_manager(layout, command_rx, Box::new(probe)).abort_handle());
            settings.kind
        }
    };
    let how = match kind {
        ProbeKind::Ebpf => format!(
            "eBPF, CPU window {}, a sample at most every {}, ring buffer {} KiB",
            crate::units::human_duration(settings.window),
            crate::units::human_duration(settings.sample_interval),
            settings.ring_buffer_bytes / 1024
        ),
        ProbeKind::Cgroupfs { interval } => {
            format!("cgroupfs, reading every {}", crate::units::human_duration(interval))
        }
    };
    tracing::info!(ring_buffer_bytes = settings.ring_buffer_bytes, "probe started: {how}");
    Ok(ProbeHandle { inner: Arc::new(HandleInner { kind, commands, shared, kernel_drops, tick_cost, tasks }) })
}

/// A request from the daemon.
#[derive(Debug)]
enum Command {
    /// Boxed: thresholds hold a band per metric of the table.
    Track(Box<Tracked>),
    /// A cgroup resolved by the caller ([`ProbeHandle::track_cgroup`]).
    TrackCgroup(Box<(ContainerCgroup, Thresholds)>),
    Untrack(String),
    Wake {
        container_id: String,
        armed: bool,
        reply: tokio::sync::oneshot::Sender<anyhow::Result<i64>>,
    },
    Open {
        container_id: String,
        reply: tokio::sync::oneshot::Sender<anyhow::Result<i64>>,
    },
    Park {
        port: u16,
        mode: Option<ParkMode>,
        reply: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    },
}

/// What the manager task needs from a probe implementation.
trait Backend: Send {
    /// Start or update accounting of a resolved container.
    fn add(&mut self, cgroup: ContainerCgroup, thresholds: Thresholds) -> anyhow::Result<()>;
    /// Stop accounting a container.
    fn remove(&mut self, container_id: &str);
    /// Arm or disarm the container's wake event; its open connections.
    fn set_wake(&mut self, container_id: &str, _armed: bool) -> anyhow::Result<i64> {
        anyhow::bail!(
            "container {container_id}: the cgroupfs probe cannot wake a frozen replica on its first connection (needs the eBPF probe)"
        )
    }
    /// The container's open connections.
    fn open_connections(&mut self, container_id: &str) -> anyhow::Result<i64> {
        anyhow::bail!("container {container_id}: the cgroupfs probe does not count connections as they happen")
    }
    /// Park (`Some`) or unpark (`None`) a port.
    fn park(&mut self, port: u16, _mode: Option<ParkMode>) -> anyhow::Result<()> {
        anyhow::bail!(
            "port {port}: the cgroupfs probe cannot hold connections for a service at zero replicas (autoscale.zero=remove needs the eBPF probe; autoscale.zero=freeze does too)"
        )
    }
    /// Whether any port is parked, or an earlier daemon's parked ports wait
    /// for their release ([`Backend::maintain`] is then called every
    /// [`MAINTAIN_INTERVAL`]).
    fn parking(&self) -> bool {
        false
    }
    /// Periodic upkeep while parking (interfaces that appeared, an earlier
    /// daemon's links past their grace).
    fn maintain(&mut self) {}
}

/// How often a parking probe looks for new network interfaces.
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(2);

/// How often and how long a container whose cgroup is missing is retried:
/// `docker start` returns before the task has its cgroup on slow hosts.
const RESOLVE_RETRY: Duration = Duration::from_millis(200);
const RESOLVE_ATTEMPTS: u32 = 25;

fn spawn_manager(
    layout: Layout,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut backend: Box<dyn Backend>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Containers whose cgroup is not there yet, with attempts so far.
        let mut pending: HashMap<String, (Tracked, u32)> = HashMap::new();
        let mut retry = tokio::time::interval(RESOLVE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintain = tokio::time::interval(MAINTAIN_INTERVAL);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Track(tracked)) => {
                        pending.remove(&tracked.container_id);
                        if let Some(again) = try_add(&layout, backend.as_mut(), *tracked, 0) {
                            if pending.is_empty() {
                                retry.reset();
                            }
                            pending.insert(again.0.container_id.clone(), again);
                        }
                    }
                    Some(Command::TrackCgroup(resolved)) => {
                        let (cgroup, thresholds) = *resolved;
                        pending.remove(&cgroup.container_id);
                        add(backend.as_mut(), cgroup, thresholds);
                    }
                    Some(Command::Untrack(id)) => {
                        pending.remove(&id);
                        backend.remove(&id);
                    }
                    Some(Command::Wake { container_id, armed, reply }) => {
                        let _ = reply.send(backend.set_wake(&container_id, armed));
                    }
                    Some(Command::Open { container_id, reply }) => {
                        let _ = reply.send(backend.open_connections(&container_id));
                    }
                    Some(Command::Park { port, mode, reply }) => {
                        let _ = reply.send(backend.park(port, mode));
                    }
                },
                _ = maintain.tick(), if backend.parking() => backend.maintain(),
                _ = retry.tick(), if !pending.is_empty() => {
                    for (_, (tracked, attempts)) in std::mem::take(&mut pending) {
                        if let Some(again) = try_add(&layout, backend.as_mut(), tracked, attempts) {
                            pending.insert(again.0.container_id.clone(), again);
                        }
                    }
                }
            }
        }
    })
}

/// Resolve and add; returns the request back when it should be retried.
fn try_add(layout: &Layout, backend: &mut dyn Backend, tracked: Tracked, attempts: u32) -> Option<(Tracked, u32)> {
    match layout.container(&tracked.container_id) {
        Ok(cgroup) => {
            add(backend, cgroup, tracked.thresholds);
            None
        }
        Err(CgroupError::NotFound { .. }) if attempts + 1 < RESOLVE_ATTEMPTS => Some((tracked, attempts + 1)),
        Err(err) => {
            tracing::warn!(container = %tracked.container_id, error = %err, "not tracking container");
            None
        }
    }
}

/// Add a resolved container to the backend; a refusal is logged.
fn add(backend: &mut dyn Backend, cgroup: ContainerCgroup, thresholds: Thresholds) {
    let (container, id) = (cgroup.container_id.clone(), cgroup.id);
    match backend.add(cgroup, thresholds) {
        Ok(()) => tracing::debug!(%container, cgroup_id = id, "tracking container"),
        Err(err) => tracing::error!(%container, error = %format!("{err:#}"), "cannot track container"),
    }
}

/// Counters and the daemon's channel, shared by everything that emits.
#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<ProbeEvent>,
    events: AtomicU64,
    channel_drops: AtomicU64,
    unattributed: AtomicU64,
    refused: AtomicU64,
}

impl Shared {
    fn new(tx: mpsc::Sender<ProbeEvent>) -> Shared {
        Shared {
            tx,
            events: AtomicU64::new(0),
            channel_drops: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Hand an event to the daemon without waiting; count it either way.
    fn emit(&self, event: ProbeEvent) {
        // Count before sending: whoever receives the event and then reads
        // the stats must never see fewer events than it received (the
        // channel orders the increment before the receive).
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(event).is_err() {
            self.events.fetch_sub(1, Ordering::Relaxed);
            self.channel_drops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_sizes_parse_with_binary_units() {
        assert_eq!(parse_ring_buffer_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_ring_buffer_size("1M"), Ok(1 << 20));
        assert_eq!(parse_ring_buffer_size("4096"), Ok(4096));
        assert!(parse_ring_buffer_size("300KiB").expect_err("not a power of two").contains("power of two"));
        assert!(parse_ring_buffer_size("1TB").is_err());
        assert!(parse_ring_buffer_size("lots").is_err());
    }
}
