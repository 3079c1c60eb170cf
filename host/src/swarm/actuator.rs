//! The actuator: the only code that writes a scaled service's spec (the
//! lease labels on the autoscaler's own service are `cluster::lease`'s).
//!
//! The daemon hands it every decision a policy makes ([`Actuator::submit`]);
//! whatever the policy returned, the actuator
//! - judges it with the pure guardrails ([`super::guardrails::judge`]:
//!   bounds, step limit, staleness, cooldowns, holds);
//! - coalesces per service: one worker task per service, at most one update
//!   in flight, and a decision that arrives while one is in flight replaces
//!   any decision still waiting (the latest target wins; the replaced one
//!   is audited as superseded);
//! - reads the current spec and its version right before writing, and skips
//!   a decision made on replicas that are no longer current (an operator's
//!   `docker service scale` is respected); a version conflict on write means
//!   the same: read again;
//! - survives Docker going away: backs off and retries, and never acts on a
//!   decision whose triggering event is older than `--max-decision-age`. A
//!   write whose answer was lost is settled by the next read: if Swarm shows
//!   its target, it counts as applied (and starts the cooldown) even when a
//!   newer decision is already waiting;
//! - takes the last scale from Swarm itself (the spec's previous replicas
//!   and update time) the first time it reads a service, so cooldowns
//!   survive a restart of the daemon;
//! - with `--dry-run`, judges and audits everything and writes nothing; a
//!   would-be scale starts the cooldowns as a real one would;
//! - records each scale, and each hold, at the time its policy answered:
//!   cooldowns count between decisions, so that `host replay` reaches the
//!   same verdicts (see [`super::guardrails`]).
//!
//! Scale to zero by removal (`autoscale.zero=remove`) writes through the
//! same worker, ahead of any policy decision waiting there
//! ([`Actuator::write_zero`]): the last replica away (1 -> 0) or one back
//! (0 -> 1). Those writes are not judged by the guardrails (the daemon's
//! zero path decided: idle for `autoscale.idle`, or a policy's 0 after a
//! quiet spell, and a wake must not wait for a cooldown), and are not
//! recorded as scales: the policy's cooldowns count from its own, so it
//! scales out after a wake as it would have otherwise.
//!
//! Each decision ends in one [`Verdict`], audited once by the worker.
//! Shutdown drains: [`Actuator::shutdown`] closes every mailbox and waits
//! for the workers within a grace period, then names what was left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;

use super::audit::{Audit, Verdict};
use super::client::Backoff;
use super::guardrails::{ActuatorOptions, History, Judgement, Limits, Request, Skip, judge};
use super::labels::ServiceConfig;
use super::writer::{Current, WriteError, Writer};
use crate::model::Action;

/// Version conflicts in a row before a decision is given up.
const MAX_CONFLICTS: u32 = 5;
/// How long a scale-to-zero write is retried while Docker is away.
const ZERO_WRITE_PATIENCE: Duration = Duration::from_secs(60);

/// A scale-to-zero write: a removed service's last replica away, or one
/// back. See the module doc.
#[derive(Debug)]
pub struct ZeroWrite {
    /// The Swarm service id.
    pub service_id: String,
    /// Its name, for log lines.
    pub service_name: String,
    /// 0: from one replica to none; 1: from none to one.
    pub to: u32,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<ZeroWritten>,
}

/// How a [`ZeroWrite`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ZeroWritten {
    /// The spec now says `replicas`: the target, written in `wrote` (`None`
    /// when it was there already), or another count an operator set, left
    /// as it is (a removal finds 1 only: more replicas are not removed).
    Spec {
        /// Replicas in the spec.
        replicas: u32,
        /// Docker's update, when this write made it.
        wrote: Option<Duration>,
    },
    /// Not written: why.
    Failed(String),
}

/// A decision with the service configuration it was made under.
#[derive(Debug, Clone)]
struct Pending {
    /// The decision.
    request: Request,
    /// The service's labels when the policy decided.
    config: Arc<ServiceConfig>,
}

/// One service's pending decision and its worker's wake-up.
#[derive(Debug, Default)]
struct Mailbox {
    /// The decision waiting to be handled; a newer one replaces it.
    pending: Mutex<Option<Pending>>,
    /// Wakes the worker.
    notify: Notify,
    /// Set when the service is retired or the daemon stops: the worker
    /// finishes what it holds and exits.
    closed: AtomicBool,
    /// A scale-to-zero write, handled before any decision.
    zero: Mutex<Option<ZeroWrite>>,
}

impl Mailbox {
    fn take(&self) -> Option<Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn take_zero(&self) -> Option<ZeroWrite> {
        self.zero.lock().unwrap_or_else(|p| p.into_inner()).take()
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
    /// Scale history per service id (CLOCK_MONOTONIC ns).
    history: Mutex<HashMap<String, History>>,
    /// The clock: `model::monotonic_ns` in production, fake in tests.
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// Per-service workers that apply decisions under the guardrails.
pub struct Actuator<W: Writer> {
    /// State shared with the workers.
    shared: Arc<Shared<W>>,
    /// Mailbox of each service that has a worker.
    mailboxes: HashMap<String, Arc<Mailbox>>,
    /// The workers, joined on shutdown.
    workers: JoinSet<()>,
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
        let shared = Arc::new(Shared { writer, options, audit, history: Mutex::default(), clock });
        Actuator { shared, mailboxes: HashMap::new(), workers: JoinSet::new() }
    }

    /// The settings.
    pub fn options(&self) -> &ActuatorOptions {
        &self.shared.options
    }

    /// Hand over a decision made under `config`. Never waits: the
    /// service's worker picks it up; a decision still waiting for that
    /// worker is replaced (and audited as superseded).
    pub fn submit(&mut self, request: Request, config: Arc<ServiceConfig>) {
        let mailbox = self.mailbox(request.service_id());
        let replaced = mailbox.pending.lock().unwrap_or_else(|p| p.into_inner()).replace(Pending { request, config });
        mailbox.notify.notify_one();
        if let Some(old) = replaced {
            self.shared.audit.record(&old.request, Verdict::skipped(Skip::Superseded), (self.shared.clock)());
        }
    }

    /// A scale-to-zero write for the service, ahead of any decision waiting
    /// for its worker; carried out even while the daemon stops. The daemon
    /// has at most one in flight per service.
    pub fn write_zero(&mut self, write: ZeroWrite) {
        let mailbox = self.mailbox(&write.service_id);
        let replaced = mailbox.zero.lock().unwrap_or_else(|p| p.into_inner()).replace(write);
        mailbox.notify.notify_one();
        if let Some(old) = replaced {
            let _ = old.reply.send(ZeroWritten::Failed("replaced by a newer scale-to-zero write".into()));
        }
    }

    /// The service's mailbox, with its worker started if it has none.
    fn mailbox(&mut self, service_id: &str) -> Arc<Mailbox> {
        let shared = &self.shared;
        let workers = &mut self.workers;
        self.mailboxes
            .entry(service_id.to_string())
            .or_insert_with(|| {
                let mailbox = Arc::new(Mailbox::default());
                workers.spawn(worker(shared.clone(), mailbox.clone()));
                mailbox
            })
            .clone()
    }

    /// The service is gone or no longer autoscaled: drop its waiting
    /// decision and end its worker once any update in flight is done.
    pub fn retire(&mut self, service_id: &str) {
        if let Some(mailbox) = self.mailboxes.remove(service_id) {
            mailbox.closed.store(true, Ordering::Release);
            if let Some(old) = mailbox.take() {
                self.shared.audit.record(&old.request, Verdict::skipped(Skip::ServiceGone), (self.shared.clock)());
            }
            mailbox.notify.notify_one();
        }
        self.shared.history.lock().unwrap_or_else(|p| p.into_inner()).remove(service_id);
    }

    /// This service's scale history, for the policy's state.
    pub fn history(&self, service_id: &str) -> History {
        self.shared.history.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).cloned().unwrap_or_default()
    }

    /// The service's policy answered no decision at `decided_ns` while it
    /// had `replicas`: for the scale-down stabilisation window, it asked to
    /// keep them (see [`super::guardrails`]).
    pub fn kept(&self, service_id: &str, decided_ns: u64, replicas: u32) {
        self.shared.asked(service_id, decided_ns, replicas);
    }

    /// Stop taking decisions and let every worker finish the update it has
    /// in flight, within `grace`. Decisions still waiting are audited as
    /// not applied; workers still busy after `grace` are named and cancelled.
    pub async fn shutdown(mut self, grace: Duration) {
        for mailbox in self.mailboxes.values() {
            mailbox.closed.store(true, Ordering::Release);
            mailbox.notify.notify_one();
        }
        let drained = tokio::time::timeout(grace, async { while self.workers.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            let busy: Vec<&str> =
                self.mailboxes.iter().filter(|(_, m)| Arc::strong_count(m) > 1).map(|(id, _)| id.as_str()).collect();
            tracing::warn!(
                "{} actuator worker(s) still writing after {}, cancelled (services {}); \
                 their outcome is unknown and will be read from swarm at the next start",
                self.workers.len(),
                crate::units::human_duration(grace),
                busy.join(", ")
            );
            self.workers.abort_all();
        }
        self.shared.audit.finish();
    }
}

/// One service's worker: handles the latest decision, one at a time, and
/// audits each outcome once.
async fn worker<W: Writer>(shared: Arc<Shared<W>>, mailbox: Arc<Mailbox>) {
    loop {
        // Every submit stores a wake-up; waiting first consumes it, so that
        // the back-off inside `apply` sleeps instead of waking at once.
        mailbox.notify.notified().await;
        loop {
            if let Some(write) = mailbox.take_zero() {
                shared.write_zero(write).await;
                continue;
            }
            let Some(pending) = mailbox.take() else { break };
            if mailbox.closed.load(Ordering::Acquire) {
                shared.audit.record(&pending.request, Verdict::skipped(Skip::ShuttingDown), (shared.clock)());
                continue;
            }
            shared.handle(pending, &mailbox).await;
        }
        if mailbox.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

/// A write whose answer was lost: if a later read shows its target, it
/// was applied.
#[derive(Debug, Clone)]
struct Unsettled {
    /// The decision it carried out.
    request: Request,
    /// Replicas before it.
    from: u32,
    /// Its target.
    to: u32,
}

impl<W: Writer> Shared<W> {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn history_of(&self, service_id: &str) -> Option<History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).cloned()
    }

    /// Record what the service's policy asked for (or kept) at `at_ns`.
    fn asked(&self, service_id: &str, at_ns: u64, replicas: u32) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        // Every answer of every policy comes here: no key to allocate for
        // a service seen before.
        match history.get_mut(service_id) {
            Some(h) => h.asked(at_ns, replicas),
            None => history.entry(service_id.to_string()).or_default().asked(at_ns, replicas),
        }
    }

    /// Record a scale carried out for `request`, at the time its policy
    /// answered: cooldowns count between decisions (see
    /// [`super::guardrails`]).
    fn record_scale(&self, request: &Request, from: u32, to: u32) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(request.service_id().to_string())
            .or_default()
            .record(from, to, request.decided_ns);
    }

    /// Seed a service's history from what Swarm remembers of its last
    /// scale, the first time the worker reads it (a daemon restart must
    /// not reset the cooldowns).
    fn seed_history(&self, service_id: &str, current: &Current) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.contains_key(service_id) {
            return;
        }
        let mut seeded = History::default();
        if let Some((way, at_unix_ns)) = current.last_scale {
            let ago = (crate::model::unix_ns() - at_unix_ns).max(0);
            let at = self.now().saturating_sub(u64::try_from(ago).unwrap_or(u64::MAX));
            match way {
                super::guardrails::Way::Up => seeded.last_up_ns = Some(at),
                super::guardrails::Way::Down => seeded.last_down_ns = Some(at),
            }
        }
        history.insert(service_id.to_string(), seeded);
    }

    /// Carry out a scale-to-zero write: from 1 to 0 or from 0 to 1 only,
    /// read right before, retried on conflicts and while Docker is away
    /// (for [`ZERO_WRITE_PATIENCE`]). The daemon audits the outcome.
    async fn write_zero(&self, write: ZeroWrite) {
        let ZeroWrite { service_id, service_name, to, reply } = write;
        let from = u32::from(to == 0);
        let outcome = if self.options.dry_run {
            ZeroWritten::Failed("dry run: nothing is written to swarm".into())
        } else {
            let started = Instant::now();
            let mut backoff = Backoff::new();
            let mut conflicts = 0;
            let mut wait = |err: String| {
                let delay = backoff.next_delay();
                (started.elapsed() + delay < ZERO_WRITE_PATIENCE).then(|| {
                    tracing::warn!(service = %service_name, "scale to zero: {err}; retrying in {}", crate::units::human_duration(delay));
                    delay
                })
            };
            loop {
                let current = match self.writer.read(&service_id).await {
                    Ok(current) => current,
                    Err(WriteError::Unreachable(err)) => match wait(format!("cannot read the service: {err}")) {
                        Some(delay) => {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        None => break ZeroWritten::Failed(format!("docker is unreachable: {err}")),
                    },
                    Err(err) => break ZeroWritten::Failed(err.to_string()),
                };
                let Some(replicas) = current.replicas else {
                    break ZeroWritten::Failed("not a replicated service".into());
                };
                if replicas != from {
                    // At the target already (a write whose answer was lost),
                    // or an operator's count: left as it is.
                    break ZeroWritten::Spec { replicas, wrote: None };
                }
                let start = Instant::now();
                match self.writer.set_replicas(&service_id, current, to).await {
                    Ok(()) => break ZeroWritten::Spec { replicas: to, wrote: Some(start.elapsed()) },
                    Err(WriteError::Conflict) if conflicts < MAX_CONFLICTS => conflicts += 1,
                    Err(WriteError::Unreachable(err)) => match wait(format!("cannot update the service: {err}")) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => break ZeroWritten::Failed(format!("docker is unreachable: {err}")),
                    },
                    Err(err) => break ZeroWritten::Failed(err.to_string()),
                }
            }
        };
        let _ = reply.send(outcome);
    }

    /// Carry out one decision and audit its outcome once.
    async fn handle(&self, pending: Pending, mailbox: &Mailbox) {
        if let Action::Hold(for_ns) = pending.request.decision.action {
            self.hold(&pending.request, for_ns);
            return;
        }
        let (request, verdict) = self.apply(pending, mailbox).await;
        self.audit.record(&request, verdict, self.now());
    }

    /// A `hold` decision: refuse scale-in of the service for `for_ns`
    /// from when the policy answered.
    fn hold(&self, request: &Request, for_ns: u64) {
        let until = request.decided_ns.saturating_add(for_ns);
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(request.service_id().to_string())
            .or_default()
            .hold_until_ns = Some(until);
        self.audit.record(request, Verdict::Held { for_ns }, self.now());
    }

    /// Read, judge, write; retry on conflicts and while Docker is away, as
    /// long as the decision is fresh. Returns the decision finally handled
    /// (a newer one may have replaced the first) and its verdict.
    async fn apply(&self, mut pending: Pending, mailbox: &Mailbox) -> (Request, Verdict) {
        let mut backoff = Backoff::new();
        let mut conflicts = 0;
        // A write whose answer was lost, settled by the next read.
        let mut unsettled: Option<Unsettled> = None;
        loop {
            if let Some(newer) = mailbox.take() {
                match newer.request.decision.action {
                    // A hold does not replace a scale in flight; it takes effect now.
                    Action::Hold(for_ns) => self.hold(&newer.request, for_ns),
                    Action::Scale(_) => {
                        // An unsettled write of the replaced decision stays on
                        // record until a read settles it.
                        if unsettled.as_ref().is_none_or(|u| u.request != pending.request) {
                            self.audit.record(&pending.request, Verdict::skipped(Skip::Superseded), self.now());
                        }
                        pending = newer;
                    }
                }
            }
            let request = &pending.request;
            let current = match self.writer.read(request.service_id()).await {
                Ok(current) => current,
                Err(WriteError::Unreachable(err)) => {
                    if let Some(verdict) = self.stale(request) {
                        return (pending.request, verdict);
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(service = %request.service_name(), "cannot read the service: {err}; retrying in {}", crate::units::human_duration(delay));
                    // Wake early for a newer decision; it is picked up above.
                    // The wake-up is consumed here: storing it again would
                    // wake the next wait at once, a busy loop for as long
                    // as Docker stays away.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = mailbox.notify.notified() => {}
                    }
                    continue;
                }
                Err(WriteError::NotFound) => return (pending.request, Verdict::skipped(Skip::ServiceGone)),
                Err(err) => return (pending.request, Verdict::failed(None, None, err.to_string())),
            };
            self.seed_history(request.service_id(), &current);
            let Some(replicas) = current.replicas else {
                return (pending.request, Verdict::skipped(Skip::ServiceGone));
            };
            if let Some(u) = unsettled.take() {
                if replicas == u.to {
                    // The lost write landed: it counts, cooldown included.
                    self.record_scale(&u.request, u.from, u.to);
                    let verdict = Verdict::Applied { from: u.from, to: u.to, adjustments: Vec::new() };
                    if u.request == *request {
                        return (u.request, verdict);
                    }
                    self.audit.record(&u.request, verdict, self.now());
                } else if u.request != *request {
                    self.audit.record(&u.request, Verdict::skipped(Skip::Superseded), self.now());
                }
            }
            let asked = request.decision.target().unwrap_or(replicas);
            let limits = Limits::new(&pending.config, &self.options);
            let history = self.history_of(request.service_id()).unwrap_or_default();
            let now = self.now();
            let Judgement { target, adjustments, skip } =
                judge(request, asked, &limits, replicas, &history, now, self.options.max_decision_age);
            self.asked(request.service_id(), request.decided_ns, asked.clamp(limits.min, limits.max));
            if let Some(skip) = skip {
                return (
                    pending.request,
                    Verdict::Skipped { from: Some(replicas), to: Some(target), adjustments, skip },
                );
            }
            if self.options.dry_run {
                self.record_scale(request, replicas, target);
                return (pending.request, Verdict::DryRun { from: replicas, to: target, adjustments });
            }
            match self.writer.scale(request.service_id(), current, target).await {
                Ok(()) => {
                    self.record_scale(request, replicas, target);
                    return (pending.request, Verdict::Applied { from: replicas, to: target, adjustments });
                }
                Err(WriteError::Conflict) if conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    tracing::debug!(service = %request.service_name(), "version conflict on update; reading again");
                }
                Err(WriteError::Unreachable(err)) => {
                    unsettled = Some(Unsettled { request: request.clone(), from: replicas, to: target });
                    let delay = backoff.next_delay();
                    tracing::warn!(service = %request.service_name(), "cannot update the service: {err}; retrying in {}", crate::units::human_duration(delay));
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    return (pending.request, Verdict::failed(Some(replicas), Some(target), err.to_string()));
                }
            }
        }
    }

    /// The verdict for a decision too old to apply, if it is.
    fn stale(&self, request: &Request) -> Option<Verdict> {
        let age = Duration::from_nanos(self.now().saturating_sub(request.event.timestamp_ns));
        let bound = self.options.max_decision_age;
        (age > bound).then(|| Verdict::skipped(Skip::Stale { age, bound }))
    }
}

#[cfg(test)]
mod tests;
