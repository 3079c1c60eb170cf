//! The services a policy of contract 0.3 has been told about, so that a
//! call passes a number instead of the service's id, name and settings.
//!
//! Each Swarm service id the policy decides for gets a handle, a small number
//! reused after the service is forgotten (so a policy can keep its bindings in
//! an array). The table keeps, per handle, the name and typed settings last
//! given to the policy and the instance they were given to: [`Services::plan`]
//! says a call must `bind-service` first when the service is new to the table,
//! when its settings or name changed (the settings are compared by pointer
//! first, then by value), or when the instance was re-created since (a failed
//! call poisons an instance, and a new one has nothing bound). The caller
//! marks the binding done with [`Services::bound`] only once the policy's
//! `bind-service` returned, so a bind that traps is simply done again in the
//! next instance.
//!
//! Bounded: a service not decided for [`IDLE`] is forgotten at the next
//! sweep (at most every [`SWEEP_EVERY`], at most [`UNBINDS_PER_CALL`]
//! unbinds per call), and with [`MAX_BOUND`] services in the table the
//! least recently decided one is forgotten to make room. A forgotten
//! service is unbound in the policy if the live instance has it, and bound
//! again, under a new handle, before its next `decide`.
//!
//! Pure bookkeeping: it knows nothing about wasmtime and calls nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::SettingValue;

/// Most services in one policy's table at once.
pub const MAX_BOUND: usize = 4096;
/// A service not decided for this long is unbound at the next sweep.
pub const IDLE: Duration = Duration::from_secs(600);
/// Least time between two sweeps for idle services.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most unbinds a sweep adds to one call; the rest wait for the next call.
pub const UNBINDS_PER_CALL: usize = 32;

/// Typed settings: one shared list per (service labels, policy version),
/// so that an unchanged service's list compares by pointer.
pub type Typed = Arc<[Option<SettingValue>]>;

/// The settings a call brings, as the daemon typed them or as the runtime
/// just resolved them from labels (`host policy run`, tests).
#[derive(Debug)]
pub enum Given<'a> {
    /// The daemon's shared list (`State::typed_settings`).
    Shared(&'a Typed),
    /// Resolved for this call only.
    Resolved(Vec<Option<SettingValue>>),
}

/// One service known to the table.
#[derive(Debug)]
pub struct Entry {
    /// The Swarm service id.
    pub id: String,
    /// The Swarm service name.
    pub name: String,
    /// The settings last bound (or to be bound).
    pub settings: Typed,
    /// The instance generation this service is bound in; `None` until the
    /// policy's `bind-service` returned, and after the settings or name
    /// changed.
    bound_in: Option<u64>,
    /// The last call for this service.
    last_used: Instant,
}

/// What a call must do before `decide`.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The service's handle.
    pub handle: u32,
    /// Unbind these handles in the live instance first (forgotten services).
    pub unbind: Vec<u32>,
    /// Call `bind-service` with [`Services::entry`] of `handle` before
    /// `decide`.
    pub bind: bool,
}

/// The table of one loaded policy (one per [`super::LoadedPolicy`]).
#[derive(Debug)]
pub struct Services {
    /// Handle of each service id.
    by_id: HashMap<String, u32>,
    /// Entries by handle; `None` for a free handle.
    slots: Vec<Option<Entry>>,
    /// Free handles, reused before new ones.
    free: Vec<u32>,
    /// The handle of the last call: consecutive calls are often for the
    /// same service, and comparing its id is cheaper than hashing.
    last: Option<u32>,
    /// When the next sweep for idle services is due.
    next_sweep: Instant,
    /// Forgotten services still bound in the live instance, waiting for
    /// their unbind (a sweep hands out at most `UNBINDS_PER_CALL` per call).
    pending_unbind: Vec<(u32, u64)>,
}

impl Services {
    /// An empty table; the first sweep is due [`SWEEP_EVERY`] after `now`.
    pub fn new(now: Instant) -> Self {
        Services {
            by_id: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            last: None,
            next_sweep: now + SWEEP_EVERY,
            pending_unbind: Vec::new(),
        }
    }

    /// Services in the table.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.by_id.len()
    }

    /// The entry of `handle`.
    pub fn entry(&self, handle: u32) -> Option<&Entry> {
        self.slots.get(handle as usize).and_then(Option::as_ref)
    }

    /// The handle of service `id`, if it is in the table.
    #[cfg(test)]
    fn handle(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// What a call for service `id` (named `name`, with `settings`) must do
    /// in the instance of generation `live` at `now`.
    pub fn plan(&mut self, id: &str, name: &str, settings: Given<'_>, live: u64, now: Instant) -> Plan {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        let known = match self.last {
            Some(handle) if self.entry(handle).is_some_and(|e| e.id == id) => Some(handle),
            _ => self.by_id.get(id).copied(),
        };
        let handle = match known {
            Some(handle) => {
                self.refresh(handle, name, settings, now);
                handle
            }
            None => {
                if self.by_id.len() >= MAX_BOUND {
                    self.forget_least_recent();
                }
                self.insert(id, name, settings.into_typed(), now)
            }
        };
        self.last = Some(handle);
        // Hand out the unbinds that concern the live instance; the others'
        // instances are gone, with their bindings.
        self.pending_unbind.retain(|(_, generation)| *generation == live);
        let take = self.pending_unbind.len().min(UNBINDS_PER_CALL);
        let unbind = self.pending_unbind.drain(..take).map(|(h, _)| h).collect();
        let bind = self.entry(handle).is_none_or(|e| e.bound_in != Some(live));
        Plan { handle, unbind, bind }
    }

    /// A call for the service at `handle`: note the time, and forget its
    /// binding if its name or settings changed.
    fn refresh(&mut self, handle: u32, name: &str, settings: Given<'_>, now: Instant) {
        let Some(Some(entry)) = self.slots.get_mut(handle as usize) else { return };
        entry.last_used = now;
        if entry.name != name {
            entry.name = name.to_string();
            entry.bound_in = None;
        }
        match settings {
            Given::Shared(typed) if Arc::ptr_eq(&entry.settings, typed) => {}
            Given::Shared(typed) => {
                if entry.settings[..] != typed[..] {
                    entry.bound_in = None;
                }
                // Keep the daemon's list, so the next call compares by pointer.
                entry.settings = typed.clone();
            }
            Given::Resolved(values) => {
                if entry.settings[..] != values[..] {
                    entry.settings = values.into();
                    entry.bound_in = None;
                }
            }
        }
    }

    /// The policy's `bind-service` for `handle` returned in the instance of
    /// generation `live`.
    pub fn bound(&mut self, handle: u32, live: u64) {
        if let Some(Some(entry)) = self.slots.get_mut(handle as usize) {
            entry.bound_in = Some(live);
        }
    }

    /// Add a service; returns its handle.
    fn insert(&mut self, id: &str, name: &str, settings: Typed, now: Instant) -> u32 {
        let entry = Entry { id: id.to_string(), name: name.to_string(), settings, bound_in: None, last_used: now };
        let handle = match self.free.pop() {
            Some(handle) => {
                self.slots[handle as usize] = Some(entry);
                // The forgotten service's unbind is not needed any more
                // (and must not reach the new one): the bind replaces it.
                self.pending_unbind.retain(|(h, _)| *h != handle);
                handle
            }
            None => {
                // At most MAX_BOUND slots exist, far below u32::MAX.
                let handle = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(entry));
                handle
            }
        };
        self.by_id.insert(id.to_string(), handle);
        handle
    }

    /// Remove `handle`; queue its unbind if an instance has it bound.
    fn forget(&mut self, handle: u32) {
        let Some(entry) = self.slots.get_mut(handle as usize).and_then(Option::take) else { return };
        self.by_id.remove(&entry.id);
        self.free.push(handle);
        if self.last == Some(handle) {
            self.last = None;
        }
        if let Some(generation) = entry.bound_in {
            self.pending_unbind.push((handle, generation));
        }
    }

    /// Forget the service decided for least recently.
    fn forget_least_recent(&mut self) {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(handle, entry)| entry.as_ref().map(|e| (e.last_used, handle)))
            .min()
            .map(|(_, handle)| handle);
        if let Some(handle) = oldest.and_then(|h| u32::try_from(h).ok()) {
            self.forget(handle);
        }
    }

    /// Forget every service not decided for [`IDLE`].
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + SWEEP_EVERY;
        let idle: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.as_ref().is_some_and(|e| now.duration_since(e.last_used) >= IDLE))
            .filter_map(|(handle, _)| u32::try_from(handle).ok())
            .collect();
        for handle in idle {
            self.forget(handle);
        }
    }
}

impl Given<'_> {
    /// The settings as a shared list.
    fn into_typed(self) -> Typed {
        match self {
            Given::Shared(typed) => typed.clone(),
            Given::Resolved(values) => values.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(values: &[f64]) -> Typed {
        values.iter().map(|v| Some(SettingValue::Number(*v))).collect()
    }

    #[test]
    fn a_service_binds_once_per_instance_and_again_after_a_new_one() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let settings = typed(&[0.8]);
        let plan = table.plan("s1", "web", Given::Shared(&settings), 1, t0);
        assert_eq!(plan, Plan { handle: 0, unbind: vec![], bind: true });
        // Not bound until the policy's bind returned.
        assert!(table.plan("s1", "web", Given::Shared(&settings), 1, t0).bind);
        table.bound(0, 1);
        assert!(!table.plan("s1", "web", Given::Shared(&settings), 1, t0).bind);
        // Instance 2 (the first one trapped) has nothing bound.
        let plan = table.plan("s1", "web", Given::Shared(&settings), 2, t0);
        assert_eq!((plan.handle, plan.bind), (0, true), "same handle, bound again");
    }

    #[test]
    fn changed_settings_or_name_bind_again_equal_ones_do_not() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let first = typed(&[0.8]);
        table.plan("s1", "web", Given::Shared(&first), 1, t0);
        table.bound(0, 1);
        // Another list with the same values (the daemon re-resolved them).
        let equal = typed(&[0.8]);
        assert!(!table.plan("s1", "web", Given::Shared(&equal), 1, t0).bind);
        assert!(Arc::ptr_eq(&table.entry(0).expect("entry").settings, &equal), "keeps the newest list");
        assert!(!table.plan("s1", "web", Given::Resolved(vec![Some(SettingValue::Number(0.8))]), 1, t0).bind);
        let changed = typed(&[0.9]);
        assert!(table.plan("s1", "web", Given::Shared(&changed), 1, t0).bind);
        table.bound(0, 1);
        assert!(table.plan("s1", "web", Given::Resolved(vec![None]), 1, t0).bind);
        assert_eq!(table.entry(0).map(|e| e.settings.to_vec()), Some(vec![None]));
        table.bound(0, 1);
        assert!(table.plan("s1", "renamed", Given::Resolved(vec![None]), 1, t0).bind);
    }

    #[test]
    fn services_get_their_own_handles_and_freed_ones_are_reused() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let settings = typed(&[]);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let plan = table.plan(id, id, Given::Shared(&settings), 1, t0);
            assert_eq!(plan.handle as usize, i);
            table.bound(plan.handle, 1);
        }
        assert_eq!(table.handle("b"), Some(1));
        // "a" and "c" stay busy; "b" goes idle and is swept, then unbound.
        let busy = t0 + IDLE / 2;
        assert!(table.plan("a", "a", Given::Shared(&settings), 1, busy).unbind.is_empty());
        table.plan("c", "c", Given::Shared(&settings), 1, busy);
        let later = t0 + IDLE + Duration::from_secs(1);
        let plan = table.plan("a", "a", Given::Shared(&settings), 1, later);
        assert_eq!(plan.unbind, vec![1]);
        assert_eq!((table.count(), table.handle("b")), (2, None));
        // A new service takes the freed handle.
        let plan = table.plan("d", "d", Given::Shared(&settings), 1, later);
        assert_eq!(plan, Plan { handle: 1, unbind: vec![], bind: true });
    }

    #[test]
    fn unbinds_of_a_dead_instance_are_dropped() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let settings = typed(&[]);
        table.plan("old", "old", Given::Shared(&settings), 1, t0);
        table.bound(0, 1);
        let later = t0 + IDLE + SWEEP_EVERY;
        // The sweep forgets "old", but the call runs in instance 2.
        let plan = table.plan("new", "new", Given::Shared(&settings), 2, later);
        assert_eq!(plan, Plan { handle: 0, unbind: vec![], bind: true });
    }

    #[test]
    fn the_table_is_bounded_by_forgetting_the_least_recent() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let settings = typed(&[]);
        for i in 0..MAX_BOUND {
            let at = t0 + Duration::from_millis(i as u64);
            let plan = table.plan(&format!("s{i}"), "x", Given::Shared(&settings), 1, at);
            table.bound(plan.handle, 1);
        }
        // s0 is used again: s1 is now the least recent.
        let at = t0 + Duration::from_secs(10);
        table.plan("s0", "x", Given::Shared(&settings), 1, at);
        let plan = table.plan("one-more", "x", Given::Shared(&settings), 1, at);
        assert_eq!(table.count(), MAX_BOUND);
        assert_eq!(table.handle("s1"), None);
        assert_eq!(plan, Plan { handle: 1, unbind: vec![], bind: true }, "s1's handle, rebound, no unbind needed");
        // Nor later, for another service: it would unbind "one-more".
        assert!(table.plan("s0", "x", Given::Shared(&settings), 1, at).unbind.is_empty());
    }

    #[test]
    fn a_sweep_spreads_many_unbinds_over_calls() {
        let t0 = Instant::now();
        let mut table = Services::new(t0);
        let settings = typed(&[]);
        for i in 0..UNBINDS_PER_CALL + 5 {
            let plan = table.plan(&format!("s{i}"), "x", Given::Shared(&settings), 1, t0);
            table.bound(plan.handle, 1);
        }
        let later = t0 + IDLE + SWEEP_EVERY;
        let first = table.plan("busy", "x", Given::Shared(&settings), 1, later);
        let second = table.plan("busy", "x", Given::Shared(&settings), 1, later);
        assert_eq!((first.unbind.len(), second.unbind.len()), (UNBINDS_PER_CALL, 4), "one handle went to busy");
    }
}
