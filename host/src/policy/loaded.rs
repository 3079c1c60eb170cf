//! A loaded policy: its pre-instantiated component, the live instance and
//! its failure record; `decide` and `settings` calls with their deadlines,
//! and the classification of a failed call into a [`PolicyError`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap};

use super::bindings::{self, v1};
use super::health::{Quarantine, Recent};
use super::limits::CapHit;
use super::log::{LogBudget, LogSink};
use super::sandbox::{self, Sandbox, SandboxSettings};
use super::ticker::{EPOCH_TICK, EpochTicker};
use super::{CONTRACT_VERSION, MIN_INSTANTIATE_TIME, Origin, PolicyError, RuntimeConfig, cause_chain};
use crate::model::settings::resolve;
use crate::model::{Decision, Event, SettingSpec, SettingType, SettingValue, Settings, State};

/// Most settings a policy may declare; a longer list is refused at load.
const MAX_DECLARED_SETTINGS: usize = 64;
/// Longest setting name or doc line kept from a declaration.
const MAX_DECLARED_TEXT: usize = 256;

/// A validated component of contract 1.0.
pub(super) struct Pre(v1::PolicyPre<Sandbox>);

impl Pre {
    pub(super) fn new(pre: v1::PolicyPre<Sandbox>) -> Self {
        Pre(pre)
    }

    fn engine(&self) -> &Engine {
        self.0.engine()
    }

    fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<v1::Policy> {
        self.0.instantiate(store)
    }
}

/// A live instance: its store and the typed exports.
pub(super) struct Live {
    store: Store<Sandbox>,
    bindings: v1::Policy,
}

/// One loaded policy, ready to decide. Not shared between threads: wrap it
/// in a mutex or give it to one worker.
pub struct LoadedPolicy {
    pub(super) name: Arc<str>,
    pub(super) sha256: String,
    pub(super) origin: Origin,
    pub(super) pre: Pre,
    /// The settings it declared.
    pub(super) settings: Arc<[SettingSpec]>,
    /// The current instance; `None` after a failed call poisoned it.
    pub(super) live: Option<Live>,
    pub(super) config: RuntimeConfig,
    pub(super) ticker: Arc<EpochTicker>,
    /// Failure count and quarantine, readable without this policy's lock.
    pub(super) status: Arc<PolicyStatus>,
    /// Log lines allowed per second, across calls and instances.
    pub(super) budget: Arc<LogBudget>,
    /// Where log lines go.
    pub(super) sink: LogSink,
    /// The last call's converted arguments, whose buffers the next reuses.
    pub(super) args: bindings::Args,
    /// Its recent calls' outcomes: what quarantines it.
    pub(super) recent: Recent,
    /// Why it is quarantined, once it is.
    pub(super) quarantine: Option<Quarantine>,
}

/// A policy's failure record, shared with the registry so that metrics and
/// the event loop read it without waiting for a call to end.
#[derive(Debug, Default)]
pub struct PolicyStatus {
    /// Failed calls in a row.
    failures: AtomicU32,
    /// Set after too many failures; cleared only by loading the file again.
    quarantined: AtomicBool,
    /// Log lines dropped over the budget (mirrors the budget's counter).
    log_dropped: AtomicU64,
}

impl PolicyStatus {
    /// Whether calls are refused until the policy is loaded again.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Failed calls in a row.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Log lines dropped over the policy's log budget.
    pub fn log_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// The policy's name (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where its compiled code came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The contract version the component was built for.
    pub fn contract_version(&self) -> &'static str {
        CONTRACT_VERSION
    }

    /// The settings it declared, in the order `state.settings` holds them.
    pub fn settings(&self) -> &Arc<[SettingSpec]> {
        &self.settings
    }

    /// The settings of a service with these `autoscale.*` labels (without
    /// the prefix), parsed against this policy's declaration: what
    /// `state.settings` carries. (The daemon resolves them once per service
    /// and policy version; `host policy run`, replay and tests use this.)
    pub fn resolve<K: AsRef<str>, V: AsRef<str>>(&self, labels: &[(K, V)]) -> Result<Settings, PolicyError> {
        let labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect();
        resolve(&self.settings, &labels)
            .map(Settings::from)
            .map_err(|problems| PolicyError::Settings { policy: self.name.to_string(), problems })
    }

    /// Ask the component for its settings, once, at load; bound the answer.
    pub(super) fn declare(&mut self) -> Result<(), PolicyError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        live.store.data_mut().begin_call(Instant::now() + self.config.time_limit);
        live.store.set_epoch_deadline(self.deadline_ticks());
        let result: wasmtime::Result<Vec<SettingSpec>> = {
            let _running = self.ticker.enter();
            live.bindings.call_settings(&mut live.store).map(|s| s.into_iter().map(Into::into).collect())
        };
        live.store.data_mut().finish_call(result.is_err());
        let specs = match result {
            Ok(specs) => specs,
            Err(e) => return Err(self.classify(&e, live.store.data())),
        };
        self.live = Some(live);
        let declaration = |reason: String| PolicyError::Declaration { policy: self.name.to_string(), reason };
        if specs.len() > MAX_DECLARED_SETTINGS {
            return Err(declaration(format!("{} settings, at most {MAX_DECLARED_SETTINGS}", specs.len())));
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(specs.len());
        for mut spec in specs {
            if spec.name.is_empty() || spec.name.len() > MAX_DECLARED_TEXT || !seen.insert(spec.name.clone()) {
                return Err(declaration(format!("setting name {:?} is empty, too long or declared twice", spec.name)));
            }
            if spec.doc.len() > MAX_DECLARED_TEXT {
                let mut end = MAX_DECLARED_TEXT;
                while !spec.doc.is_char_boundary(end) {
                    end -= 1;
                }
                spec.doc.truncate(end);
            }
            out.push(spec);
        }
        self.settings = Arc::from(out);
        Ok(())
    }

    /// Whether calls are refused until the policy is loaded again.
    pub fn is_quarantined(&self) -> bool {
        self.status.is_quarantined()
    }

    /// The failure record, shared (the registry reads it without locking).
    pub fn status(&self) -> Arc<PolicyStatus> {
        self.status.clone()
    }

    fn sandbox_settings(&self) -> SandboxSettings {
        SandboxSettings {
            policy: self.name.clone(),
            memory_limit: self.config.memory_limit,
            output_limit: self.config.output_limit,
            budget: self.budget.clone(),
            sink: self.sink.clone(),
        }
    }

    pub(super) fn instantiate(&mut self) -> Result<Live, PolicyError> {
        let mut store = Store::new(self.pre.engine(), Sandbox::new(self.sandbox_settings()));
        store.limiter(|s| &mut s.limits);
        let limit = self.config.time_limit.max(MIN_INSTANTIATE_TIME);
        store.data_mut().begin_call(Instant::now() + limit);
        store.set_epoch_deadline(ticks(limit));
        let _running = self.ticker.enter();
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(Live { store, bindings }),
            Err(e) => {
                store.data_mut().finish_call(true);
                Err(match self.classify(&e, store.data()) {
                    PolicyError::Trap { policy, reason } => PolicyError::Instantiate { policy, reason },
                    other => other,
                })
            }
        }
    }

    fn deadline_ticks(&self) -> u64 {
        ticks(self.config.time_limit)
    }

    /// Run `decide` once. On failure the instance is dropped (a trap poisons
    /// it) and the next call starts a fresh one.
    pub fn decide(&mut self, event: &Event, state: &State) -> Result<Option<Decision>, PolicyError> {
        let status = self.status.clone();
        if let Some(why) = self.quarantine {
            return Err(PolicyError::Quarantined { policy: self.name.to_string(), why });
        }
        // Not counted as the policy's failure: the caller's settings are stale.
        self.check_settings(&state.settings)?;
        let result = self.call(event, state);
        status.log_dropped.store(self.budget.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        self.recent.record(result.is_err());
        status.failures.store(self.recent.in_a_row(), Ordering::Relaxed);
        if let Err(err) = &result
            && let Some(why) = self.recent.verdict(self.config.max_consecutive_failures)
        {
            self.quarantine = Some(why);
            status.quarantined.store(true, Ordering::Relaxed);
            // Through the sink: a policy worker never waits on the log.
            self.sink.send_unbudgeted(
                &self.name,
                tracing::Level::ERROR,
                "runtime",
                format!(
                    "policy quarantined after {why} (last: {err}); \
                     it makes no decisions until its file changes"
                ),
            );
        }
        result
    }

    /// Whether `settings` fit this version's declaration: one value per
    /// declared setting, each absent or of the declared type. Settings are
    /// passed by position, so values parsed for another version (a call
    /// that raced a reload which changed the declaration) would reach the
    /// wrong names; they are refused instead.
    fn check_settings(&self, settings: &[Option<SettingValue>]) -> Result<(), PolicyError> {
        let mismatch = |reason: String| PolicyError::SettingsMismatch { policy: self.name.to_string(), reason };
        if settings.len() != self.settings.len() {
            return Err(mismatch(format!("{} values for {} declared settings", settings.len(), self.settings.len())));
        }
        for (value, spec) in settings.iter().zip(self.settings.iter()) {
            let fits = matches!(
                (spec.kind, value),
                (_, None)
                    | (SettingType::Number | SettingType::Quantity, Some(SettingValue::Number(_)))
                    | (SettingType::Duration, Some(SettingValue::DurationNs(_)))
                    | (SettingType::Flag, Some(SettingValue::Flag(_)))
                    | (SettingType::Text, Some(SettingValue::Text(_)))
            );
            if !fits {
                return Err(mismatch(format!("{} is declared {} but given {value:?}", spec.name, spec.kind.name())));
            }
        }
        Ok(())
    }

    fn call(&mut self, event: &Event, state: &State) -> Result<Option<Decision>, PolicyError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        live.store.data_mut().begin_call(Instant::now() + self.config.time_limit);
        live.store.set_epoch_deadline(self.deadline_ticks());
        let result = {
            let _running = self.ticker.enter();
            let (event, state) = self.args.fill(event, state);
            live.bindings.call_decide(&mut live.store, event, state).map(|d| d.map(Decision::from))
        };
        live.store.data_mut().finish_call(result.is_err());
        match result {
            Ok(decision) => {
                self.live = Some(live);
                Ok(decision.map(Decision::bounded))
            }
            // The instance is poisoned; drop it (`live` goes out of scope).
            Err(e) => Err(self.classify(&e, live.store.data())),
        }
    }

    /// Turn a wasmtime error into a [`PolicyError`] whose message names
    /// the cause in its first line.
    fn classify(&self, err: &wasmtime::Error, sandbox: &Sandbox) -> PolicyError {
        let policy = self.name.to_string();
        let limit_ms = self.config.time_limit.as_millis();
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PolicyError::Timeout { policy, limit_ms, waiting: "" };
        }
        if sandbox.waited_out || err.downcast_ref::<sandbox::WaitedPastDeadline>().is_some() {
            return PolicyError::Timeout { policy, limit_ms, waiting: " (waiting in a host call: sleep or poll)" };
        }
        let limit_mib = self.config.memory_limit >> 20;
        match sandbox.limits.hit {
            Some(CapHit::Memory) => return PolicyError::MemoryLimit { policy, limit_mib, what: "" },
            Some(CapHit::Table) => {
                return PolicyError::MemoryLimit { policy, limit_mib, what: " (table elements over the fixed cap)" };
            }
            None => {}
        }
        let mut reason = match err.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => cause_chain(err),
        };
        if !sandbox.last_words.is_empty() {
            // What the guest said before it stopped: the cause, in its words.
            reason = format!(
                "{reason}; before it stopped the policy wrote:\n    {}",
                sandbox.last_words.replace('\n', "\n    ")
            );
        }
        PolicyError::Trap { policy, reason }
    }
}

/// Epoch ticks for a time limit, rounded up.
fn ticks(limit: Duration) -> u64 {
    let ticks = limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}
