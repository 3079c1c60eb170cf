//! What the loop knows about each service, checked and said once: its
//! labels against its policy's declaration (the typed settings kept for
//! the hot path), one log line per change, the status board, and the
//! policies folder's changes that call for a new look.

use std::sync::Arc;

use super::{Loop, Outside, TypedSettings};
use crate::daemon::checks::{self, Folder, PolicyInfo};
use crate::model::{SettingValue, State};
use crate::probe::Reading;
use crate::reload;
use crate::status::{Cooldowns, MetricStatus};
use crate::swarm::inventory::Status;

impl<O: Outside> Loop<O> {
    /// The service's settings typed for its policy's current version,
    /// checked once per (service labels, policy version); `None` when they
    /// do not fit (said once, by [`Loop::examine`]).
    pub(super) fn settings_for(&mut self, id: &str) -> Option<Arc<[Option<SettingValue>]>> {
        let config = self.inventory.service(id)?.config()?.clone();
        let slot = self.policies.get(&config.policy)?;
        if let Some(known) = self.typed_settings.get(id)
            && known.sha256 == slot.sha256()
        {
            return known.typed.clone();
        }
        self.examine(id);
        self.typed_settings.get(id).and_then(|b| b.typed.clone())
    }

    /// Check everything about service `id` at once (its labels, its
    /// policy, the policy's declared settings, unknown label names), keep
    /// the typed settings for the hot path, publish it on the status board,
    /// and log one line if what there is to say changed.
    pub(super) fn examine(&mut self, id: &str) {
        let Some(entry) = self.inventory.service(id) else {
            self.forget(id);
            return;
        };
        let (name, replicas) = (entry.name.clone(), entry.replicas);
        let loaded = self.policies.names();
        let (config, errors, settings) = match &entry.status {
            Status::Active(config) => (Some(config.clone()), Vec::new(), config.settings.clone()),
            Status::Invalid { errors, settings } => (None, errors.0.clone(), settings.clone()),
            Status::NotOptedIn(reason) => {
                let reason = reason.clone();
                self.board.update(id, |s| {
                    *s = crate::status::ServiceStatus { service: name.clone(), id: id.into(), ..Default::default() };
                    s.problems = vec![reason.clone()];
                });
                self.say(id, tracing::Level::WARN, format!("service {name} is not autoscaled: {reason}"));
                return;
            }
            Status::NotReplicated => {
                self.board.update(id, |s| {
                    *s = crate::status::ServiceStatus { service: name.clone(), id: id.into(), ..Default::default() };
                    s.problems = vec!["not a replicated service (global or job mode)".into()];
                });
                self.say(
                    id,
                    tracing::Level::WARN,
                    format!("service {name} has autoscale.enable=true but is not a replicated service (global or job mode); it is left alone"),
                );
                return;
            }
            Status::NotEnabled => {
                self.forget(id);
                return;
            }
        };
        let named = settings.iter().find(|(k, _)| k == "policy").map(|(_, v)| v.clone());
        let slot = named.as_deref().and_then(|n| self.policies.get(n));
        let declaration = slot.as_ref().map(|slot| slot.declaration());
        let info = match (&named, &declaration) {
            (Some(name), Some((_, contract, specs))) => Some(PolicyInfo { name, contract, specs }),
            _ => None,
        };
        let folder = Folder { loaded: &loaded, not_loaded: &self.not_loaded };
        let findings = checks::check(&errors, &settings, info, &folder);
        let version = declaration.as_ref().map(|(sha, _, _)| sha.chars().take(12).collect::<String>());
        if let Some((sha256, _, _)) = &declaration {
            self.typed_settings
                .insert(id.to_string(), TypedSettings { sha256: sha256.clone(), typed: findings.typed.clone() });
        } else {
            self.typed_settings.remove(id);
        }
        let autoscaled = findings.autoscaled();
        let options = self.actuator.options();
        let history = self.actuator.history(id);
        self.board.update(id, |s| {
            s.service = name.clone();
            s.autoscaled = autoscaled && config.is_some();
            s.policy = named.clone();
            s.policy_version = version.clone();
            s.contract = declaration.as_ref().map(|(_, c, _)| c.to_string());
            s.min = config.as_ref().map(|c| c.min);
            s.max = config.as_ref().map(|c| c.max);
            s.current_replicas = Some(replicas);
            s.problems = findings.problems.clone();
            s.warnings = findings.warnings.clone();
            s.thresholds =
                config.as_ref().map(|c| crate::status::thresholds_of(&c.thresholds, &c.settings)).unwrap_or_default();
            if let Some(c) = &config {
                s.clock = Cooldowns {
                    up: c.cooldown_up.unwrap_or(options.cooldown_up),
                    down: c.cooldown_down.unwrap_or(options.cooldown_down),
                    last_scale_ns: history.last_scale_ns(),
                };
            }
        });
        match checks::line(&name, config.as_deref(), version.as_deref(), &findings) {
            Ok(text) if findings.warnings.is_empty() => self.say(id, tracing::Level::INFO, text),
            Ok(text) | Err(text) => self.say(id, tracing::Level::WARN, text),
        }
    }

    /// Log `text` about service `id` unless it is what was said last.
    pub(super) fn say(&mut self, id: &str, level: tracing::Level, text: String) {
        if self.said.get(id) == Some(&text) {
            return;
        }
        let service = self.inventory.service(id).map(|s| s.name.clone()).unwrap_or_default();
        if level == tracing::Level::INFO {
            tracing::info!(service = %service, "{text}");
        } else {
            tracing::warn!(service = %service, "{text}");
        }
        self.said.insert(id.to_string(), text);
    }

    /// Service `id` has no autoscale labels any more, or is gone.
    pub(super) fn forget(&mut self, id: &str) {
        self.board.remove(id);
        self.said.remove(id);
        self.typed_settings.remove(id);
    }

    /// Publish a reading and the state a policy is about to see.
    pub(super) fn show_reading(&self, id: &str, replicas: u32, clock: Cooldowns, event: &Reading, state: &State) {
        let container: String = event.container_id.chars().take(12).collect();
        let latest_unix_ms = crate::swarm::audit::unix_ms();
        self.board.update_existing(id, |s| {
            s.current_replicas = Some(replicas);
            s.clock = clock;
            let name = event.metric.name();
            let index = match s.metrics.iter().position(|m| m.metric == name) {
                Some(i) => i,
                None => {
                    // The unit's WIT name, as the JSON of an event has it.
                    let unit = serde_json::to_value(&event.unit).ok().and_then(|v| v.as_str().map(str::to_string));
                    s.metrics.push(MetricStatus {
                        metric: name.to_string(),
                        unit: unit.unwrap_or_else(|| "value".into()),
                        latest: 0.0,
                        latest_container: String::new(),
                        latest_unix_ms: 0,
                        aggregate: None,
                        reporting: 0,
                        warming: 0,
                    });
                    s.metrics.len() - 1
                }
            };
            let m = &mut s.metrics[index];
            m.latest = event.value;
            m.latest_container = container;
            m.latest_unix_ms = latest_unix_ms;
            for agg in &state.metrics {
                if let Some(m) = s.metrics.iter_mut().find(|m| m.metric == agg.metric.name()) {
                    m.aggregate = Some(agg.value);
                    m.reporting = agg.reporting;
                    m.warming = agg.warming;
                }
            }
        });
    }

    /// Re-examine every service with autoscale labels (a policy came or went).
    pub(super) fn examine_all(&mut self) {
        let ids: Vec<String> = self
            .inventory
            .services()
            .filter(|s| !matches!(s.status, Status::NotEnabled))
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.examine(&id);
        }
        self.board.set_policies(self.policies.names());
    }

    /// The policies folder changed.
    pub fn on_policy_change(&mut self, change: reload::Change) {
        match change {
            reload::Change::Loaded(name) | reload::Change::Reloaded(name) => {
                // A (re)loaded policy gets a fresh chance: warn again if it
                // fails, and check its services against its declaration.
                self.warned.retain(|(_, policy)| *policy != name);
                self.not_loaded.remove(&name);
                self.examine_all();
            }
            reload::Change::Unloaded(name) => {
                self.policy_workers.retire(&name);
                self.not_loaded.insert(name.clone(), format!("{name}.wasm was deleted"));
                self.examine_all();
            }
            reload::Change::Rejected { name, error } => {
                if self.policies.get(&name).is_some() {
                    return; // the previous version runs on
                }
                // Services that use it say why, at once.
                self.warned.retain(|(_, policy)| *policy != name);
                let first = error.lines().next().unwrap_or_default();
                self.not_loaded.insert(name.clone(), format!("{name}.wasm was refused: {first}"));
                self.examine_all();
            }
        }
    }
}
