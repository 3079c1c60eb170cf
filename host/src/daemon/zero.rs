//! Scale to zero: a service with `autoscale.min=0` that goes idle keeps its
//! one replica, frozen with Docker's pause (the cgroup freezer), and the
//! kernel wakes it on its first connection.
//!
//! When: the service has one replica in its spec and one running here, and
//! either it has been idle for `autoscale.idle` (no open or newly accepted
//! connection, CPU below `autoscale.cpu.lower`, or [`IDLE_CPU`] without
//! one), or its policy decided 0 and it has been quiet for [`POLICY_QUIET`]
//! (or `idle`, if shorter). A service that keeps receiving requests is
//! never idle, and one without `min=0` never comes here. A policy's 0 for a
//! service above one replica is a scale-in to one first (the guardrails
//! clamp the spec at one).
//!
//! Freezing, in order: refuse a replica with a health check (Docker fails
//! every check of a paused container and Swarm replaces it as unhealthy,
//! moby/moby#46203); arm the probe's wake (the eBPF probe only: the
//! cgroupfs probe cannot see a connection as it happens, so it refuses);
//! give up if a connection is open right now; pause. A connection that is
//! established after the arming pushes a wake event, so none falls between
//! the last reading and the pause: a wake that comes while the pause is in
//! flight thaws the replica as soon as the pause returns.
//!
//! Waking: the kernel completes the TCP handshake of a frozen process and
//! queues the connection; `ebpf/probe.bpf.c` pushes a wake event at once
//! (outside the event budget), and [`Zero::on_wake`] unpauses without a
//! policy call. The replica then answers from its accept queue, and its
//! readings reach the policy again, which scales out as usual. A wake event
//! lost on a full ring buffer is made up by the next sample that shows a
//! connection.
//!
//! Every freeze, thaw and wake is audited with Docker's time and, for a
//! wake, the time from the kernel's connection to the unpause returning
//! ([`crate::swarm::audit::ZeroRecord`], `autoscaler_zero_seconds`).
//! Frozen replicas are thawed when their service leaves scale to zero and
//! when the daemon shuts down: a frozen replica never outlives the daemon
//! that could wake it. A daemon killed before it could thaw leaves its
//! replicas paused with nothing to wake them; the next daemon finds them
//! when it first follows a scale-to-zero replica ([`Zero::recover`]) and
//! unpauses them (they freeze again after their next idle spell).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::model::{self, Metric};
use crate::probe::{ACCEPTED_METRIC, ProbeEvent, ProbeHandle};
use crate::swarm::audit::{ZeroOutcome, ZeroRecord, unix_ms};
use crate::swarm::labels::{ScaleToZero, ServiceConfig};
use crate::swarm::{Audit, Freezer};

/// CPU below which a service without `autoscale.cpu.lower` counts as idle
/// (in the unit of its CPU readings: a fraction of the limit, or cores).
pub const IDLE_CPU: f64 = 0.05;
/// How long a service must have been quiet before a policy's 0 freezes it.
pub const POLICY_QUIET: Duration = Duration::from_secs(5);
/// How long shutdown waits for pauses and unpauses in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The end of a pause or unpause, sent back to the event loop.
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
}

/// Where a replica stands; a running replica has no entry.
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

/// Scale-to-zero state of every replica on this node; driven by the event
/// loop, Docker calls run on their own tasks and report back as [`Done`].
pub struct Zero {
    freezer: Freezer,
    probe: ProbeHandle,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    /// Replicas not simply running, by container id.
    replicas: HashMap<String, Replica>,
    /// Last time each service (by id) was seen busy.
    busy: HashMap<String, Instant>,
    /// Containers never to freeze (health check, probe without wake).
    refused: HashSet<String>,
    /// Where the Docker tasks report.
    done: mpsc::UnboundedSender<Done>,
    /// `--dry-run`: say what would be frozen, freeze nothing.
    dry_run: bool,
}

impl std::fmt::Debug for Zero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zero").field("replicas", &self.replicas).finish_non_exhaustive()
    }
}

impl Zero {
    /// New state; the receiver gets what the Docker tasks report, for
    /// [`Zero::on_done`].
    pub fn new(
        freezer: Freezer,
        probe: ProbeHandle,
        audit: Arc<Audit>,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> (Zero, mpsc::UnboundedReceiver<Done>) {
        let (done, rx) = mpsc::unbounded_channel();
        let zero = Zero {
            freezer,
            probe,
            audit,
            metrics,
            replicas: HashMap::new(),
            busy: HashMap::new(),
            refused: HashSet::new(),
            done,
            dry_run,
        };
        (zero, rx)
    }

    /// Whether the container is frozen or being frozen or thawed: its
    /// readings say nothing about the service's load.
    pub fn is_frozen(&self, container: &str) -> bool {
        self.replicas.contains_key(container)
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
    /// whether the service is busy, freeze it once it has been idle long
    /// enough. `spec` is the replicas in its spec, `running` its task
    /// containers on this node.
    pub fn observe(
        &mut self,
        (service_id, service): (&str, &str),
        config: &ServiceConfig,
        zero: ScaleToZero,
        (spec, running): (u32, &[String]),
        event: &ProbeEvent,
    ) {
        let now = Instant::now();
        let busy = is_busy(event, config);
        if let Some(replica) = self.replicas.get(&event.container_id) {
            // A frozen replica makes no readings of its own; a connection
            // in a sample means the wake event was lost (ring buffer full).
            if busy && replica.phase == Phase::Frozen && event.metric != Metric::Cpu {
                self.busy.insert(service_id.to_string(), now);
                let container = event.container_id.clone();
                self.thaw(&container, Some(event.timestamp_ns), "a connection in a sample (its wake event was lost)");
            }
            return;
        }
        let last = self.busy.entry(service_id.to_string()).or_insert(now);
        if busy {
            *last = now;
            return;
        }
        if now.duration_since(*last) >= zero.idle {
            let lower = config.thresholds.cpu.lower.unwrap_or(IDLE_CPU);
            let reason = format!("idle for {:?} (no connection, CPU below {lower})", zero.idle);
            self.try_freeze((service_id, service), (spec, running), reason);
        }
    }

    /// The service's policy decided 0 replicas; freeze its replica if the
    /// service has been quiet long enough. Returns whether it froze.
    pub fn policy_zero(
        &mut self,
        (service_id, service): (&str, &str),
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
        self.try_freeze((service_id, service), (spec, running), format!("policy: {reason}"))
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
        let (freezer, probe, done, container) =
            (self.freezer.clone(), self.probe.clone(), self.done.clone(), container.clone());
        tokio::spawn(async move {
            let _ = done.send(freeze(&freezer, &probe, container).await);
        });
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
        let (freezer, probe, done, container) =
            (self.freezer.clone(), self.probe.clone(), self.done.clone(), container.to_string());
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

    /// A Docker task ended.
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
                let wake = replica.wake_ns.map(|ns| Duration::from_nanos(model::monotonic_ns().saturating_sub(ns)));
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
                });
            }
            Done::ThawFailed { container, reason } => {
                self.record(&container, ZeroOutcome::Failed, Some(reason), Duration::ZERO, None);
                self.replicas.remove(&container);
            }
        }
    }

    /// A replica of a scale-to-zero service this daemon has just begun to
    /// follow: if it is paused (an earlier daemon froze it and was killed
    /// before it could thaw it), unpause it, since no wake is armed for it.
    pub fn recover(&mut self, (service_id, service): (&str, &str), container: &str) {
        if self.replicas.contains_key(container) || self.dry_run {
            return;
        }
        let (freezer, done) = (self.freezer.clone(), self.done.clone());
        let (container, service_id, service) = (container.to_string(), service_id.to_string(), service.to_string());
        tokio::spawn(async move {
            if let Ok(true) = freezer.is_paused(&container).await {
                let unpaused = freezer.thaw(&container).await;
                let _ = done.send(Done::FoundPaused { container, service_id, service, unpaused });
            }
        });
    }

    /// The container is gone: nothing to thaw.
    pub fn forget(&mut self, container: &str) {
        self.replicas.remove(container);
        self.refused.remove(container);
    }

    /// Docker was away: its containers may be gone or restarted under new
    /// ids. Forget what was frozen and when services were busy; a replica
    /// paused before and still there is found again by [`Zero::recover`]
    /// when the resync tracks it anew, and unpaused.
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

    /// The service no longer scales to zero (labels changed, service gone):
    /// thaw its replicas.
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

    /// Shutdown: let the pauses and unpauses in flight end, then thaw every
    /// frozen replica, within a grace period.
    pub async fn thaw_all(&mut self, done: &mut mpsc::UnboundedReceiver<Done>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for service in self.services() {
            self.release(&service, "the autoscaler is stopping");
        }
        while !self.replicas.is_empty() {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Some(finished)) => self.on_done(finished),
                Ok(None) => break,
                Err(_) => {
                    let left: Vec<&str> = self.replicas.keys().map(String::as_str).collect();
                    tracing::error!(
                        "replicas still frozen at shutdown (run docker unpause on them): {}",
                        left.join(", ")
                    );
                    break;
                }
            }
        }
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
        });
    }
}

/// Check, arm, pause; see the module doc.
async fn freeze(freezer: &Freezer, probe: &ProbeHandle, container: String) -> Done {
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

/// Whether a reading shows work: a connection open or accepted, or CPU at
/// or above the service's lower threshold.
fn is_busy(event: &ProbeEvent, config: &ServiceConfig) -> bool {
    match &event.metric {
        Metric::Connections => event.value > 0.0,
        Metric::Cpu => event.value >= config.thresholds.cpu.lower.unwrap_or(IDLE_CPU),
        Metric::Other(name) if name == ACCEPTED_METRIC => event.value > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Band, EventKind, Thresholds, Unit};

    fn reading(metric: Metric, value: f64) -> ProbeEvent {
        ProbeEvent {
            container_id: "c".into(),
            metric,
            value,
            unit: Unit::Count,
            kind: EventKind::Sample,
            timestamp_ns: 1,
        }
    }

    #[test]
    fn connections_and_cpu_above_the_lower_threshold_are_work() {
        let labels: std::collections::HashMap<String, String> = [
            ("autoscale.enable", "true"),
            ("autoscale.policy", "threshold"),
            ("autoscale.min", "0"),
            ("autoscale.max", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut config = crate::swarm::labels::parse("web", &labels).expect("valid").expect("enabled");
        assert!(is_busy(&reading(Metric::Connections, 1.0), &config));
        assert!(!is_busy(&reading(Metric::Connections, 0.0), &config));
        assert!(is_busy(&reading(Metric::Other(ACCEPTED_METRIC.into()), 2.0), &config));
        assert!(!is_busy(&reading(Metric::Cpu, 0.01), &config));
        assert!(is_busy(&reading(Metric::Cpu, IDLE_CPU), &config));
        config.thresholds = Thresholds { cpu: Band { upper: Some(0.8), lower: Some(0.2) }, ..Default::default() };
        assert!(!is_busy(&reading(Metric::Cpu, 0.1), &config));
        assert!(is_busy(&reading(Metric::Cpu, 0.3), &config));
        assert!(!is_busy(&reading(Metric::Memory, 1e9), &config));
    }
}
