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

/// One piece of I/O the state machine asks for; its end comes back as a
/// [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Check the replica's health check, arm its wake, count its
    /// connections, pause it: [`Done::Frozen`], [`Done::Busy`] or
    /// [`Done::NotFrozen`].
    Freeze {
        /// The replica.
        container: String,
    },
    /// Unpause the replica, then disarm its wake: [`Done::Thawed`] or
    /// [`Done::ThawFailed`].
    Thaw {
        /// The replica.
        container: String,
    },
    /// A replica first followed: if paused, unpause it
    /// ([`Done::FoundPaused`]).
    Recover {
        /// The replica.
        container: String,
        /// Its service's id.
        service_id: String,
        /// Its service's name.
        service: String,
    },
    /// Park the ports in `mode`, then count `count`'s open connections:
    /// [`Done::Parked`].
    Park {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
        /// How.
        mode: ParkMode,
        /// The replica whose open connections to count (a removal).
        count: Option<String>,
    },
    /// Unpark the ports: [`Done::Unparked`].
    Unpark {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
    },
    /// A scale-to-zero spec write through the actuator: [`Done::Written`].
    Write {
        /// The service.
        service_id: String,
        /// Its name.
        service: String,
        /// 0 (from 1) or 1 (from 0).
        to: u32,
    },
    /// Whether a socket listens on any of the ports: [`Done::Listening`].
    CheckListening {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
    },
}

/// The end of a [`Work`], sent back to the event loop.
#[derive(Debug)]
pub enum Done {
    /// Paused.
    Frozen {
        /// The replica.
        container: String,
        /// Docker's pause.
        took: Duration,
    },
    /// A connection was open when the wake was armed: not now.
    Busy {
        /// The replica.
        container: String,
    },
    /// Not paused: refused for good (health check, probe) or failed.
    NotFrozen {
        /// The replica.
        container: String,
        /// [`ZeroOutcome::Refused`] or [`ZeroOutcome::Failed`].
        outcome: ZeroOutcome,
        /// Why.
        reason: String,
    },
    /// Unpaused.
    Thawed {
        /// The replica.
        container: String,
        /// Docker's unpause.
        took: Duration,
    },
    /// Found paused when first followed (left by an earlier daemon), and
    /// unpaused, or not.
    FoundPaused {
        /// The replica.
        container: String,
        /// Its service's id.
        service_id: String,
        /// Its service's name.
        service: String,
        /// Docker's unpause: how long it took, or why it failed.
        unpaused: Result<Duration, String>,
    },
    /// The unpause failed.
    ThawFailed {
        /// The replica.
        container: String,
        /// Docker's answer.
        reason: String,
    },
    /// Ports parked (with the counted replica's open connections, 0 when
    /// none was counted), or not.
    Parked {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
        /// The mode asked for.
        mode: ParkMode,
        /// Open connections, or why parking failed.
        result: Result<i64, String>,
    },
    /// Ports unparked.
    Unparked {
        /// The service.
        service_id: String,
    },
    /// A scale-to-zero spec write ended.
    Written {
        /// The service.
        service_id: String,
        /// 0 or 1.
        to: u32,
        /// What the actuator did.
        outcome: ZeroWritten,
    },
    /// Multi-node mode: a connection woke a replica on its node, and that
    /// node's agent thawed it at once.
    WokenOnNode {
        /// The replica.
        container: String,
        /// Its service's id, and name (from the inventory).
        service: (String, String),
        /// Docker's unpause on the node.
        took: Duration,
        /// From the kernel's connection to the unpause returning.
        wake: Duration,
    },
    /// The answer of a [`Work::CheckListening`].
    Listening {
        /// The service.
        service_id: String,
        /// Whether a socket listens on one of its ports.
        listening: bool,
    },
}

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

    /// The kernel held a connection attempt to a parked port.
    pub fn on_port_attempt(&mut self, port: u16, kernel_ns: u64) {
        let Some(id) = self.removal_of(port) else { return };
        self.busy.insert(id.clone(), Instant::now());
        let Some(r) = self.removals.get_mut(&id) else { return };
        r.attempt_ns.get_or_insert(kernel_ns);
        match r.step {
            Step::Parking => r.abort = true,
            Step::Reparking | Step::Removing => {
                r.come_back.get_or_insert_with(|| "a connection attempt".into());
            }
            Step::Removed => self.restore(&id, "a connection attempt"),
            Step::Restoring | Step::Unparking => {}
        }
    }

    /// A socket started listening on a parked port.
    pub fn on_port_listen(&mut self, port: u16) {
        let Some(id) = self.removal_of(port) else { return };
        let Some(r) = self.removals.get_mut(&id) else { return };
        r.listened = true;
        if r.step == Step::Restoring && !r.writing && r.replica.is_none() {
            self.unpark(&id);
        }
    }

    fn removal_of(&self, port: u16) -> Option<String> {
        self.removals.iter().find(|(_, r)| r.ports.contains(&port)).map(|(id, _)| id.clone())
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

    fn try_remove(
        &mut self,
        (service_id, service): (&str, &str),
        ports: &[u16],
        (spec, running): (u32, &[String]),
        reason: String,
    ) -> bool {
        // Zero from one replica: more scale in first.
        let [container] = running else { return false };
        if spec != 1 || self.removals.contains_key(service_id) {
            return false;
        }
        if self.refused(service_id, service, ports) {
            return false;
        }
        self.busy.insert(service_id.to_string(), Instant::now());
        if self.dry_run {
            tracing::info!(target: "audit", service = %service, "dry-run: would remove {service} (1 -> 0 replicas, port {} held): {reason}", join(ports));
            return false;
        }
        self.removals
            .insert(service_id.to_string(), Removal::new(service, ports, Step::Parking, Some(container), reason));
        self.work.push(Work::Park {
            service_id: service_id.to_string(),
            ports: ports.to_vec(),
            mode: ParkMode::Hold,
            count: Some(container.clone()),
        });
        true
    }

    /// Why the service cannot be removed now, if it cannot.
    fn removal_refusal(&self, service_id: &str, ports: &[u16]) -> Option<String> {
        if self.cluster {
            return Some(
                "autoscale.zero=remove is not supported with --cluster yet: a removed service's next replica may start on any node, and the connection attempts that must bring it back arrive at a node the decider cannot see (use autoscale.zero=freeze)".into(),
            );
        }
        for port in ports {
            let others: Vec<&str> = self
                .claims
                .get(port)
                .into_iter()
                .flatten()
                .filter(|(id, _)| id != service_id)
                .map(|(_, name)| name.as_str())
                .collect();
            if !others.is_empty() {
                return Some(format!(
                    "port {port} is also the port of service {}: the kernel cannot tell whose connection attempt it holds (give each service its own autoscale.port, or use autoscale.zero=freeze)",
                    others.join(", ")
                ));
            }
        }
        None
    }

    /// Whether the service may not be removed now: for as long as it shares
    /// a port or runs in multi-node mode, or for good with these ports (the
    /// probe refused to park them).
    fn refused(&mut self, service_id: &str, service: &str, ports: &[u16]) -> bool {
        if let Some(why) = self.removal_refusal(service_id, ports) {
            self.refuse_removal((service_id, service), ports, why, false);
            return true;
        }
        match self.refused_removal.get(service_id) {
            Some(r) if r.lasting && r.ports == ports => true,
            Some(_) => {
                self.refused_removal.remove(service_id);
                false
            }
            None => false,
        }
    }

    /// Refuse to remove the service, said once per (ports, reason);
    /// `lasting`: until its ports change, whatever else does.
    fn refuse_removal(&mut self, (service_id, service): (&str, &str), ports: &[u16], reason: String, lasting: bool) {
        let said = Refusal { ports: ports.to_vec(), reason: reason.clone(), lasting };
        if self.refused_removal.get(service_id) == Some(&said) {
            return;
        }
        self.refused_removal.insert(service_id.to_string(), said);
        self.audit.record_zero(&ZeroRecord {
            time_unix_ms: unix_ms(),
            service: service.to_string(),
            service_id: service_id.to_string(),
            container: String::new(),
            zero: ZeroOutcome::Refused,
            reason,
            docker_us: 0,
            wake_us: None,
            ports: ports.to_vec(),
        });
    }

    /// Bring a removed service back to one replica.
    fn restore(&mut self, service_id: &str, reason: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.step = Step::Restoring;
        r.writing = true;
        r.since = Instant::now();
        r.restore_reason = reason.to_string();
        r.took = None;
        self.work.push(Work::Write { service_id: service_id.to_string(), service: r.service.clone(), to: 1 });
    }

    fn unpark(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.step = Step::Unparking;
        self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: r.ports.clone() });
    }

    /// Look for a listener on a restoring (or removed) service's ports, at
    /// most every [`LISTEN_CHECK`].
    fn look(&mut self, service_id: &str, now: Instant) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        // A listener while the old replica runs may be the old replica's.
        if r.replica.is_some() || r.looking || r.looked.is_some_and(|at| now.duration_since(at) < LISTEN_CHECK) {
            return;
        }
        r.looking = true;
        r.looked = Some(now);
        self.work.push(Work::CheckListening { service_id: service_id.to_string(), ports: r.ports.clone() });
    }

    /// The removed replica's container is gone: no socket of it can take a
    /// connection any more.
    fn replica_gone(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.replica = None;
        match r.step {
            Step::Removed | Step::Restoring if r.mode == ParkMode::Hold => {
                r.mode = ParkMode::Lookup;
                self.work.push(Work::Park {
                    service_id: service_id.to_string(),
                    ports: r.ports.clone(),
                    mode: ParkMode::Lookup,
                    count: None,
                });
            }
            _ => {}
        }
        match self.removals.get(service_id).map(|r| (r.step, r.listened, r.writing)) {
            Some((Step::Restoring, true, false)) => self.unpark(service_id),
            Some((Step::Restoring | Step::Removed, _, _)) => self.look(service_id, Instant::now()),
            _ => {}
        }
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

    /// A piece of I/O ended.
    pub fn on_done(&mut self, done: Done) {
        match done {
            Done::Frozen { container, took } => {
                let Some(replica) = self.replicas.get_mut(&container) else { return };
                replica.phase = Phase::Frozen;
                self.metrics.observe_zero("freeze", took);
                self.record(&container, ZeroOutcome::Frozen, None, took, None);
                let Some(replica) = self.replicas.get_mut(&container) else { return };
                if let Some(kernel_ns) = replica.wake_ns.take() {
                    self.thaw(&container, Some(kernel_ns), "a connection came while it was being frozen");
                } else if let Some(reason) = replica.release.take() {
                    self.thaw(&container, None, &reason);
                }
            }
            Done::Busy { container } => {
                if let Some(replica) = self.replicas.remove(&container) {
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::NotFrozen { container, outcome, reason } => {
                if outcome == ZeroOutcome::Refused {
                    self.refused.insert(container.clone());
                }
                self.record(&container, outcome, Some(reason), Duration::ZERO, None);
                if let Some(replica) = self.replicas.remove(&container) {
                    // A failure is tried again after another idle spell, not
                    // at every reading.
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::Thawed { container, took } => {
                let Some(replica) = self.replicas.get(&container) else { return };
                let wake = replica.wake_ns.map(since_kernel);
                self.metrics.observe_zero("thaw", took);
                let outcome = match wake {
                    Some(wake) => {
                        self.metrics.observe_zero("wake", wake);
                        ZeroOutcome::Woken
                    }
                    None => ZeroOutcome::Thawed,
                };
                self.record(&container, outcome, None, took, wake);
                if let Some(replica) = self.replicas.remove(&container) {
                    self.busy.insert(replica.service_id, Instant::now());
                }
            }
            Done::FoundPaused { container, service_id, service, unpaused } => {
                let (zero, reason, took) = match unpaused {
                    Ok(took) => {
                        tracing::warn!(service = %service, "replica {container} of {service} was left paused by an earlier daemon; unpaused it");
                        (ZeroOutcome::Thawed, "found paused by an earlier daemon: unpaused".to_string(), took)
                    }
                    Err(reason) => {
                        tracing::error!(service = %service, "replica {container} of {service} was left paused by an earlier daemon and cannot be unpaused: {reason}");
                        (ZeroOutcome::Failed, format!("found paused by an earlier daemon: {reason}"), Duration::ZERO)
                    }
                };
                // It freezes again only after a whole idle spell from now.
                self.busy.insert(service_id.clone(), Instant::now());
                self.audit.record_zero(&ZeroRecord {
                    time_unix_ms: unix_ms(),
                    service,
                    service_id,
                    container,
                    zero,
                    reason,
                    docker_us: took.as_micros() as u64,
                    wake_us: None,
                    ports: Vec::new(),
                });
            }
            Done::ThawFailed { container, reason } => {
                self.record(&container, ZeroOutcome::Failed, Some(reason), Duration::ZERO, None);
                self.replicas.remove(&container);
            }
            Done::WokenOnNode { container, service: (service_id, service), took, wake } => {
                self.metrics.observe_zero("thaw", took);
                self.metrics.observe_zero("wake", wake);
                self.busy.insert(service_id.clone(), Instant::now());
                if self.replicas.contains_key(&container) {
                    if let Some(replica) = self.replicas.get_mut(&container) {
                        replica.thaw_reason = "first connection".into();
                    }
                    self.record(&container, ZeroOutcome::Woken, None, took, Some(wake));
                    self.replicas.remove(&container);
                    return;
                }
                // Frozen under an earlier leader: its node's agent kept the wake.
                self.audit.record_zero(&ZeroRecord {
                    time_unix_ms: unix_ms(),
                    service,
                    service_id,
                    container,
                    zero: ZeroOutcome::Woken,
                    reason: "first connection (frozen under an earlier decider)".into(),
                    docker_us: took.as_micros() as u64,
                    wake_us: Some(wake.as_micros() as u64),
                    ports: Vec::new(),
                });
            }
            Done::Parked { service_id, ports, mode, result } => self.parked(&service_id, &ports, mode, result),
            Done::Written { service_id, to, outcome } => self.written(&service_id, to, outcome),
            Done::Listening { service_id, listening } => self.listening(&service_id, listening),
            Done::Unparked { service_id } => {
                let Some(r) = self.removals.remove(&service_id) else { return };
                self.busy.insert(service_id.clone(), Instant::now());
                if r.forget {
                    return;
                }
                let wake = r.attempt_ns.map(since_kernel);
                if let Some(wake) = wake {
                    self.metrics.observe_zero("restore", wake);
                }
                let reason = match wake {
                    Some(_) => format!("{}: listening again", r.restore_reason),
                    None => r.restore_reason.clone(),
                };
                self.record_removal(&service_id, &r, ZeroOutcome::Restored, reason, wake);
            }
        }
    }

    fn parked(&mut self, service_id: &str, ports: &[u16], mode: ParkMode, result: Result<i64, String>) {
        let Some(r) = self.removals.get_mut(service_id) else {
            // Forgotten meanwhile: nothing may stay parked.
            self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: ports.to_vec() });
            return;
        };
        match (r.step, result) {
            (Step::Parking | Step::Reparking, Err(reason)) => {
                let (service, ports) = (r.service.clone(), r.ports.clone());
                self.removals.remove(service_id);
                self.work.push(Work::Unpark { service_id: service_id.to_string(), ports: ports.clone() });
                self.busy.insert(service_id.to_string(), Instant::now());
                self.refuse_removal((service_id, &service), &ports, reason, true);
            }
            (Step::Parking, Ok(open)) => {
                if r.forget || r.abort || open > 0 {
                    // A connection is open, or one was attempted: not now.
                    tracing::debug!(service = %r.service, open, "not removing {}: it has work", r.service);
                    r.forget = true;
                    self.busy.insert(service_id.to_string(), Instant::now());
                    self.unpark(service_id);
                    return;
                }
                r.step = Step::Removing;
                self.work.push(Work::Write { service_id: service_id.to_string(), service: r.service.clone(), to: 0 });
            }
            (Step::Reparking, Ok(_)) => {
                if r.forget {
                    self.unpark(service_id);
                    return;
                }
                r.step = Step::Removed;
                let reason = "found at 0 replicas with autoscale.zero=remove: its ports are held again".to_string();
                tracing::info!(service = %r.service, "service {} is at 0 replicas: port {} held", r.service, join(&r.ports));
                self.record_removal_now(service_id, ZeroOutcome::Removed, reason);
                if let Some(reason) = self.removals.get_mut(service_id).and_then(|r| r.come_back.take()) {
                    self.restore(service_id, &reason);
                } else if self.removals.get(service_id).is_some_and(|r| r.replica.is_none()) {
                    self.look(service_id, Instant::now());
                }
            }
            (_, Ok(_)) => r.mode = mode,
            (_, Err(reason)) => {
                tracing::warn!(service = %r.service, "cannot park port {} of {} in {mode:?} mode: {reason}", join(&r.ports), r.service);
            }
        }
    }

    fn written(&mut self, service_id: &str, to: u32, outcome: ZeroWritten) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        match (to, outcome) {
            (0, ZeroWritten::Spec { replicas: 0, wrote }) => {
                r.step = Step::Removed;
                r.took = wrote;
                if let Some(took) = wrote {
                    self.metrics.observe_zero("remove", took);
                }
                let reason = r.reason.clone();
                self.record_removal_now(service_id, ZeroOutcome::Removed, reason);
                let Some(r) = self.removals.get_mut(service_id) else { return };
                if r.forget {
                    self.unpark(service_id);
                } else if let Some(reason) = r.come_back.take() {
                    self.restore(service_id, &reason);
                } else if r.replica.is_none() {
                    self.replica_gone(service_id);
                }
            }
            (0, ZeroWritten::Spec { replicas, .. }) => {
                tracing::info!(service = %r.service, "not removing {}: its spec says {replicas} replicas now", r.service);
                r.forget = true;
                self.busy.insert(service_id.to_string(), Instant::now());
                self.unpark(service_id);
            }
            (0, ZeroWritten::Failed(reason)) => {
                let reason = format!("cannot remove {}: {reason}", r.service);
                r.forget = true;
                self.record_removal_now(service_id, ZeroOutcome::Failed, reason);
                self.busy.insert(service_id.to_string(), Instant::now());
                self.unpark(service_id);
            }
            (_, ZeroWritten::Spec { wrote, .. }) => {
                r.writing = false;
                r.took = wrote;
                if r.forget || (r.listened && r.replica.is_none()) {
                    self.unpark(service_id);
                } else {
                    self.look(service_id, Instant::now());
                }
            }
            (_, ZeroWritten::Failed(reason)) => {
                // Still at 0, its ports parked: the next attempt tries again.
                r.writing = false;
                r.step = Step::Removed;
                let reason = format!("cannot restore {}: {reason}", r.service);
                self.record_removal_now(service_id, ZeroOutcome::Failed, reason);
            }
        }
    }

    fn listening(&mut self, service_id: &str, listening: bool) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.looking = false;
        if !listening || r.replica.is_some() {
            return;
        }
        match r.step {
            Step::Restoring if !r.writing => self.unpark(service_id),
            Step::Removed if !r.warned_foreign => {
                r.warned_foreign = true;
                tracing::warn!(
                    service = %r.service,
                    "something other than {} listens on port {} while the service has no replica: connection attempts go to it and never bring {} back (check autoscale.port)",
                    r.service, join(&r.ports), r.service
                );
            }
            _ => {}
        }
    }

    /// When [`Zero::tick`] must run next, if anything waits for time.
    pub fn next_tick(&self) -> Option<Instant> {
        self.removals
            .values()
            .filter(|r| r.step == Step::Restoring && !r.writing)
            .map(|r| {
                let timeout = r.since + LISTEN_TIMEOUT;
                // Nothing to look at while the old replica runs, or while a
                // look is in flight: only the timeout.
                match (&r.replica, r.looking) {
                    (None, false) => r.looked.map_or(r.since, |at| at + LISTEN_CHECK).min(timeout),
                    _ => timeout,
                }
            })
            .min()
    }

    /// Look at restoring services' ports; unpark those that waited past
    /// [`LISTEN_TIMEOUT`].
    pub fn tick(&mut self) {
        let now = Instant::now();
        let restoring: Vec<(String, Instant)> = self
            .removals
            .iter()
            .filter(|(_, r)| r.step == Step::Restoring && !r.writing)
            .map(|(id, r)| (id.clone(), r.since))
            .collect();
        for (id, since) in restoring {
            if now.duration_since(since) >= LISTEN_TIMEOUT {
                if let Some(r) = self.removals.get_mut(&id) {
                    tracing::warn!(
                        service = %r.service,
                        "{} came back but nothing listened on port {} within {}: unparked (check autoscale.port)",
                        r.service, join(&r.ports), crate::units::human_duration(LISTEN_TIMEOUT)
                    );
                    r.restore_reason = format!(
                        "{}; nothing listened within {}",
                        r.restore_reason,
                        crate::units::human_duration(LISTEN_TIMEOUT)
                    );
                    r.attempt_ns = None;
                }
                self.unpark(&id);
            } else {
                self.look(&id, now);
            }
        }
    }

    /// Bring scale to zero in line with the inventory after a change:
    /// - services found at 0 replicas with `autoscale.zero=remove` are
    ///   parked; one scaled up by an operator while removed waits for its
    ///   replica to listen; a removed replica that is gone no longer counts;
    /// - services that no longer ask for removal are restored, and those
    ///   gone from Swarm unparked;
    /// - frozen replicas of services that no longer ask to be frozen thaw.
    pub fn reconcile(&mut self, inventory: &Inventory) {
        self.claims.clear();
        for entry in inventory.active() {
            let Some(config) = entry.config() else { continue };
            for port in &config.ports {
                self.claims.entry(*port).or_default().push((entry.id.clone(), entry.name.clone()));
            }
        }
        let now = Instant::now();
        for entry in inventory.active() {
            let Some(config) = entry.config() else { continue };
            if config.zero.map(|z| z.mode) != Some(ZeroMode::Remove) {
                self.refused_removal.remove(&entry.id);
                continue;
            }
            if self.refused_removal.get(&entry.id).is_some_and(|r| r.ports != config.ports) {
                self.refused_removal.remove(&entry.id);
            }
            match self.removals.get_mut(&entry.id) {
                None if entry.replicas == 0 => {
                    let running: Vec<String> = inventory.containers_of(&entry.id).map(|c| c.id.clone()).collect();
                    self.repark((&entry.id, &entry.name), &config.ports, running.first().cloned());
                }
                Some(r) if r.ports != config.ports => {
                    self.release_removal(&entry.id.clone(), "its ports changed");
                }
                Some(r) if r.step == Step::Removed && entry.replicas >= 1 => {
                    r.step = Step::Restoring;
                    r.since = now;
                    r.restore_reason = format!("scaled to {} replicas by someone else", entry.replicas);
                    let id = entry.id.clone();
                    self.look(&id, now);
                }
                _ => {}
            }
        }
        let ids: Vec<String> = self.removals.keys().cloned().collect();
        for id in ids {
            match inventory.service(&id) {
                None => self.forget_removal(&id),
                Some(entry) if entry.config().and_then(|c| c.zero).map(|z| z.mode) != Some(ZeroMode::Remove) => {
                    self.release_removal(&id, "its service no longer scales to zero by removal");
                }
                Some(_) => {}
            }
            let replica = self.removals.get(&id).and_then(|r| r.replica.clone());
            if let Some(replica) = replica
                && inventory.container(&replica).is_none()
            {
                self.replica_gone(&id);
            }
        }
        self.refused_removal.retain(|id, _| inventory.service(id).is_some());
        // Frozen replicas of services that no longer ask to be frozen thaw.
        for service_id in self.services() {
            let zero = inventory.service(&service_id).and_then(|s| s.config()).and_then(|c| c.zero);
            if zero.map(|z| z.mode) != Some(ZeroMode::Freeze) {
                self.release(&service_id, "its service no longer scales to zero by freezing");
            }
        }
    }

    /// A service found at zero replicas that asks for removal: park its
    /// ports (in hold mode while a replica may still run).
    fn repark(&mut self, (service_id, service): (&str, &str), ports: &[u16], replica: Option<String>) {
        if self.refused(service_id, service, ports) {
            return;
        }
        if self.dry_run {
            tracing::info!(target: "audit", service = %service, "dry-run: would hold port {} of {service} (at 0 replicas)", join(ports));
            let said = Refusal { ports: ports.to_vec(), reason: "dry run".into(), lasting: true };
            self.refused_removal.insert(service_id.to_string(), said);
            return;
        }
        let mode = if replica.is_some() { ParkMode::Hold } else { ParkMode::Lookup };
        let mut removal = Removal::new(service, ports, Step::Reparking, replica.as_ref(), "found at 0 replicas".into());
        removal.mode = mode;
        self.removals.insert(service_id.to_string(), removal);
        self.work.push(Work::Park { service_id: service_id.to_string(), ports: ports.to_vec(), mode, count: None });
    }

    /// The service no longer asks for removal: back to one replica.
    fn release_removal(&mut self, service_id: &str, reason: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        match r.step {
            Step::Parking => {
                r.abort = true;
                r.forget = true;
            }
            Step::Reparking | Step::Removing => {
                r.come_back.get_or_insert_with(|| reason.to_string());
            }
            Step::Removed => self.restore(service_id, reason),
            Step::Restoring | Step::Unparking => {}
        }
    }

    /// The service is gone from Swarm: unpark its ports, without a record.
    fn forget_removal(&mut self, service_id: &str) {
        let Some(r) = self.removals.get_mut(service_id) else { return };
        r.forget = true;
        match r.step {
            // The step in flight ends first and sees `forget`.
            Step::Parking | Step::Reparking | Step::Removing | Step::Unparking => {}
            Step::Restoring if r.writing => {}
            Step::Removed | Step::Restoring => self.unpark(service_id),
        }
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

    fn record_removal_now(&self, service_id: &str, zero: ZeroOutcome, reason: String) {
        if let Some(r) = self.removals.get(service_id) {
            self.record_removal(service_id, r, zero, reason, None);
        }
    }

    fn record_removal(&self, service_id: &str, r: &Removal, zero: ZeroOutcome, reason: String, wake: Option<Duration>) {
        self.audit.record_zero(&ZeroRecord {
            time_unix_ms: unix_ms(),
            service: r.service.clone(),
            service_id: service_id.to_string(),
            container: r.replica.clone().unwrap_or_default(),
            zero,
            reason,
            docker_us: r.took.map_or(0, |t| t.as_micros() as u64),
            wake_us: wake.map(|w| w.as_micros() as u64),
            ports: r.ports.clone(),
        });
    }
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

impl Removal {
    fn new(service: &str, ports: &[u16], step: Step, replica: Option<&String>, reason: String) -> Removal {
        Removal {
            service: service.to_string(),
            ports: ports.to_vec(),
            step,
            mode: ParkMode::Hold,
            replica: replica.cloned(),
            reason,
            attempt_ns: None,
            come_back: None,
            abort: false,
            writing: false,
            took: None,
            restore_reason: String::new(),
            listened: false,
            since: Instant::now(),
            looked: None,
            looking: false,
            warned_foreign: false,
            forget: false,
        }
    }
}

/// Time since a kernel timestamp (CLOCK_MONOTONIC ns).
fn since_kernel(ns: u64) -> Duration {
    Duration::from_nanos(model::monotonic_ns().saturating_sub(ns))
}

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// Carries out [`Work`]: Docker's pause and unpause, the probe's wake and
/// parked ports, spec writes through the actuator, each on a task of its
/// own that reports a [`Done`].
#[derive(Debug, Clone)]
pub struct ZeroIo {
    freezer: Freezer,
    probe: ProbeHandle,
    done: mpsc::UnboundedSender<Done>,
}

impl ZeroIo {
    /// The I/O of scale to zero; what ends goes to the receiver, for
    /// [`Zero::on_done`].
    pub fn new(freezer: Freezer, probe: ProbeHandle) -> (ZeroIo, mpsc::UnboundedReceiver<Done>) {
        let (done, rx) = mpsc::unbounded_channel();
        (ZeroIo { freezer, probe, done }, rx)
    }

    /// Multi-node mode: `work` was for a node whose agent cannot be
    /// reached; end it as failed.
    pub fn unreachable(&self, work: Work, node: Option<&str>) {
        let why = match node {
            Some(node) => format!("node {node}'s autoscaler agent is not connected to this decider"),
            None => "the inventory places it on no node".to_string(),
        };
        let done = match work {
            Work::Freeze { container } => {
                Done::NotFrozen { container, outcome: ZeroOutcome::Failed, reason: format!("cannot freeze: {why}") }
            }
            Work::Thaw { container } => Done::ThawFailed { container, reason: format!("cannot thaw: {why}") },
            _ => return,
        };
        let _ = self.done.send(done);
    }

    /// Start one piece of work.
    pub fn run(&self, work: Work, actuator: &mut Actuator<DockerWriter>) {
        let (freezer, probe, done) = (self.freezer.clone(), self.probe.clone(), self.done.clone());
        match work {
            Work::Freeze { container } => {
                tokio::spawn(async move {
                    let _ = done.send(freeze(&freezer, &probe, container).await);
                });
            }
            Work::Thaw { container } => {
                tokio::spawn(async move {
                    let result = freezer.thaw(&container).await;
                    // After the unpause, so the wake path waits for nothing; a
                    // wake already fired has disarmed itself.
                    let _ = probe.set_wake(&container, false).await;
                    let _ = done.send(match result {
                        Ok(took) => Done::Thawed { container, took },
                        Err(reason) => Done::ThawFailed { container, reason },
                    });
                });
            }
            Work::Recover { container, service_id, service } => {
                tokio::spawn(async move {
                    if let Ok(true) = freezer.is_paused(&container).await {
                        let unpaused = freezer.thaw(&container).await;
                        let _ = done.send(Done::FoundPaused { container, service_id, service, unpaused });
                    }
                });
            }
            Work::Park { service_id, ports, mode, count } => {
                tokio::spawn(async move {
                    let mut result = Ok(0);
                    for port in &ports {
                        if let Err(reason) = probe.park(*port, mode).await {
                            result = Err(reason);
                            break;
                        }
                    }
                    if let (Ok(_), Some(container)) = (&result, count) {
                        result = probe.open_connections(&container).await;
                    }
                    let _ = done.send(Done::Parked { service_id, ports, mode, result });
                });
            }
            Work::Unpark { service_id, ports } => {
                tokio::spawn(async move {
                    for port in ports {
                        if let Err(reason) = probe.unpark(port).await {
                            tracing::warn!("cannot unpark port {port}: {reason}");
                        }
                    }
                    let _ = done.send(Done::Unparked { service_id });
                });
            }
            Work::Write { service_id, service, to } => {
                let (reply, answer) = oneshot::channel();
                actuator.write_zero(ZeroWrite { service_id: service_id.clone(), service_name: service, to, reply });
                tokio::spawn(async move {
                    let outcome = answer.await.unwrap_or_else(|_| ZeroWritten::Failed("the actuator stopped".into()));
                    let _ = done.send(Done::Written { service_id, to, outcome });
                });
            }
            Work::CheckListening { service_id, ports } => {
                tokio::spawn(async move {
                    let listening =
                        tokio::task::spawn_blocking(move || ports.iter().any(|p| crate::probe::listening(*p)))
                            .await
                            .unwrap_or(false);
                    let _ = done.send(Done::Listening { service_id, listening });
                });
            }
        }
    }
}

/// Check, arm, pause; see the module doc. Also what a node's agent runs
/// for a [`crate::cluster::ZeroCommand::Freeze`].
pub(crate) async fn freeze(freezer: &Freezer, probe: &ProbeHandle, container: String) -> Done {
    let refused = |outcome, reason: String| Done::NotFrozen { container: container.clone(), outcome, reason };
    match freezer.health_check(&container).await {
        Ok(None) => {}
        Ok(Some(test)) => {
            return refused(
                ZeroOutcome::Refused,
                format!(
                    "it has a health check ({}): Docker fails every check of a paused container and Swarm would replace it as unhealthy (moby/moby#46203); start the service with --no-healthcheck, or drop autoscale.min=0",
                    test.join(" ")
                ),
            );
        }
        Err(reason) => return refused(ZeroOutcome::Failed, reason),
    }
    match probe.set_wake(&container, true).await {
        Err(reason) => return refused(ZeroOutcome::Refused, reason),
        Ok(open) if open > 0 => {
            let _ = probe.set_wake(&container, false).await;
            return Done::Busy { container };
        }
        Ok(_) => {}
    }
    match freezer.freeze(&container).await {
        Ok(took) => Done::Frozen { container, took },
        Err(reason) => {
            let _ = probe.set_wake(&container, false).await;
            refused(ZeroOutcome::Failed, reason)
        }
    }
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
