//! The registry of loaded policies: what the event loop asks for a policy
//! by name.
//!
//! Each name maps to a [`PolicySlot`] whose version is swapped atomically:
//! a call already running finishes on the old version, the next call uses
//! the new one. No event waits on a compile. The folder watcher (`reload`)
//! installs and removes versions; the daemon only reads.
//!
//! Invariant: the only lock held across a policy call is that version's own
//! mutex. Everything else (names, hashes, quarantine, failure counts, for
//! the event loop and `/metrics`) is read without it, so a slow call never
//! stalls a reader.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{LoadedPolicy, PolicyError, PolicyStatus};
use crate::model::{Decision, Event, SettingSpec, State};

/// One version of a policy: the loaded component and the hash of its bytes.
#[derive(Debug)]
struct Version {
    /// SHA-256 of the component bytes, hex.
    sha256: String,
    /// The contract version it was built for.
    contract_version: &'static str,
    /// The settings it declared, read without the mutex.
    settings: Arc<[SettingSpec]>,
    /// Failure record, readable while a call holds `policy`.
    status: Arc<PolicyStatus>,
    /// The instance; the mutex serialises calls into it.
    policy: Mutex<LoadedPolicy>,
}

/// One named policy, swappable while in use.
#[derive(Debug)]
pub struct PolicySlot {
    /// The current version; replaced whole by a reload.
    current: RwLock<Arc<Version>>,
}

impl PolicySlot {
    fn new(policy: LoadedPolicy) -> Self {
        PolicySlot { current: RwLock::new(Arc::new(Version::from(policy))) }
    }

    fn version(&self) -> Arc<Version> {
        // The lock only guards an Arc swap; a poisoned lock still holds a valid Arc.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run `decide` on the current version.
    pub fn decide(&self, event: &Event, state: &State) -> Result<Option<Decision>, PolicyError> {
        let version = self.version();
        let mut policy = version.policy.lock().unwrap_or_else(|p| p.into_inner());
        policy.decide(event, state)
    }

    /// SHA-256 of the current version, hex.
    pub fn sha256(&self) -> String {
        self.version().sha256.clone()
    }

    /// The contract version and declared settings of the current version.
    pub fn declaration(&self) -> (String, &'static str, Arc<[SettingSpec]>) {
        let version = self.version();
        (version.sha256.clone(), version.contract_version, version.settings.clone())
    }

    /// Failure record of the current version; never waits for a call.
    pub fn status(&self) -> Arc<PolicyStatus> {
        self.version().status.clone()
    }

    fn replace(&self, policy: LoadedPolicy) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Version::from(policy));
    }
}

impl From<LoadedPolicy> for Version {
    fn from(policy: LoadedPolicy) -> Self {
        Version {
            sha256: policy.sha256().to_string(),
            contract_version: policy.contract_version(),
            settings: policy.settings().clone(),
            status: policy.status(),
            policy: Mutex::new(policy),
        }
    }
}

/// Counts of what happened to the folder, for logs and metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// First loads of a policy name.
    pub loads: AtomicU64,
    /// New versions of an already loaded policy.
    pub reloads: AtomicU64,
    /// Files refused or failed (the previous version, if any, kept running).
    pub rejections: AtomicU64,
    /// Policies removed because their file was deleted.
    pub unloads: AtomicU64,
    /// File events whose bytes matched the running version.
    pub unchanged: AtomicU64,
    /// Refused files by (policy, cause), for `autoscaler_policy_failures_total`.
    by_cause: Mutex<BTreeMap<(String, String), u64>>,
}

impl ReloadStats {
    /// Count a refused file of policy `name`; `cause` is a short label
    /// (`refused-import`, `compile-limit`, `not-regular-file`, ...).
    pub fn rejected(&self, name: &str, cause: &str) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        let mut map = self.by_cause.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((name.to_string(), cause.to_string())).or_insert(0) += 1;
    }

    /// Refused files by (policy, cause).
    pub fn rejections_by_cause(&self) -> Vec<((String, String), u64)> {
        let map = self.by_cause.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The loaded policies by name (file stem). Cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    slots: Arc<RwLock<HashMap<String, Arc<PolicySlot>>>>,
    stats: Arc<ReloadStats>,
}

impl PolicySet {
    /// The policy called `name`, if loaded.
    pub fn get(&self, name: &str) -> Option<Arc<PolicySlot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Names of the loaded policies, sorted.
    pub fn names(&self) -> Vec<String> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = slots.keys().cloned().collect();
        names.sort();
        names
    }

    /// How many loaded policies are quarantined. Never waits for a call.
    pub fn quarantined(&self) -> usize {
        let slots: Vec<Arc<PolicySlot>> =
            self.slots.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        slots.iter().filter(|slot| slot.status().is_quarantined()).count()
    }

    /// Every loaded policy's name and failure record, sorted by name.
    /// Never waits for a call.
    pub fn statuses(&self) -> Vec<(String, Arc<PolicyStatus>)> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, Arc<PolicyStatus>)> =
            slots.iter().map(|(name, slot)| (name.clone(), slot.status())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Load, reload, rejection and unload counts.
    pub fn stats(&self) -> &ReloadStats {
        &self.stats
    }

    /// Install `policy` under its name, replacing any previous version.
    /// Returns true if the name was already loaded.
    pub fn install(&self, policy: LoadedPolicy) -> bool {
        if let Some(slot) = self.get(policy.name()) {
            slot.replace(policy);
            return true;
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        match slots.get(policy.name()) {
            // Installed concurrently between the read and the write lock.
            Some(slot) => {
                slot.replace(policy);
                true
            }
            None => {
                slots.insert(policy.name().to_string(), Arc::new(PolicySlot::new(policy)));
                false
            }
        }
    }

    /// Remove the policy called `name`; true if it was loaded.
    pub fn remove(&self, name: &str) -> bool {
        self.slots.write().unwrap_or_else(|p| p.into_inner()).remove(name).is_some()
    }
}
