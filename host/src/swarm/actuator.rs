//! The actuator: the only code that writes to Swarm.
//!
//! The daemon hands it every decision a policy makes ([`Actuator::submit`]);
//! whatever the policy returned, the actuator
//! - clamps the target to `[autoscale.min, autoscale.max]` and limits the
//!   change to `autoscale.step.max` replicas ([`judge`]);
//! - applies the cooldowns: a scale-up waits `cooldown.up` and a scale-down
//!   waits `cooldown.down` after the last scale action of either kind;
//! - coalesces per service: one worker task per service, at most one update
//!   in flight, and a decision that arrives while one is in flight replaces
//!   any decision still waiting (the latest target wins; the replaced one
//!   is audited as superseded); no update when the target equals the
//!   current replicas;
//! - reads the current spec and its version right before writing, and skips
//!   a decision made on replicas that are no longer current (an operator's
//!   `docker service scale` is respected, never overwritten by a stale
//!   target); a version conflict on write means the same: read again;
//! - survives Docker going away: backs off and retries, and never acts on a
//!   decision whose triggering event is older than `--max-decision-age`;
//! - with `--dry-run`, judges and audits everything and writes nothing; a
//!   would-be scale starts the cooldowns as a real one would, so the audit
//!   shows the cadence the daemon would act at.
//!
//! The guardrail rules are the pure function [`judge`], tested with a fake
//! clock; the Docker I/O is the thin [`Writer`] trait ([`DockerWriter`] in
//! production, a fake in the tests of the worker).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated};
use bollard::query_parameters::UpdateServiceOptions;
use tokio::sync::Notify;

use super::audit::{Audit, AuditEvent, AuditRecord, Outcome, unix_ms};
use super::client::{Backoff, is_not_found, is_unreachable, is_version_conflict};
use super::inventory::spec_replicas;
use super::labels::ServiceConfig;
use crate::model::{Decision, Event};

/// Version conflicts in a row before a decision is given up.
const MAX_CONFLICTS: u32 = 5;

/// Daemon-wide actuator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ActuatorOptions {
    /// Judge and audit, never write.
    pub dry_run: bool,
    /// Decisions whose triggering event is older than this are dropped.
    pub max_decision_age: Duration,
    /// Cooldown after a scale action before a scale-up, unless the service
    /// sets `autoscale.cooldown.up`.
    pub cooldown_up: Duration,
    /// Cooldown after a scale action before a scale-down, unless the
    /// service sets `autoscale.cooldown.down`.
    pub cooldown_down: Duration,
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            dry_run: false,
            max_decision_age: Duration::from_secs(10),
            cooldown_up: Duration::from_secs(10),
            cooldown_down: Duration::from_secs(60),
        }
    }
}

/// The guardrails of one service, defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Least time from the last scale action to a scale-up.
    pub cooldown_up: Duration,
    /// Least time from the last scale action to a scale-down.
    pub cooldown_down: Duration,
    /// Most replicas added or removed at once.
    pub step_max: Option<u32>,
}

impl Limits {
    /// A service's limits, with the daemon's default cooldowns where the
    /// service sets none.
    pub fn new(config: &ServiceConfig, options: &ActuatorOptions) -> Limits {
        Limits {
            min: config.min,
            max: config.max,
            cooldown_up: config.cooldown_up.unwrap_or(options.cooldown_up),
            cooldown_down: config.cooldown_down.unwrap_or(options.cooldown_down),
            step_max: config.step_max,
        }
    }
}

/// A policy's decision with everything needed to judge and audit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Swarm service id.
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// The policy that decided.
    pub policy: String,
    /// The event the policy decided on.
    pub event: Event,
    /// What it decided.
    pub decision: Decision,
    /// The replicas the policy saw (`State::current_replicas`).
    pub seen: u32,
    /// The service's guardrails when it decided.
    pub limits: Limits,
    /// CLOCK_MONOTONIC ns when the policy answered.
    pub decided_ns: u64,
}

/// Something a guardrail changed in a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// Above `autoscale.max`.
    ClampedToMax {
        /// What was asked.
        asked: u32,
        /// The bound.
        max: u32,
    },
    /// Below `autoscale.min`.
    ClampedToMin {
        /// What was asked.
        asked: u32,
        /// The bound.
        min: u32,
    },
    /// More than `autoscale.step.max` away from the current replicas.
    StepLimited {
        /// The target before the limit.
        asked: u32,
        /// The target after it.
        allowed: u32,
        /// The limit.
        step_max: u32,
    },
}

impl std::fmt::Display for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Adjustment::ClampedToMax { asked, max } => write!(f, "clamped to max {max} (asked {asked})"),
            Adjustment::ClampedToMin { asked, min } => write!(f, "clamped to min {min} (asked {asked})"),
            Adjustment::StepLimited { asked, allowed, step_max } => {
                write!(f, "step limit {step_max}: {asked} -> {allowed}")
            }
        }
    }
}

/// Why a decision is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The triggering event is older than the bound.
    Stale {
        /// Its age.
        age: Duration,
        /// The bound.
        bound: Duration,
    },
    /// The replicas changed since the policy looked (an operator, or our
    /// own previous update): the decision is stale.
    ReplicasChanged {
        /// What the policy saw.
        seen: u32,
        /// What the spec says now.
        now: u32,
    },
    /// After the guardrails the target is the current replica count.
    Unchanged {
        /// The current replicas.
        current: u32,
    },
    /// Too soon after the last scale action.
    Cooldown {
        /// `up` or `down`.
        direction: &'static str,
        /// Time still to wait.
        remaining: Duration,
    },
    /// A newer decision arrived before this one was handled.
    Superseded,
    /// The service is gone, or is no longer a replicated service.
    ServiceGone,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Stale { age, bound } => write!(f, "stale: the event is {age:.1?} old (bound {bound:?})"),
            Skip::ReplicasChanged { seen, now } => {
                write!(f, "replicas changed since the policy decided ({seen} -> {now}); the newer value stands")
            }
            Skip::Unchanged { current } => write!(f, "already at {current} replicas"),
            Skip::Cooldown { direction, remaining } => {
                write!(f, "cooldown.{direction}: {remaining:.1?} to go")
            }
            Skip::Superseded => write!(f, "superseded by a newer decision"),
            Skip::ServiceGone => write!(f, "the service is gone or no longer replicated"),
        }
    }
}

impl Skip {
    /// Skips that every busy service produces all the time (a cooldown
    /// running, a target already reached, a newer decision): the text log
    /// shows them at debug level only.
    pub fn is_routine(&self) -> bool {
        matches!(self, Skip::Cooldown { .. } | Skip::Unchanged { .. } | Skip::Superseded | Skip::ReplicasChanged { .. })
    }
}

/// The guardrails' verdict on one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The target after clamping and the step limit.
    pub target: u32,
    /// What the guardrails changed.
    pub adjustments: Vec<Adjustment>,
    /// `None`: apply `target`. `Some`: do not, and why.
    pub skip: Option<Skip>,
}

/// Judge a decision against the current replicas, the last scale action
/// (CLOCK_MONOTONIC ns) and the clock `now_ns`. Pure: no I/O, no clock.
pub fn judge(request: &Request, current: u32, last_scale_ns: Option<u64>, now_ns: u64, max_age: Duration) -> Judgement {
    let limits = &request.limits;
    let asked = request.decision.target_replicas;
    let mut adjustments = Vec::new();
    let mut target = asked;
    if target > limits.max {
        adjustments.push(Adjustment::ClampedToMax { asked, max: limits.max });
        target = limits.max;
    }
    if target < limits.min {
        adjustments.push(Adjustment::ClampedToMin { asked, min: limits.min });
        target = limits.min;
    }
    if let Some(step_max) = limits.step_max {
        let allowed = if target > current {
            target.min(current.saturating_add(step_max))
        } else {
            target.max(current.saturating_sub(step_max))
        };
        if allowed != target {
            adjustments.push(Adjustment::StepLimited { asked: target, allowed, step_max });
            target = allowed;
        }
    }
    let age = Duration::from_nanos(now_ns.saturating_sub(request.event.timestamp_ns));
    let skip = if age > max_age {
        Some(Skip::Stale { age, bound: max_age })
    } else if current != request.seen {
        Some(Skip::ReplicasChanged { seen: request.seen, now: current })
    } else if target == current {
        Some(Skip::Unchanged { current })
    } else {
        let (direction, cooldown) =
            if target > current { ("up", limits.cooldown_up) } else { ("down", limits.cooldown_down) };
        let since = last_scale_ns.map(|last| Duration::from_nanos(now_ns.saturating_sub(last)));
        match since {
            Some(since) if since < cooldown => Some(Skip::Cooldown { direction, remaining: cooldown - since }),
            _ => None,
        }
    };
    Judgement { target, adjustments, skip }
}

/// A service's spec as read right before a write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// Replicas in the spec; `None` for a service that is not replicated.
    pub replicas: Option<u32>,
    /// The spec's version index, sent back with the update.
    pub version: u64,
    /// The whole spec, written back with only the replicas changed.
    pub spec: ServiceSpec,
}

/// Why a read or write failed, as the worker needs to know it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Docker did not answer: back off and retry.
    #[error("docker is unreachable: {0}")]
    Unreachable(String),
    /// The spec changed since it was read: read again.
    #[error("the service changed since it was read (version conflict)")]
    Conflict,
    /// The service does not exist.
    #[error("the service does not exist")]
    NotFound,
    /// Anything else Docker refused.
    #[error("docker refused: {0}")]
    Other(String),
}

impl From<bollard::errors::Error> for WriteError {
    fn from(err: bollard::errors::Error) -> Self {
        if is_version_conflict(&err) {
            WriteError::Conflict
        } else if is_not_found(&err) {
            WriteError::NotFound
        } else if is_unreachable(&err) {
            WriteError::Unreachable(err.to_string())
        } else {
            WriteError::Other(err.to_string())
        }
    }
}

/// Reads and writes a service's spec: the actuator's only I/O.
pub trait Writer: Send + Sync + 'static {
    /// The service's current spec and version.
    fn read(&self, service_id: &str) -> impl Future<Output = Result<Current, WriteError>> + Send;
    /// Write `current.spec` with `replicas`, guarded by `current.version`.
    fn scale(
        &self,
        service_id: &str,
        current: Current,
        replicas: u32,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// The production [`Writer`]: bollard's service inspect and update.
#[derive(Debug, Clone)]
pub struct DockerWriter {
    /// The connected engine.
    pub docker: Docker,
}

impl Writer for DockerWriter {
    async fn read(&self, service_id: &str) -> Result<Current, WriteError> {
        let service = self.docker.inspect_service(service_id, None).await?;
        let spec = service.spec.unwrap_or_default();
        let replicas = spec_replicas(&spec);
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        Ok(Current { replicas, version, spec })
    }

    async fn scale(&self, service_id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
        let mut spec = current.spec;
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }),
            ..Default::default()
        });
        let version = i32::try_from(current.version)
            .map_err(|_| WriteError::Other(format!("service version {} does not fit the API", current.version)))?;
        let options = UpdateServiceOptions { version, ..Default::default() };
        self.docker.update_service(service_id, spec, options, None).await?;
        Ok(())
    }
}

/// One service's pending decision and its worker's wake-up.
#[derive(Debug, Default)]
struct Mailbox {
    /// The decision waiting to be handled; a newer one replaces it.
    pending: Mutex<Option<Request>>,
    /// Wakes the worker.
    notify: Notify,
    /// Set when the service is retired: the worker finishes and exits.
    closed: AtomicBool,
}

impl Mailbox {
    fn take(&self) -> Option<Request> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What the workers share.
struct Shared<W> {
    /// Docker access.
    writer: W,
    /// Settings.
    options: ActuatorOptions,
    /// The audit trail.
    audit: Arc<Audit>,
    /// CLOCK_MONOTONIC ns of the last scale action (or dry-run would-be
    /// action) per service id.
    last_scale: Mutex<HashMap<String, u64>>,
    /// The clock: `probe::monotonic_ns` in production, fake in tests.
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// Per-service workers that apply decisions under the guardrails.
pub struct Actuator<W: Writer> {
    /// State shared with the workers.
    shared: Arc<Shared<W>>,
    /// Mailbox of each service that has a worker.
    mailboxes: HashMap<String, Arc<Mailbox>>,
}

impl<W: Writer> std::fmt::Debug for Actuator<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actuator")
            .field("options", &self.shared.options)
            .field("services", &self.mailboxes.len())
            .finish_non_exhaustive()
    }
}

impl<W: Writer> Actuator<W> {
    /// An actuator writing through `writer`, auditing to `audit`.
    pub fn new(writer: W, options: ActuatorOptions, audit: Arc<Audit>) -> Self {
        Self::with_clock(writer, options, audit, Arc::new(crate::model::monotonic_ns))
    }

    /// [`Actuator::new`] with another clock (tests).
    pub fn with_clock(
        writer: W,
        options: ActuatorOptions,
        audit: Arc<Audit>,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let shared = Arc::new(Shared { writer, options, audit, last_scale: Mutex::default(), clock });
        Actuator { shared, mailboxes: HashMap::new() }
    }

    /// The settings.
    pub fn options(&self) -> &ActuatorOptions {
        &self.shared.options
    }

    /// Hand over a decision. Never waits: the service's worker picks it up;
    /// a decision still waiting for that worker is replaced (and audited as
    /// superseded).
    pub fn submit(&mut self, request: Request) {
        let mailbox = self
            .mailboxes
            .entry(request.service_id.clone())
            .or_insert_with(|| {
                let mailbox = Arc::new(Mailbox::default());
                tokio::spawn(worker(self.shared.clone(), mailbox.clone()));
                mailbox
            })
            .clone();
        let replaced = mailbox.pending.lock().unwrap_or_else(|p| p.into_inner()).replace(request);
        mailbox.notify.notify_one();
        if let Some(old) = replaced {
            self.shared.audit_skip(&old, None, None, Vec::new(), Skip::Superseded);
        }
    }

    /// The service is gone or no longer autoscaled: drop its waiting
    /// decision and end its worker once any update in flight is done.
    pub fn retire(&mut self, service_id: &str) {
        if let Some(mailbox) = self.mailboxes.remove(service_id) {
            mailbox.closed.store(true, Ordering::Release);
            if let Some(old) = mailbox.take() {
                self.shared.audit_skip(&old, None, None, Vec::new(), Skip::ServiceGone);
            }
            mailbox.notify.notify_one();
        }
    }

    /// When this service was last scaled (CLOCK_MONOTONIC ns), for the
    /// policy's `State::last_scale_ns`.
    pub fn last_scale_ns(&self, service_id: &str) -> Option<u64> {
        self.shared.last_scale.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).copied()
    }
}

/// One service's worker: handles the latest decision, one at a time.
async fn worker<W: Writer>(shared: Arc<Shared<W>>, mailbox: Arc<Mailbox>) {
    loop {
        mailbox.notify.notified().await;
        while let Some(request) = mailbox.take() {
            shared.handle(request, &mailbox).await;
        }
        if mailbox.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

impl<W: Writer> Shared<W> {
    /// Apply one decision: read, judge, write; retry on conflicts and while
    /// Docker is away, as long as the decision is fresh and not superseded.
    async fn handle(&self, mut request: Request, mailbox: &Mailbox) {
        let mut backoff = Backoff::new();
        let mut conflicts = 0;
        // The target of a write whose answer was lost (Docker went away
        // mid-request): if a re-read shows it, it was applied.
        let mut attempted: Option<(u32, u32)> = None;
        loop {
            if let Some(newer) = mailbox.take() {
                self.audit_skip(&request, None, None, Vec::new(), Skip::Superseded);
                request = newer;
                attempted = None;
            }
            let current = match self.writer.read(&request.service_id).await {
                Ok(current) => current,
                Err(WriteError::Unreachable(err)) => {
                    if self.stale(&request) {
                        let age = self.age(&request);
                        let bound = self.options.max_decision_age;
                        self.audit_skip(&request, None, None, Vec::new(), Skip::Stale { age, bound });
                        return;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(service = %request.service_name, "cannot read the service: {err}; retrying in {delay:?}");
                    // Wake early for a newer decision; it is picked up above.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = mailbox.notify.notified() => mailbox.notify.notify_one(),
                    }
                    continue;
                }
                Err(WriteError::NotFound) => {
                    self.audit_skip(&request, None, None, Vec::new(), Skip::ServiceGone);
                    return;
                }
                Err(err) => {
                    self.audit(&request, Outcome::Failed, None, None, Vec::new(), Some(err.to_string()));
                    return;
                }
            };
            let Some(replicas) = current.replicas else {
                self.audit_skip(&request, None, None, Vec::new(), Skip::ServiceGone);
                return;
            };
            if let Some((from, to)) = attempted
                && replicas == to
            {
                self.record_scale(&request.service_id);
                self.audit(&request, Outcome::Applied, Some(from), Some(to), Vec::new(), None);
                return;
            }
            let now = (self.clock)();
            let last = self.last_scale_ns(&request.service_id);
            let judgement = judge(&request, replicas, last, now, self.options.max_decision_age);
            let Judgement { target, adjustments, skip } = judgement;
            if let Some(skip) = skip {
                self.audit_skip(&request, Some(replicas), Some(target), adjustments, skip);
                return;
            }
            if self.options.dry_run {
                self.record_scale(&request.service_id);
                self.audit(&request, Outcome::DryRun, Some(replicas), Some(target), adjustments, None);
                return;
            }
            match self.writer.scale(&request.service_id, current, target).await {
                Ok(()) => {
                    self.record_scale(&request.service_id);
                    self.audit(&request, Outcome::Applied, Some(replicas), Some(target), adjustments, None);
                    return;
                }
                Err(WriteError::Conflict) if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    tracing::debug!(service = %request.service_name, "version conflict on update; reading again");
                }
                Err(WriteError::Unreachable(err)) => {
                    attempted = Some((replicas, target));
                    let delay = backoff.next_delay();
                    tracing::warn!(service = %request.service_name, "cannot update the service: {err}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    self.audit(
                        &request,
                        Outcome::Failed,
                        Some(replicas),
                        Some(target),
                        adjustments,
                        Some(err.to_string()),
                    );
                    return;
                }
            }
        }
    }

    fn age(&self, request: &Request) -> Duration {
        Duration::from_nanos((self.clock)().saturating_sub(request.event.timestamp_ns))
    }

    fn stale(&self, request: &Request) -> bool {
        self.age(request) > self.options.max_decision_age
    }

    fn last_scale_ns(&self, service_id: &str) -> Option<u64> {
        self.last_scale.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).copied()
    }

    fn record_scale(&self, service_id: &str) {
        let now = (self.clock)();
        self.last_scale.lock().unwrap_or_else(|p| p.into_inner()).insert(service_id.to_string(), now);
    }

    fn audit_skip(
        &self,
        request: &Request,
        from: Option<u32>,
        to: Option<u32>,
        adjustments: Vec<Adjustment>,
        skip: Skip,
    ) {
        let routine = skip.is_routine();
        self.record(request, Outcome::Skipped, from, to, adjustments, Some(skip.to_string()), routine);
    }

    fn audit(
        &self,
        request: &Request,
        outcome: Outcome,
        from: Option<u32>,
        to: Option<u32>,
        adjustments: Vec<Adjustment>,
        skip: Option<String>,
    ) {
        self.record(request, outcome, from, to, adjustments, skip, false);
    }

    #[expect(clippy::too_many_arguments, reason = "one flat record; callers go through audit and audit_skip")]
    fn record(
        &self,
        request: &Request,
        outcome: Outcome,
        from: Option<u32>,
        to: Option<u32>,
        adjustments: Vec<Adjustment>,
        skip: Option<String>,
        routine: bool,
    ) {
        let now = (self.clock)();
        let since_event = |t: u64| t.saturating_sub(request.event.timestamp_ns) / 1000;
        self.audit.record(&AuditRecord {
            time_unix_ms: unix_ms(),
            service: request.service_name.clone(),
            service_id: request.service_id.clone(),
            policy: request.policy.clone(),
            outcome,
            seen: request.seen,
            from,
            to,
            requested: request.decision.target_replicas,
            reason: request.decision.reason.clone(),
            guardrails: adjustments.iter().map(ToString::to_string).collect(),
            skip,
            routine,
            event: AuditEvent::from_event(&request.event),
            event_to_decision_us: since_event(request.decided_ns),
            event_to_outcome_us: since_event(now),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, Metric, Unit};
    use std::sync::atomic::AtomicU64;

    const SEC: u64 = 1_000_000_000;

    fn limits() -> Limits {
        Limits {
            min: 1,
            max: 5,
            cooldown_up: Duration::from_secs(10),
            cooldown_down: Duration::from_secs(60),
            step_max: None,
        }
    }

    fn request(seen: u32, target: u32, event_ns: u64) -> Request {
        Request {
            service_id: "s1".into(),
            service_name: "web".into(),
            policy: "threshold".into(),
            event: Event {
                metric: Metric::Cpu,
                value: 0.9,
                unit: Unit::FractionOfLimit,
                kind: EventKind::Sample,
                container_id: "c1".into(),
                service_id: "s1".into(),
                service_name: "web".into(),
                timestamp_ns: event_ns,
            },
            decision: Decision { target_replicas: target, reason: "test".into() },
            seen,
            limits: limits(),
            decided_ns: event_ns,
        }
    }

    const AGE: Duration = Duration::from_secs(10);

    #[test]
    fn applies_a_plain_decision() {
        let j = judge(&request(2, 3, 100 * SEC), 2, None, 100 * SEC, AGE);
        assert_eq!(j, Judgement { target: 3, adjustments: vec![], skip: None });
    }

    #[test]
    fn clamps_to_bounds_whatever_the_policy_says() {
        let j = judge(&request(2, 50, 0), 2, None, 0, AGE);
        assert_eq!(j.target, 5);
        assert_eq!(j.adjustments, [Adjustment::ClampedToMax { asked: 50, max: 5 }]);
        assert_eq!(j.skip, None);
        let j = judge(&request(2, 0, 0), 2, None, 0, AGE);
        assert_eq!(j.target, 1);
        assert_eq!(j.adjustments, [Adjustment::ClampedToMin { asked: 0, min: 1 }]);
        // Clamped onto the current value: nothing to do.
        let j = judge(&request(5, 9, 0), 5, None, 0, AGE);
        assert_eq!(j.skip, Some(Skip::Unchanged { current: 5 }));
    }

    #[test]
    fn step_limit_bounds_each_change() {
        let mut r = request(1, 5, 0);
        r.limits.step_max = Some(2);
        let j = judge(&r, 1, None, 0, AGE);
        assert_eq!(j.target, 3);
        assert_eq!(j.adjustments, [Adjustment::StepLimited { asked: 5, allowed: 3, step_max: 2 }]);
        let mut r = request(5, 1, 0);
        r.limits.step_max = Some(1);
        assert_eq!(judge(&r, 5, None, 0, AGE).target, 4);
    }

    #[test]
    fn cooldowns_are_separate_for_up_and_down() {
        let last = Some(100 * SEC);
        // 5 s after a scale: up waits 10 s, down waits 60 s.
        let j = judge(&request(2, 3, 105 * SEC), 2, last, 105 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::Cooldown { direction: "up", remaining: Duration::from_secs(5) }));
        let j = judge(&request(2, 3, 110 * SEC), 2, last, 110 * SEC, AGE);
        assert_eq!(j.skip, None, "up cooldown over after 10 s");
        let j = judge(&request(2, 1, 110 * SEC), 2, last, 110 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::Cooldown { direction: "down", remaining: Duration::from_secs(50) }));
        let j = judge(&request(2, 1, 160 * SEC), 2, last, 160 * SEC, AGE);
        assert_eq!(j.skip, None, "down cooldown over after 60 s");
    }

    #[test]
    fn stale_decisions_and_changed_replicas_are_not_applied() {
        let j = judge(&request(2, 3, 100 * SEC), 2, None, 111 * SEC, AGE);
        assert!(matches!(j.skip, Some(Skip::Stale { .. })), "{j:?}");
        // An operator scaled to 4 after the policy saw 2: 3 would undo it.
        let j = judge(&request(2, 3, 100 * SEC), 4, None, 100 * SEC, AGE);
        assert_eq!(j.skip, Some(Skip::ReplicasChanged { seen: 2, now: 4 }));
    }

    /// A fake Swarm service: replicas, version, and scripted failures.
    #[derive(Default)]
    struct FakeService {
        replicas: u32,
        version: u64,
        /// Before the next write lands, an "operator" sets this many replicas.
        operator_scale: Option<u32>,
        /// Reads and writes fail as unreachable while this is > 0.
        unreachable: u32,
        writes: Vec<u32>,
        reads: u32,
    }

    #[derive(Clone, Default)]
    struct FakeWriter(Arc<Mutex<FakeService>>);

    impl Writer for FakeWriter {
        async fn read(&self, _: &str) -> Result<Current, WriteError> {
            let mut s = self.0.lock().expect("lock");
            s.reads += 1;
            if s.unreachable > 0 {
                s.unreachable -= 1;
                return Err(WriteError::Unreachable("connection refused".into()));
            }
            Ok(Current { replicas: Some(s.replicas), version: s.version, spec: ServiceSpec::default() })
        }

        async fn scale(&self, _: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
            // Let other tasks run, as a real request would.
            tokio::task::yield_now().await;
            let mut s = self.0.lock().expect("lock");
            if let Some(n) = s.operator_scale.take() {
                s.replicas = n;
                s.version += 1;
            }
            if current.version != s.version {
                return Err(WriteError::Conflict);
            }
            s.replicas = replicas;
            s.version += 1;
            s.writes.push(replicas);
            Ok(())
        }
    }

    fn actuator(fake: &FakeWriter, dry_run: bool, clock: Arc<AtomicU64>) -> (Actuator<FakeWriter>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = Arc::new(Audit::to_file(&dir.path().join("audit.jsonl")).expect("audit"));
        let options = ActuatorOptions { dry_run, ..ActuatorOptions::default() };
        let clock_fn: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(move || clock.load(Ordering::SeqCst));
        (Actuator::with_clock(fake.clone(), options, audit, clock_fn), dir)
    }

    fn audit_lines(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn writes_the_target_and_records_the_scale() {
        let fake = FakeWriter::default();
        fake.0.lock().expect("lock").replicas = 1;
        let clock = Arc::new(AtomicU64::new(100 * SEC));
        let (mut act, dir) = actuator(&fake, false, clock.clone());
        act.submit(request(1, 2, 100 * SEC));
        settle().await;
        assert_eq!(fake.0.lock().expect("lock").writes, [2]);
        assert_eq!(act.last_scale_ns("s1"), Some(100 * SEC));
        let lines = audit_lines(&dir);
        assert_eq!(lines[0]["outcome"], "applied");
        assert_eq!((lines[0]["from"].as_u64(), lines[0]["to"].as_u64()), (Some(1), Some(2)));
        // The next decision within cooldown.up is skipped and audited.
        clock.store(105 * SEC, Ordering::SeqCst);
        act.submit(request(2, 3, 105 * SEC));
        settle().await;
        assert_eq!(fake.0.lock().expect("lock").writes, [2]);
        let lines = audit_lines(&dir);
        assert_eq!(lines[1]["outcome"], "skipped");
        assert!(lines[1]["skip"].as_str().is_some_and(|s| s.contains("cooldown.up")), "{}", lines[1]);
    }

    #[tokio::test]
    async fn an_operators_scale_between_read_and_write_is_respected() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 2;
            s.operator_scale = Some(4);
        }
        let clock = Arc::new(AtomicU64::new(0));
        let (mut act, dir) = actuator(&fake, false, clock);
        act.submit(request(2, 3, 0));
        settle().await;
        let s = fake.0.lock().expect("lock");
        assert_eq!(s.replicas, 4, "the operator's value stands");
        assert!(s.writes.is_empty(), "no stale write: {:?}", s.writes);
        let lines = audit_lines(&dir);
        assert_eq!(lines.len(), 1);
        assert!(lines[0]["skip"].as_str().is_some_and(|s| s.contains("replicas changed")), "{}", lines[0]);
    }

    #[tokio::test]
    async fn dry_run_writes_nothing_but_audits() {
        let fake = FakeWriter::default();
        fake.0.lock().expect("lock").replicas = 1;
        let (mut act, dir) = actuator(&fake, true, Arc::new(AtomicU64::new(0)));
        act.submit(request(1, 3, 0));
        settle().await;
        assert!(fake.0.lock().expect("lock").writes.is_empty());
        let lines = audit_lines(&dir);
        assert_eq!(lines[0]["outcome"], "dry-run");
        assert_eq!(lines[0]["to"], 3);
    }

    #[tokio::test]
    async fn retries_while_docker_is_away_then_applies() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.unreachable = 3;
        }
        let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
        act.submit(request(1, 2, 0));
        // Back-off: 100 + 200 + 400 ms.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let s = fake.0.lock().expect("lock");
        assert_eq!(s.writes, [2]);
        assert_eq!(s.reads, 4);
        assert_eq!(audit_lines(&dir)[0]["outcome"], "applied");
    }

    #[tokio::test]
    async fn a_decision_that_ages_while_docker_is_away_is_dropped() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.unreachable = u32::MAX;
        }
        let clock = Arc::new(AtomicU64::new(0));
        let (mut act, dir) = actuator(&fake, false, clock.clone());
        act.submit(request(1, 2, 0));
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Docker comes back 20 s of (fake) monotonic time later.
        clock.store(20 * SEC, Ordering::SeqCst);
        fake.0.lock().expect("lock").unreachable = 0;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(fake.0.lock().expect("lock").writes.is_empty());
        let lines = audit_lines(&dir);
        assert_eq!(lines.len(), 1);
        assert!(lines[0]["skip"].as_str().is_some_and(|s| s.starts_with("stale")), "{}", lines[0]);
    }

    #[tokio::test]
    async fn latest_decision_wins_while_one_is_in_flight() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.unreachable = 2; // keeps the first decision in flight for a while
        }
        let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
        act.submit(request(1, 2, 0));
        tokio::task::yield_now().await;
        act.submit(request(1, 3, 0));
        act.submit(request(1, 4, 0));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(fake.0.lock().expect("lock").writes, [4], "one write, with the latest target");
        let outcomes: Vec<String> = audit_lines(&dir).iter().map(|l| l["outcome"].to_string()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.contains("applied")).count(), 1);
        assert_eq!(outcomes.iter().filter(|o| o.contains("skipped")).count(), 2, "{outcomes:?}");
    }
}
