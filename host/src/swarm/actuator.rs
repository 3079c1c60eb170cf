//! The actuator: the only code that writes to Swarm.
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
        self.shared.history.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).copied().unwrap_or_default()
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
        self.history.lock().unwrap_or_else(|p| p.into_inner()).get(service_id).copied()
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
mod tests {
    use super::*;
    use crate::model::{Decision, Event};
    use bollard::models::ServiceSpec;
    use std::sync::atomic::AtomicU64;

    const SEC: u64 = 1_000_000_000;

    fn config() -> Arc<ServiceConfig> {
        let labels: HashMap<String, String> = [
            ("autoscale.enable", "true"),
            ("autoscale.policy", "threshold"),
            ("autoscale.min", "1"),
            ("autoscale.max", "5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Arc::new(super::super::labels::parse("web", &labels).expect("valid").expect("enabled"))
    }

    fn request(seen: u32, target: u32, event_ns: u64) -> Request {
        Request {
            policy: "threshold".into(),
            event: Event::cpu(0.9).at(event_ns),
            decision: Decision::scale(target, "test"),
            seen,
            decided_ns: event_ns,
        }
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
        /// Writes land but their answer is lost while this is > 0.
        lose_answers: u32,
        /// What Swarm remembers of the last scale.
        last_scale: Option<(crate::swarm::guardrails::Way, i128)>,
        writes: Vec<u32>,
        reads: u32,
        /// Writes made without recording a scale (scale to zero's).
        unmarked: u32,
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
            Ok(Current {
                replicas: Some(s.replicas),
                version: s.version,
                spec: ServiceSpec::default(),
                last_scale: s.last_scale,
            })
        }

        async fn set_replicas(&self, id: &str, current: Current, replicas: u32) -> Result<(), WriteError> {
            self.0.lock().expect("lock").unmarked += 1;
            self.scale(id, current, replicas).await
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
            if s.lose_answers > 0 {
                s.lose_answers -= 1;
                return Err(WriteError::Unreachable("connection reset".into()));
            }
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
        act.submit_test(request(1, 2, 100 * SEC));
        settle().await;
        assert_eq!(fake.0.lock().expect("lock").writes, [2]);
        assert_eq!(act.history("s1").last_up_ns, Some(100 * SEC));
        let lines = audit_lines(&dir);
        assert_eq!(lines[0]["outcome"], "applied");
        assert_eq!((lines[0]["from"].as_u64(), lines[0]["to"].as_u64()), (Some(1), Some(2)));
        // The next decision within cooldown.up is skipped and audited.
        clock.store(105 * SEC, Ordering::SeqCst);
        act.submit_test(request(2, 3, 105 * SEC));
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
        act.submit_test(request(2, 3, 0));
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
        act.submit_test(request(1, 3, 0));
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
        act.submit_test(request(1, 2, 0));
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
        act.submit_test(request(1, 2, 0));
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
    async fn a_newer_decision_while_docker_is_away_keeps_the_back_off() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.unreachable = u32::MAX; // a demoted manager: every read fails
        }
        let (mut act, _dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
        act.submit_test(request(1, 2, 0));
        tokio::task::yield_now().await;
        act.submit_test(request(1, 3, 0));
        tokio::time::sleep(Duration::from_millis(350)).await;
        // The newer decision is read at once, then the back-off runs:
        // 0 ms, the wake-up, +200 ms. Not one read per poll.
        let reads = fake.0.lock().expect("lock").reads;
        assert!((2..=4).contains(&reads), "{reads} reads in 350 ms");
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
        act.submit_test(request(1, 2, 0));
        tokio::task::yield_now().await;
        act.submit_test(request(1, 3, 0));
        act.submit_test(request(1, 4, 0));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(fake.0.lock().expect("lock").writes, [4], "one write, with the latest target");
        let lines = audit_lines(&dir);
        let outcomes: Vec<String> = lines.iter().map(|l| l["outcome"].to_string()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.contains("applied")).count(), 1);
        // Two superseded decisions: the first is written, both are counted
        // in the applied record.
        assert_eq!(outcomes.iter().filter(|o| o.contains("skipped")).count(), 1, "{outcomes:?}");
        let applied = lines.iter().find(|l| l["outcome"] == "applied").expect("applied");
        assert_eq!(applied["skipped-since-last"]["superseded"], 2, "{applied}");
    }

    impl Actuator<FakeWriter> {
        fn submit_test(&mut self, request: Request) {
            self.submit(request, config());
        }
    }

    #[tokio::test]
    async fn a_lost_answer_followed_by_a_newer_decision_counts_as_applied() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.lose_answers = 1; // the write lands, its answer does not
        }
        let clock = Arc::new(AtomicU64::new(100 * SEC));
        let (mut act, dir) = actuator(&fake, false, clock.clone());
        act.submit_test(request(1, 2, 100 * SEC));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A newer decision, made on the replicas the policy saw before.
        act.submit_test(request(1, 3, 100 * SEC));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(fake.0.lock().expect("lock").writes, [2], "no second write inside the cooldown");
        let lines = audit_lines(&dir);
        assert_eq!(lines[0]["outcome"], "applied", "{lines:?}");
        assert_eq!((lines[0]["from"].as_u64(), lines[0]["to"].as_u64()), (Some(1), Some(2)));
        assert_eq!(lines[1]["outcome"], "skipped", "{lines:?}");
        assert_eq!(act.history("s1").last_up_ns, Some(100 * SEC), "the cooldown counts from the lost write");
    }

    #[tokio::test]
    async fn cooldowns_survive_a_restart_through_what_swarm_remembers() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 3;
            // Swarm says the service was scaled down 5 s ago.
            s.last_scale = Some((crate::swarm::guardrails::Way::Down, crate::model::unix_ns() - 5_000_000_000));
        }
        let clock = Arc::new(AtomicU64::new(1000 * SEC));
        let (mut act, dir) = actuator(&fake, false, clock);
        act.submit_test(request(3, 4, 1000 * SEC));
        settle().await;
        assert!(fake.0.lock().expect("lock").writes.is_empty(), "cooldown.up (10 s) still runs after a restart");
        let lines = audit_lines(&dir);
        assert!(lines[0]["skip"].as_str().is_some_and(|s| s.contains("cooldown.up")), "{lines:?}");
    }

    #[tokio::test]
    async fn a_hold_blocks_scale_in_and_is_audited() {
        let fake = FakeWriter::default();
        fake.0.lock().expect("lock").replicas = 3;
        let clock = Arc::new(AtomicU64::new(1000 * SEC));
        let (mut act, dir) = actuator(&fake, false, clock);
        let mut hold = request(3, 3, 1000 * SEC);
        hold.decision = Decision::hold(300 * SEC, "stabilising");
        act.submit_test(hold);
        settle().await;
        act.submit_test(request(3, 2, 1000 * SEC));
        settle().await;
        assert!(fake.0.lock().expect("lock").writes.is_empty());
        let lines = audit_lines(&dir);
        assert_eq!(lines[0]["outcome"], "held");
        assert!(lines[1]["skip"].as_str().is_some_and(|s| s.contains("held")), "{lines:?}");
        assert_eq!(act.history("s1").hold_until_ns, Some(1300 * SEC));
    }

    #[tokio::test]
    async fn shutdown_lets_the_update_in_flight_finish_and_audits_it() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 1;
            s.unreachable = 1; // the first read fails: the write happens after a back-off
        }
        let (mut act, dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
        act.submit_test(request(1, 2, 0));
        tokio::task::yield_now().await;
        act.shutdown(Duration::from_secs(5)).await;
        assert_eq!(fake.0.lock().expect("lock").writes, [2], "the update in flight completed");
        assert_eq!(audit_lines(&dir)[0]["outcome"], "applied");
    }

    async fn zero_write(act: &mut Actuator<FakeWriter>, to: u32) -> ZeroWritten {
        let (reply, answer) = oneshot::channel();
        act.write_zero(ZeroWrite { service_id: "s1".into(), service_name: "web".into(), to, reply });
        tokio::time::timeout(Duration::from_secs(5), answer).await.expect("answered").expect("reply")
    }

    #[tokio::test]
    async fn scale_to_zero_writes_skip_the_guardrails_and_leave_the_cooldowns_alone() {
        let fake = FakeWriter::default();
        fake.0.lock().expect("lock").replicas = 1;
        let clock = Arc::new(AtomicU64::new(100 * SEC));
        let (mut act, dir) = actuator(&fake, false, clock.clone());
        // A policy scale-down starts cooldown.up (10 s)...
        fake.0.lock().expect("lock").replicas = 2;
        act.submit_test(request(2, 1, 100 * SEC));
        settle().await;
        assert_eq!(act.history("s1").last_down_ns, Some(100 * SEC));
        // ...which neither the removal nor the wake waits for, below min=1.
        assert!(matches!(zero_write(&mut act, 0).await, ZeroWritten::Spec { replicas: 0, wrote: Some(_) }));
        assert!(matches!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 1, wrote: Some(_) }));
        let (writes, unmarked) = {
            let s = fake.0.lock().expect("lock");
            (s.writes.clone(), s.unmarked)
        };
        assert_eq!((writes, unmarked), (vec![1, 0, 1], 2), "two unmarked writes");
        assert_eq!(act.history("s1"), History { last_down_ns: Some(100 * SEC), ..History::default() });
        assert_eq!(audit_lines(&dir).len(), 1, "the daemon audits zero writes itself");
        // From a count it does not start from: nothing written, the count said.
        fake.0.lock().expect("lock").replicas = 3;
        assert_eq!(zero_write(&mut act, 0).await, ZeroWritten::Spec { replicas: 3, wrote: None });
        assert_eq!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 3, wrote: None });
        assert_eq!(fake.0.lock().expect("lock").writes, [1, 0, 1]);
    }

    #[tokio::test]
    async fn a_restore_waits_out_docker_and_a_conflict() {
        let fake = FakeWriter::default();
        {
            let mut s = fake.0.lock().expect("lock");
            s.replicas = 0;
            s.unreachable = 2;
            s.operator_scale = Some(0); // a concurrent write: one version conflict
        }
        let (mut act, _dir) = actuator(&fake, false, Arc::new(AtomicU64::new(0)));
        assert!(matches!(zero_write(&mut act, 1).await, ZeroWritten::Spec { replicas: 1, wrote: Some(_) }));
        assert_eq!(fake.0.lock().expect("lock").writes, [1]);
    }
}
