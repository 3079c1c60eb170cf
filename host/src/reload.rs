//! The policies folder: the set of loaded policies by name, kept in step
//! with `*.wasm` files in the folder.
//!
//! [`PolicySet`] is what the event loop asks for a policy by name. Each name
//! maps to a [`PolicySlot`]; swapping a slot's policy is atomic: a call that
//! is running finishes on the old version, the next call uses the new one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;

use crate::model::{Decision, Event, State};
use crate::policy::{LoadedPolicy, PolicyError, Runtime};

/// One named policy, swappable while in use.
#[derive(Debug)]
pub struct PolicySlot {
    /// The current version. The mutex serialises calls into one instance;
    /// the outer `RwLock` lets a reload replace the whole version at once.
    current: RwLock<Arc<Mutex<LoadedPolicy>>>,
}

impl PolicySlot {
    fn new(policy: LoadedPolicy) -> Self {
        PolicySlot { current: RwLock::new(Arc::new(Mutex::new(policy))) }
    }

    /// Run `decide` on the current version.
    pub fn decide(&self, event: &Event, state: &State) -> Result<Option<Decision>, PolicyError> {
        let version = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut policy = version.lock().unwrap_or_else(|p| p.into_inner());
        policy.decide(event, state)
    }

    /// SHA-256 of the current version.
    pub fn sha256(&self) -> String {
        let version = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let policy = version.lock().unwrap_or_else(|p| p.into_inner());
        policy.sha256().to_string()
    }

    fn replace(&self, policy: LoadedPolicy) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Mutex::new(policy));
    }
}

/// The loaded policies by name (file stem). Cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    slots: Arc<RwLock<HashMap<String, Arc<PolicySlot>>>>,
}

impl PolicySet {
    /// The policy called `name`, if loaded.
    pub fn get(&self, name: &str) -> Option<Arc<PolicySlot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Names of the loaded policies, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.slots.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }

    /// Install `policy` under its name, replacing any previous version.
    pub fn install(&self, policy: LoadedPolicy) {
        let name = policy.name().to_string();
        let existing = self.get(&name);
        match existing {
            Some(slot) => slot.replace(policy),
            None => {
                self.slots.write().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(PolicySlot::new(policy)));
            }
        }
    }

    /// Remove the policy called `name`; true if it was loaded.
    pub fn remove(&self, name: &str) -> bool {
        self.slots.write().unwrap_or_else(|p| p.into_inner()).remove(name).is_some()
    }
}

/// Load every `*.wasm` regular file in `dir` into `set`; a bad file is
/// logged and skipped, never fatal.
pub fn load_folder(runtime: &Runtime, dir: &Path, set: &PolicySet) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") || !path.is_file() {
            continue;
        }
        let name = crate::policy_cmd::policy_name(&path);
        match std::fs::read(&path) {
            Ok(bytes) => match runtime.load(&name, &bytes) {
                Ok(policy) => {
                    tracing::info!(policy = %name, sha256 = %&policy.sha256()[..12], origin = ?policy.origin(), "policy loaded");
                    set.install(policy);
                }
                Err(err) => tracing::error!(file = %path.display(), "policy rejected: {err}"),
            },
            Err(err) => tracing::error!(file = %path.display(), "cannot read policy: {err}"),
        }
    }
    Ok(())
}
