//! Which services' tasks a manager re-reads at each tick (multi-node mode).
//!
//! Docker's event stream has no task events, so the leader learns of tasks
//! on other nodes by listing them. Listing every task of the swarm every
//! second costs the leader and its engine in proportion to the swarm (a
//! task is a few KiB of JSON: 10,000 replicas are tens of MB a second), so
//! the reads are bounded by [`TASKS_PER_TICK`]:
//! - a swarm with at most that many tasks is listed whole at every tick,
//!   as before;
//! - a larger one is swept: each tick lists the tasks of the next services
//!   in turn, about [`TASKS_PER_TICK`] tasks' worth, so every service is
//!   re-read every `tasks / TASKS_PER_TICK` ticks;
//! - a service that had an event (created, updated: a scale starts tasks on
//!   other nodes) is read at once and at each of the next [`HOT_TICKS`]
//!   ticks, whatever the sweep, so a scale's new replicas are tracked as
//!   fast as before.

use std::collections::BTreeMap;

use super::state::ContainerInfo;

/// Tasks one tick lists, at most, outside services that just changed.
pub const TASKS_PER_TICK: usize = 1_000;

/// Ticks a service is re-read at after an event.
pub const HOT_TICKS: u32 = 5;

/// What to list at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Every running task of the swarm.
    All,
    /// The running tasks of these services.
    Services(Vec<String>),
}

/// The sweep's state: the services known, their size, the hot ones.
#[derive(Debug, Clone, Default)]
pub struct TaskSweep {
    /// Service id -> running tasks at its last read.
    known: BTreeMap<String, usize>,
    /// Service id -> ticks it stays hot.
    hot: BTreeMap<String, u32>,
    /// The last service the sweep read; it goes on after it.
    cursor: Option<String>,
    /// Tasks per tick.
    budget: usize,
}

impl TaskSweep {
    /// A sweep listing about `budget` tasks a tick.
    pub fn new(budget: usize) -> TaskSweep {
        TaskSweep { budget: budget.max(1), ..TaskSweep::default() }
    }

    /// After a resync: these services exist, with these running containers.
    pub fn reset(&mut self, services: impl IntoIterator<Item = String>, containers: &[ContainerInfo]) {
        self.known = services.into_iter().map(|id| (id, 0)).collect();
        self.hot.retain(|id, _| self.known.contains_key(id));
        self.count(containers);
    }

    /// Service `id` was created or updated: read it now and for a few ticks.
    pub fn touched(&mut self, id: &str) {
        self.known.entry(id.to_string()).or_insert(0);
        self.hot.insert(id.to_string(), HOT_TICKS);
    }

    /// Service `id` is gone.
    pub fn forget(&mut self, id: &str) {
        self.known.remove(id);
        self.hot.remove(id);
    }

    /// Tasks of the swarm at the last reads (a service with none counts one).
    pub fn total(&self) -> usize {
        self.known.values().map(|n| (*n).max(1)).sum()
    }

    /// What to list at this tick.
    pub fn due(&mut self) -> Read {
        let hot: Vec<String> = self.hot.keys().cloned().collect();
        self.hot.retain(|_, ticks| {
            *ticks -= 1;
            *ticks > 0
        });
        if self.total() <= self.budget {
            return Read::All;
        }
        let mut cost: usize = hot.iter().map(|id| self.known.get(id).copied().unwrap_or(0).max(1)).sum();
        let mut read = hot;
        let after = self.cursor.clone();
        let ring = match &after {
            Some(c) => self.known.range::<String, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)),
            None => self.known.range::<String, _>(..),
        }
        .chain(self.known.range::<String, _>(..))
        .take(self.known.len());
        for (swept, (id, n)) in ring.enumerate() {
            if swept > 0 && cost + n.max(&1) > self.budget {
                break;
            }
            self.cursor = Some(id.clone());
            if !read.contains(id) {
                cost += (*n).max(1);
                read.push(id.clone());
            }
        }
        Read::Services(read)
    }

    /// The containers a read found: the size of each service read.
    pub fn listed(&mut self, read: &Read, containers: &[ContainerInfo]) {
        match read {
            Read::All => {
                self.known.values_mut().for_each(|n| *n = 0);
                self.count(containers);
            }
            Read::Services(ids) => {
                for id in ids {
                    if let Some(n) = self.known.get_mut(id) {
                        *n = 0;
                    }
                }
                self.count(containers);
            }
        }
    }

    fn count(&mut self, containers: &[ContainerInfo]) {
        for c in containers {
            if let Some(n) = self.known.get_mut(&c.service_id) {
                *n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers(service: &str, n: usize) -> Vec<ContainerInfo> {
        (0..n)
            .map(|i| ContainerInfo {
                id: format!("{service}-{i}"),
                service_id: service.into(),
                node_id: "n1".into(),
                started_ns: 0,
            })
            .collect()
    }

    fn swarm(services: usize, replicas: usize) -> (Vec<String>, Vec<ContainerInfo>) {
        let ids: Vec<String> = (0..services).map(|i| format!("s{i:04}")).collect();
        let all = ids.iter().flat_map(|id| containers(id, replicas)).collect();
        (ids, all)
    }

    #[test]
    fn a_swarm_within_the_budget_is_listed_whole_every_tick() {
        let (ids, all) = swarm(10, 10);
        let mut sweep = TaskSweep::new(1_000);
        sweep.reset(ids, &all);
        for _ in 0..3 {
            assert_eq!(sweep.due(), Read::All);
        }
    }

    #[test]
    fn a_large_swarm_is_swept_within_the_budget_and_every_service_is_read_in_turn() {
        // 1,000 services of 10 replicas: 10,000 tasks, 1,000 a tick.
        let (ids, all) = swarm(1_000, 10);
        let mut sweep = TaskSweep::new(1_000);
        sweep.reset(ids.clone(), &all);
        let mut seen = std::collections::BTreeSet::new();
        for tick in 0..10 {
            let Read::Services(read) = sweep.due() else { panic!("tick {tick}: not whole") };
            assert_eq!(read.len(), 100, "tick {tick}: 100 services of 10 tasks");
            let found: Vec<ContainerInfo> = all.iter().filter(|c| read.contains(&c.service_id)).cloned().collect();
            sweep.listed(&Read::Services(read.clone()), &found);
            seen.extend(read);
        }
        assert_eq!(seen.len(), 1_000, "every service read within 10 ticks");
        // And the sweep wraps around.
        let Read::Services(read) = sweep.due() else { panic!() };
        assert_eq!(read[0], ids[0]);
    }

    #[test]
    fn a_service_with_an_event_is_read_at_every_tick_for_a_while_then_joins_the_sweep() {
        let (ids, all) = swarm(1_000, 10);
        let mut sweep = TaskSweep::new(1_000);
        sweep.reset(ids, &all);
        sweep.touched("s0999");
        sweep.touched("new");
        for tick in 0..HOT_TICKS {
            let Read::Services(read) = sweep.due() else { panic!() };
            assert!(read.contains(&"s0999".to_string()) && read.contains(&"new".to_string()), "tick {tick}");
            assert!(read.len() <= 101, "the hot ones count in the budget: {}", read.len());
        }
        let Read::Services(read) = sweep.due() else { panic!() };
        assert!(!read.contains(&"new".to_string()), "cooled down");
        sweep.forget("s0999");
        assert_eq!(sweep.total(), 999 * 10 + 1);
    }

    #[test]
    fn one_service_larger_than_the_budget_is_still_read() {
        let mut sweep = TaskSweep::new(100);
        let all = [containers("big", 5_000), containers("small", 1)].concat();
        sweep.reset(["big".to_string(), "small".to_string()], &all);
        assert_eq!(sweep.due(), Read::Services(vec!["big".into()]));
        assert_eq!(sweep.due(), Read::Services(vec!["small".into()]));
        assert_eq!(sweep.due(), Read::Services(vec!["big".into()]));
    }
}
