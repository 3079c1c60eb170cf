//! Scale to zero: a service with `autoscale.min=0` that goes idle keeps its
//! one replica frozen (`autoscale.zero=freeze`, the default) or goes to no
//! replica at all (`autoscale.zero=remove`), and the kernel brings it back
//! on the first connection.
//!
//! When: the service has one replica in its spec and one running here, and
//! either it has been idle for `autoscale.idle` (no open or newly accepted
//! connection, CPU below `autoscale.cpu.lower`, or [`IDLE_CPU`] without
//! one), or its policy decided 0 and it has been quiet for [`POLICY_QUIET`]
//! (or `idle`, if shorter). A service that keeps receiving requests is
//! never idle, and one without `min=0` never comes here. A policy's 0 for a
//! service above one replica is a scale-in to one first (the guardrails
//! clamp the spec at one: the spec reaches 0 only through this module).
//!
//! # Freeze
//!
//! In order: refuse a replica with a health check (Docker fails every
//! check of a paused container and Swarm replaces it as unhealthy,
//! moby/moby#46203); arm the probe's wake (the eBPF probe only: the
//! cgroupfs probe cannot see a connection as it happens, so it refuses);
//! give up if a connection is open right now; pause. A connection that is
//! established after the arming pushes a wake event, so none falls between
//! the last reading and the pause: a wake that comes while the pause is in
//! flight thaws the replica as soon as the pause returns.
//!
//! The kernel completes the TCP handshake of a frozen process and queues
//! the connection; `ebpf/probe.bpf.c` pushes a wake event at once (outside
//! the event budget), and [`Zero::on_wake`] unpauses without a policy call.
//! The replica then answers from its accept queue, and its readings reach
//! the policy again, which scales out as usual. A wake event lost on a full
//! ring buffer is made up by the next sample that shows a connection.
//!
//! Frozen replicas are thawed when their service leaves scale to zero and
//! when the daemon shuts down: a frozen replica never outlives the daemon
//! that could wake it. A daemon killed before it could thaw leaves its
//! replicas paused with nothing to wake them; the next daemon finds them
//! when it first follows a scale-to-zero replica ([`Zero::recover`]) and
//! unpauses them (they freeze again after their next idle spell).
//!
//! In multi-node mode the same state machine runs on the deciding
//! manager, and the replica's own node does the I/O: its agent pauses the
//! replica with its engine, arms its probe's wake, and thaws it on the
//! first connection without waiting for the decider, then reports
//! ([`Done::WokenOnNode`]). A node's daemon thaws what it froze when it
//! stops; the decider stopping or moving leaves frozen replicas frozen,
//! their wakes armed on their nodes.
//!
//! # Remove
//!
//! The service's ports (`autoscale.port`, or those its spec publishes in
//! host mode) are *parked* in the kernel ([`crate::probe::park`]): a
//! connection attempt to them is dropped without an answer, so the client
//! retransmits it about a second later instead of being refused, and the
//! first one pushes an event. In order:
//! 1. park the ports in hold mode: from now on every attempt is held, even
//!    one the last replica would still accept (it would be reset when the
//!    replica stops); give up if a connection is open right now;
//! 2. write the spec from 1 to 0 replicas through the actuator (the only
//!    writer to Swarm; the write is no policy decision: no guardrail judges
//!    it, and it starts no cooldown);
//! 3. once the last replica's container is gone, switch the ports to
//!    lookup mode: an attempt some socket would take passes.
//!
//! An attempt held at any step brings the service back: at once from 0
//! (a spec write from 0 to 1, no policy call, no cooldown), or as soon as
//! the removal write returns. The ports stay parked until the new replica
//! listens (the kernel's listen event, or, as a safety net, a look at the
//! sockets every [`LISTEN_CHECK`]; after [`LISTEN_TIMEOUT`] without one
//! they are unparked with a warning: a wrong `autoscale.port` must not
//! hold clients forever). The clients' retransmits then reach it: none is
//! lost, each waits about a second longer than a warm connection would.
//!
//! A service found at 0 replicas with `autoscale.zero=remove` (after a
//! daemon restart, or scaled to 0 by an operator) is parked on first
//! sight. One whose labels stop asking for removal while it is at 0 is
//! restored to one replica; one scaled up by an operator while at 0 is
//! unparked once it listens; one removed from Swarm is unparked. Two
//! services sharing a port cannot be told apart by the kernel: removal is
//! refused for both. At shutdown a removed service stays at 0 (the next
//! daemon parks it again); its ports are unparked with the probe.
//!
//! Every freeze, thaw, wake, removal and restore is audited with Docker's
//! time and, for a wake or a restore, the time from the kernel's first
//! connection (attempt) to the replica answering
//! ([`crate::swarm::audit::ZeroRecord`], `autoscaler_zero_seconds`).
//!
//! The state machine does no I/O: every Docker, probe or Swarm call is a
//! [`Work`] item the event loop takes ([`Zero::take_work`]) and carries
//! out ([`ZeroIo::run`]), and its end comes back as a [`Done`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::model::{self, Metric};
use crate::probe::{ParkMode, ProbeEvent, ProbeHandle, Signal};
use crate::swarm::actuator::{ZeroWrite, ZeroWritten};
use crate::swarm::audit::{ZeroOutcome, ZeroRecord, unix_ms};
use crate::swarm::inventory::Inventory;
use crate::swarm::labels::{ScaleToZero, ServiceConfig, ZeroMode};
use crate::swarm::{Actuator, Audit, DockerWriter, Freezer};

mod done;
mod io;
mod remove;

pub(crate) use io::freeze;
pub use io::{Done, Work, ZeroIo};

/// CPU below which a service without `autoscale.cpu.lower` counts as idle
/// (in the unit of its CPU readings: a fraction of the limit, or cores).
pub const IDLE_CPU: f64 = 0.05;
/// How long a service must have been quiet before a policy's 0 takes it to
/// zero.
pub const POLICY_QUIET: Duration = Duration::from_secs(5);
/// How long shutdown waits for pauses and unpauses in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A restored service that has not listened on its ports this long after
/// coming back is unparked anyway, with a warning.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a restoring service's ports are looked at for a listener (the
/// safety net of the kernel's listen event).
pub const LISTEN_CHECK: Duration = Duration::from_secs(1);

/// Where a frozen replica stands; a running replica has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Freezing,
    Frozen,
    Thawing,
}

/// A replica being frozen, frozen, or being thawed.
#[derive(Debug)]
struct Replica {
    service_id: String,
    service: String,
    phase: Phase,
    /// Why it was frozen (for the audit).
    reason: String,
    /// Kernel time of the connection that woke it (or will, once the pause
    /// in flight returns).
    wake_ns: Option<u64>,
    /// Thaw as soon as the pause in flight returns, for this reason.
    release: Option<String>,
    /// Why it is being thawed.
    thaw_reason: String,
}

/// Where a service removed to zero replicas stands; a service with
/// replicas has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Ports being parked in hold mode; the replica's connections counted
    /// next.
    Parking,
    /// Found at zero replicas: ports being parked.
    Reparking,
    /// The spec write from 1 to 0 in flight.
    Removing,
    /// At zero replicas, ports parked.
    Removed,
    /// Coming back to one replica (the write in flight or done), waiting
    /// for it to listen.
    Restoring,
    /// Ports being unparked.
    Unparking,
}

/// A service on its way to zero replicas, at zero, or on its way back.
#[derive(Debug)]
struct Removal {
    service: String,
    /// The ports held.
    ports: Vec<u16>,
    step: Step,
    /// The mode the ports are parked in (or being parked in).
    mode: ParkMode,
    /// The replica being removed, until its container is gone.
    replica: Option<String>,
    /// Why it was removed (for the audit).
    reason: String,
    /// Kernel time of the first connection attempt held since the removal
    /// began.
    attempt_ns: Option<u64>,
    /// Come back as soon as the step in flight ends, for this reason.
    come_back: Option<String>,
    /// A connection attempt came while parking: give up the removal.
    abort: bool,
    /// The restore write is in flight.
    writing: bool,
    /// Docker's update of the removal, then of the restore.
    took: Option<Duration>,
    /// Why it was restored (for the audit).
    restore_reason: String,
    /// A socket started listening on one of the ports.
    listened: bool,
    /// Since when it restores.
    since: Instant,
    /// When its ports were last looked at for a listener.
    looked: Option<Instant>,
    /// A look is in flight.
    looking: bool,
    /// Warned that something else listens on its ports while removed.
    warned_foreign: bool,
    /// Forget it once unparked, without a record: the service is gone, or
    /// the removal was given up.
    forget: bool,
}

/// Why a service is not removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    /// Its ports when refused.
    ports: Vec<u16>,
    /// Why, in words.
    reason: String,
    /// Until its ports change (the probe refused them), rather than for as
    /// long as the reason holds.
    lasting: bool,
}

/// Scale-to-zero state of every replica and service on this node; driven
/// by the event loop.
pub struct Zero {
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    /// Replicas not simply running, by container id.
    replicas: HashMap<String, Replica>,
    /// Services removed to zero replicas or on their way, by service id.
    removals: HashMap<String, Removal>,
    /// Last time each service (by id) was seen busy.
    busy: HashMap<String, Instant>,
    /// Containers never to freeze (health check, probe without wake).
    refused: HashSet<String>,
    /// Services not to remove now, and why (said once).
    refused_removal: HashMap<String, Refusal>,
    /// Every autoscaled service's ports: port -> service ids.
    claims: HashMap<u16, Vec<(String, String)>>,
    /// I/O to carry out.
    work: Vec<Work>,
    /// `--dry-run`: say what would be frozen or removed, do nothing.
    dry_run: bool,
    /// Multi-node mode: removal is refused (see [`Zero::refuse_cluster`]).
    cluster: bool,
    /// Whether a socket of this host listens on a port
    /// ([`crate::probe::listening`]; tests put their own).
    port_taken: fn(u16) -> bool,
}

impl std::fmt::Debug for Zero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zero")
            .field("replicas", &self.replicas)
            .field("removals", &self.removals)
            .finish_non_exhaustive()
    }
}

impl Zero {
    /// New state.
    pub fn new(audit: Arc<Audit>, metrics: Arc<Metrics>, dry_run: bool) -> Zero {
        Zero {
            audit,
            metrics,
            replicas: HashMap::new(),
            removals: HashMap::new(),
            busy: HashMap::new(),
            refused: HashSet::new(),
            refused_removal: HashMap::new(),
            claims: HashMap::new(),
            work: Vec::new(),
            dry_run,
            cluster: false,
            port_taken: crate::probe::listening,
        }
    }

    /// Multi-node mode: replicas are frozen and thawed by their nodes'
    /// agents (the event loop routes [`Work::Freeze`], [`Work::Thaw`] and
    /// [`Work::Recover`] to them, and a wake comes back as
    /// [`Done::WokenOnNode`]); services are not removed to zero replicas
    /// (see the refusal's text).
    pub fn refuse_cluster(&mut self) {
        self.cluster = true;
    }

    /// The I/O asked for since the last call, in order.
    pub fn take_work(&mut self) -> Vec<Work> {
        std::mem::take(&mut self.work)
    }

    /// Whether the container's readings say nothing about its service's
    /// load: it is frozen (or being frozen or thawed), or it is the last
    /// replica of a service being removed.
    pub fn holds(&self, container: &str) -> bool {
        self.replicas.contains_key(container) || self.removals.values().any(|r| r.replica.as_deref() == Some(container))
    }

    /// The kernel saw the first connection to an armed container.
    pub fn on_wake(&mut self, container: &str, kernel_ns: u64) {
        let Some(replica) = self.replicas.get_mut(container) else { return };
        self.busy.insert(replica.service_id.clone(), Instant::now());
        match replica.phase {
            Phase::Frozen => self.thaw(container, Some(kernel_ns), "first connection"),
            Phase::Freezing => replica.wake_ns = Some(kernel_ns),
            Phase::Thawing => {}
        }
    }

    /// A reading of a replica of a service with `autoscale.min=0`: note
    /// whether the service is busy, take it to zero once it has been idle
    /// long enough. `spec` is the replicas in its spec, `running` its task
    /// containers on this node.
    pub fn observe(
        &mut self,
        (service_id, service): (&str, &str),
        config: &ServiceConfig,
        zero: ScaleToZero,
        (spec, running): (u32, &[String]),
        event: &ProbeEvent,
    ) {
        let Some(container) = event.container_id() else { return };
        let now = Instant::now();
        let busy = is_busy(event, config);
        if let Some(replica) = self.replicas.get(container) {
            // A frozen replica makes no readings of its own; a connection
            // in a sample means the wake event was lost (ring buffer full).
            if busy && replica.phase == Phase::Frozen && !is_cpu(event) {
                self.busy.insert(service_id.to_string(), now);
                let container = container.to_string();
                self.thaw(&container, Some(event.timestamp_ns()), "a connection in a sample (its wake event was lost)");
            }
            return;
        }
        if let Some(r) = self.removals.get(service_id) {
            // On its way out or back: readings of the new replica are load
            // (the policy sees them), but nothing goes to zero meanwhile.
            if r.step == Step::Restoring && r.replica.as_deref() != Some(container) {
                self.busy.insert(service_id.to_string(), now);
                self.look(service_id, now);
            }
            return;
        }
        let last = self.busy.entry(service_id.to_string()).or_insert(now);
        if busy {
            *last = now;
            return;
        }
        if now.duration_since(*last) >= zero.idle {
            let lower = idle_cpu(config);
            let reason = format!("idle for {:?} (no connection, CPU below {lower})", zero.idle);
            self.try_zero((service_id, service), config, zero, (spec, running), reason);
        }
    }

    /// The service's policy decided 0 replicas; take it to zero if it has
    /// been quiet long enough. Returns whether it started.
    pub fn policy_zero(
        &mut self,
        (service_id, service): (&str, &str),
        config: &ServiceConfig,
        zero: ScaleToZero,
        (spec, running): (u32, &[String]),
        reason: &str,
    ) -> bool {
        let quiet = zero.idle.min(POLICY_QUIET);
        let last = *self.busy.entry(service_id.to_string()).or_insert_with(Instant::now);
        if last.elapsed() < quiet {
            tracing::debug!(service = %service, "policy asked for 0, but {service} had work {:?} ago", last.elapsed());
            return false;
        }
        self.try_zero((service_id, service), config, zero, (spec, running), format!("policy: {reason}"))
    }

    fn try_zero(
        &mut self,
        (service_id, service): (&str, &str),
        config: &ServiceConfig,
        zero: ScaleToZero,
        (spec, running): (u32, &[String]),
        reason: String,
    ) -> bool {
        match zero.mode {
            ZeroMode::Freeze => self.try_freeze((service_id, service), (spec, running), reason),
            ZeroMode::Remove => self.try_remove((service_id, service), &config.ports, (spec, running), reason),
        }
    }

    fn try_freeze(
        &mut self,
        (service_id, service): (&str, &str),
        (spec, running): (u32, &[String]),
        reason: String,
    ) -> bool {
        // Zero is one replica, frozen: more scale in first.
        let [container] = running else { return false };
        if spec != 1 || self.replicas.contains_key(container) || self.refused.contains(container) {
            return false;
        }
        if self.dry_run {
            tracing::info!(target: "audit", service = %service, "dry-run: would freeze {service}: {reason}");
            // Once per idle period.
            self.busy.insert(service_id.to_string(), Instant::now());
            return false;
        }
        self.replicas.insert(
            container.clone(),
            Replica {
                service_id: service_id.to_string(),
                service: service.to_string(),
                phase: Phase::Freezing,
                reason,
                wake_ns: None,
                release: None,
                thaw_reason: String::new(),
            },
        );
        self.work.push(Work::Freeze { container: container.clone() });
        true
    }

    /// Unpause a frozen replica; `wake_ns` is the kernel's time of the
    /// connection that woke it.
    fn thaw(&mut self, container: &str, wake_ns: Option<u64>, reason: &str) {
        let Some(replica) = self.replicas.get_mut(container) else { return };
        if replica.phase != Phase::Frozen {
            return;
        }
        replica.phase = Phase::Thawing;
        replica.wake_ns = wake_ns;
        replica.thaw_reason = reason.to_string();
        self.work.push(Work::Thaw { container: container.to_string() });
    }

    /// A replica of a scale-to-zero service this daemon has just begun to
    /// follow: if it is paused (an earlier daemon froze it and was killed
    /// before it could thaw it), unpause it, since no wake is armed for it.
    pub fn recover(&mut self, (service_id, service): (&str, &str), container: &str) {
        if self.replicas.contains_key(container) || self.dry_run {
            return;
        }
        self.work.push(Work::Recover {
            container: container.to_string(),
            service_id: service_id.to_string(),
            service: service.to_string(),
        });
    }

    /// The container is gone: nothing to thaw; a removed replica is gone.
    pub fn forget(&mut self, container: &str) {
        // A frozen replica whose container ended (its engine restarted,
        // Swarm replaced it): said once, and audited, since no thaw will be.
        if self.replicas.get(container).is_some_and(|r| r.phase != Phase::Thawing) {
            let reason = "its container ended while frozen (its engine restarted, or Swarm replaced or removed it): nothing to thaw; its next replica starts running";
            self.record(container, ZeroOutcome::Gone, Some(reason.to_string()), Duration::ZERO, None);
        }
        self.replicas.remove(container);
        self.refused.remove(container);
        let removed: Vec<String> = self
            .removals
            .iter()
            .filter(|(_, r)| r.replica.as_deref() == Some(container))
            .map(|(id, _)| id.clone())
            .collect();
        for id in removed {
            self.replica_gone(&id);
        }
    }

    /// Docker was away: its containers may be gone or restarted under new
    /// ids. Forget what was frozen and when services were busy; a replica
    /// paused before and still there is found again by [`Zero::recover`]
    /// when the resync tracks it anew, and unpaused. Removed services keep
    /// their ports parked: the resync's [`Zero::reconcile`] sorts them out.
    pub fn reset(&mut self) {
        if !self.replicas.is_empty() {
            let ids: Vec<&str> = self.replicas.keys().map(String::as_str).collect();
            tracing::warn!("docker came back; frozen replicas still there will be unpaused: {}", ids.join(", "));
        }
        self.replicas.clear();
        self.busy.clear();
    }

    /// Services (by id) that have replicas frozen or on their way.
    pub fn services(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.replicas.values().map(|r| r.service_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The service no longer scales to zero by freezing (labels changed,
    /// service gone): thaw its replicas.
    pub fn release(&mut self, service_id: &str, reason: &str) {
        self.busy.remove(service_id);
        let containers: Vec<String> =
            self.replicas.iter().filter(|(_, r)| r.service_id == service_id).map(|(c, _)| c.clone()).collect();
        for container in containers {
            let Some(replica) = self.replicas.get_mut(&container) else { continue };
            match replica.phase {
                Phase::Freezing => replica.release = Some(reason.to_string()),
                Phase::Frozen => self.thaw(&container, None, reason),
                Phase::Thawing => {}
            }
        }
    }

    /// Shutdown, first half: thaw every frozen replica and give up every
    /// removal that has not written yet; removed services stay at zero
    /// (the next daemon parks them again). Then feed [`Done`]s to
    /// [`Zero::on_done`] while [`Zero::settling`].
    ///
    /// In multi-node mode frozen replicas stay frozen: each node's agent
    /// holds its wake, and thaws what it froze when its own daemon stops.
    pub fn begin_shutdown(&mut self) {
        if !self.cluster {
            for service in self.services() {
                self.release(&service, "the autoscaler is stopping");
            }
        }
        let removed: Vec<String> = self
            .removals
            .iter()
            .filter(|(_, r)| matches!(r.step, Step::Removed | Step::Reparking))
            .map(|(_, r)| format!("{} (port {})", r.service, join(&r.ports)))
            .collect();
        if !removed.is_empty() {
            tracing::warn!(
                "services at 0 replicas stay there: {}; connections to them are refused until the autoscaler runs again, which holds their ports at once",
                removed.join(", ")
            );
        }
        let parking: Vec<String> =
            self.removals.iter().filter(|(_, r)| r.step == Step::Parking).map(|(id, _)| id.clone()).collect();
        for id in parking {
            if let Some(r) = self.removals.get_mut(&id) {
                r.abort = true;
                r.forget = true;
            }
        }
    }

    /// Whether shutdown still waits for something: a pause or unpause, or a
    /// park that must be undone.
    pub fn settling(&self) -> bool {
        (!self.cluster && !self.replicas.is_empty()) || self.removals.values().any(|r| r.step == Step::Parking)
    }

    /// Shutdown's wait: what is still frozen, named.
    pub fn still_frozen(&self) -> Vec<String> {
        self.replicas.keys().cloned().collect()
    }

    fn record(
        &self,
        container: &str,
        zero: ZeroOutcome,
        reason: Option<String>,
        took: Duration,
        wake: Option<Duration>,
    ) {
        let Some(replica) = self.replicas.get(container) else { return };
        let reason = reason.unwrap_or_else(|| match zero {
            ZeroOutcome::Frozen => replica.reason.clone(),
            _ => replica.thaw_reason.clone(),
        });
        self.audit.record_zero(&ZeroRecord {
            time_unix_ms: unix_ms(),
            service: replica.service.clone(),
            service_id: replica.service_id.clone(),
            container: container.to_string(),
            zero,
            reason,
            docker_us: took.as_micros() as u64,
            wake_us: wake.map(|w| w.as_micros() as u64),
            ports: Vec::new(),
        });
    }
}

/// Time since a kernel timestamp (CLOCK_MONOTONIC ns).
fn since_kernel(ns: u64) -> Duration {
    Duration::from_nanos(model::monotonic_ns().saturating_sub(ns))
}

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// Whether a reading or the accepted-connections signal shows work: a
/// connection open or accepted, or CPU at or above the service's lower
/// threshold.
fn is_busy(event: &ProbeEvent, config: &ServiceConfig) -> bool {
    match event {
        ProbeEvent::Reading(r) if r.metric == Metric::CONNECTIONS => r.value > 0.0,
        ProbeEvent::Reading(r) if r.metric == Metric::CPU => r.value >= idle_cpu(config),
        ProbeEvent::Signal(Signal::Accepted { count, .. }) => *count > 0,
        _ => false,
    }
}

/// Whether `event` is a CPU reading (busy by CPU, not by a connection).
fn is_cpu(event: &ProbeEvent) -> bool {
    matches!(event, ProbeEvent::Reading(r) if r.metric == Metric::CPU)
}

/// The CPU below which the service counts as idle: `autoscale.cpu.lower`,
/// or [`IDLE_CPU`].
fn idle_cpu(config: &ServiceConfig) -> f64 {
    config.thresholds.band(&Metric::CPU).lower.unwrap_or(IDLE_CPU)
}

#[cfg(test)]
mod tests;
