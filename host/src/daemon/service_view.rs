//! The service view: the latest value of every metric of every running
//! replica of a service, and the aggregate over them that policies decide on
//! (the state's aggregates since contract 0.2), as the Kubernetes HPA
//! decides on the mean over ready pods.
//!
//! A replica counts in an aggregate when it is past its warm-up
//! (`autoscale.warmup`) and its latest value of that metric was measured
//! within the window; replicas still warming up are counted apart. When no
//! replica is past its warm-up (a service just created, or back from zero)
//! the oldest one counts, or a fresh service under load could not scale for
//! its first `warmup`; the newcomers of a scale-out still warm up apart. The
//! window is a few sample intervals long, so a replica (or a node) that
//! stops reporting drops out of the aggregate on its own.
//!
//! It holds only [`Reading`]s, of metrics of the table
//! ([`crate::model::METRICS`]), and each replica's memory limit (a signal,
//! not a metric): a probe's control signals never reach it. Aggregates come
//! in the table's order.
//!
//! Pure state, no I/O: the event loop feeds it readings and asks for
//! aggregates.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::{Aggregate, METRICS, Metric, Stats, Unit};
use crate::probe::{ProbeEvent, Reading, Signal};

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
struct Latest {
    /// The value, in `unit`.
    value: f64,
    /// Its unit.
    unit: Unit,
    /// When it was measured, CLOCK_MONOTONIC ns.
    at_ns: u64,
}

/// One running replica.
#[derive(Debug, Clone, Default)]
struct Replica {
    /// When it started, CLOCK_MONOTONIC ns.
    started_ns: u64,
    /// Its memory limit in bytes, when it has one.
    memory_limit: Option<f64>,
    /// The latest reading of each metric.
    latest: Vec<(Metric, Latest)>,
}

/// The latest readings of every replica of every service.
#[derive(Debug, Default)]
pub struct ServiceView {
    /// Service id -> container id -> replica.
    services: HashMap<String, HashMap<String, Replica>>,
    /// Container id -> service id, to forget a container by id.
    owners: HashMap<String, String>,
}

impl ServiceView {
    /// Take a probe's event about a replica of `service` (started at
    /// `started_ns`): a [`Reading`] is recorded and handed back, the one
    /// kind of event a policy is asked about; a memory limit is recorded as
    /// the replica's; every other signal is not the view's and is dropped.
    pub fn admit(&mut self, service: &str, started_ns: u64, event: ProbeEvent) -> Option<Reading> {
        match event {
            ProbeEvent::Reading(reading) => {
                self.record(service, started_ns, &reading);
                Some(reading)
            }
            ProbeEvent::Signal(Signal::MemoryLimit { container_id, bytes, .. }) => {
                self.set_memory_limit(service, &container_id, started_ns, bytes);
                None
            }
            ProbeEvent::Signal(_) => None,
        }
    }

    /// Record a reading of a replica of `service` that started at
    /// `started_ns`.
    pub fn record(&mut self, service: &str, started_ns: u64, reading: &Reading) {
        let replica = self.replica(service, &reading.container_id, started_ns);
        let latest = Latest { value: reading.value, unit: reading.unit.clone(), at_ns: reading.timestamp_ns };
        match replica.latest.iter_mut().find(|(m, _)| *m == reading.metric) {
            Some((_, old)) if old.at_ns <= latest.at_ns => *old = latest,
            Some(_) => {}
            None => replica.latest.push((reading.metric.clone(), latest)),
        }
    }

    /// Record a replica's memory limit, bytes (0: none): it feeds memory's
    /// `of-limit` and is no aggregate of its own.
    pub fn set_memory_limit(&mut self, service: &str, container: &str, started_ns: u64, bytes: u64) {
        self.replica(service, container, started_ns).memory_limit = (bytes > 0).then_some(bytes as f64);
    }

    /// The replica `container` of `service`, created when new.
    fn replica(&mut self, service: &str, container: &str, started_ns: u64) -> &mut Replica {
        // A replica that reported before: no key to allocate (the hot path,
        // one reading per replica per second).
        if self.services.get(service).is_some_and(|replicas| replicas.contains_key(container)) {
            let replica = self.services.get_mut(service).and_then(|r| r.get_mut(container)).expect("present");
            replica.started_ns = started_ns;
            return replica;
        }
        self.owners.entry(container.to_string()).or_insert_with(|| service.to_string());
        let replica = self
            .services
            .entry(service.to_string())
            .or_default()
            .entry(container.to_string())
            .or_insert_with(|| Replica { started_ns, ..Replica::default() });
        replica.started_ns = started_ns;
        replica
    }

    /// Whether `container` of `service` has reported anything.
    pub fn has_reading(&self, service: &str, container: &str) -> bool {
        self.services.get(service).is_some_and(|replicas| replicas.contains_key(container))
    }

    /// A container stopped: it no longer counts.
    pub fn forget_container(&mut self, container: &str) {
        if let Some(service) = self.owners.remove(container)
            && let Some(replicas) = self.services.get_mut(&service)
        {
            replicas.remove(container);
            if replicas.is_empty() {
                self.services.remove(&service);
            }
        }
    }

    /// A service is gone or no longer autoscaled.
    pub fn forget_service(&mut self, service: &str) {
        if let Some(replicas) = self.services.remove(service) {
            for container in replicas.keys() {
                self.owners.remove(container);
            }
        }
    }

    /// The aggregate of every metric measured for `service` at `now_ns`:
    /// a metric no counted replica reported within `window` carries no
    /// figure and is left out (the contract's `metrics` holds what is
    /// measured now; each entry left out saves lowering its name and record
    /// into the policy on every call).
    pub fn aggregates(&self, service: &str, now_ns: u64, warmup: Duration, window: Duration) -> Vec<Aggregate> {
        let Some(replicas) = self.services.get(service) else { return Vec::new() };
        let warmup_ns = u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX);
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let young = |r: &Replica| now_ns.saturating_sub(r.started_ns) < warmup_ns;
        // With no replica past its warm-up, the oldest speaks for the
        // service (a newcomer of a scale-out never does).
        let all_young = replicas.values().all(young);
        let oldest = replicas.values().map(|r| r.started_ns).min().unwrap_or(0);
        let is_warming = |r: &Replica| young(r) && !(all_young && r.started_ns == oldest);
        let warming = u32::try_from(replicas.values().filter(|r| is_warming(r)).count()).unwrap_or(u32::MAX);
        let mut metrics: Vec<&Metric> = Vec::new();
        for replica in replicas.values() {
            for (metric, _) in &replica.latest {
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
        }
        // The table's order; a name the table does not know (a replayed
        // trace's) after it.
        metrics.sort_by_key(|m| METRICS.iter().position(|def| def.name == m.name()).unwrap_or(METRICS.len()));
        metrics
            .into_iter()
            .filter_map(|metric| {
                let counted: Vec<(&Latest, Option<f64>)> = replicas
                    .values()
                    .filter(|r| !is_warming(r))
                    .filter_map(|r| {
                        let reading = r.latest.iter().find(|(m, _)| m == metric).map(|(_, reading)| reading)?;
                        (now_ns.saturating_sub(reading.at_ns) <= window_ns).then_some((reading, r.memory_limit))
                    })
                    .collect();
                if counted.is_empty() {
                    return None;
                }
                let unit = counted[0].0.unit.clone();
                let of_limit = (unit == Unit::Bytes && counted.iter().all(|(_, l)| l.is_some()))
                    .then(|| Stats::of(counted.iter().map(|(r, limit)| r.value / limit.unwrap_or(1.0))));
                Some(Aggregate {
                    metric: metric.clone(),
                    unit,
                    reporting: u32::try_from(counted.len()).unwrap_or(u32::MAX),
                    warming,
                    value: Stats::of(counted.iter().map(|(r, _)| r.value)),
                    of_limit,
                    window_ns,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const WARMUP: Duration = Duration::from_secs(10);
    const WINDOW: Duration = Duration::from_secs(3);

    fn reading(container: &str, metric: Metric, value: f64, unit: Unit, at: u64) -> Reading {
        let kind = crate::model::EventKind::Sample;
        Reading { container_id: container.into(), metric, value, unit, kind, timestamp_ns: at }
    }

    fn cpu(view: &mut ServiceView, container: &str, started: u64, value: f64, at: u64) {
        view.record("s1", started, &reading(container, Metric::CPU, value, Unit::FractionOfLimit, at));
    }

    fn cpu_of(view: &ServiceView, now: u64) -> Aggregate {
        view.aggregates("s1", now, WARMUP, WINDOW).into_iter().find(|a| a.metric == Metric::CPU).expect("cpu")
    }

    #[test]
    fn a_replica_has_a_reading_once_it_reported_until_it_is_forgotten() {
        let mut view = ServiceView::default();
        assert!(!view.has_reading("s1", "a"));
        cpu(&mut view, "a", 0, 0.5, SEC);
        assert!(view.has_reading("s1", "a") && !view.has_reading("s1", "b") && !view.has_reading("s2", "a"));
        view.forget_container("a");
        assert!(!view.has_reading("s1", "a"));
    }

    #[test]
    fn two_saturated_and_one_idle_replica_average_out() {
        let mut view = ServiceView::default();
        cpu(&mut view, "a", 0, 1.0, 100 * SEC);
        cpu(&mut view, "b", 0, 0.9, 100 * SEC);
        cpu(&mut view, "c", 0, 0.05, 100 * SEC);
        let agg = cpu_of(&view, 101 * SEC);
        assert_eq!((agg.reporting, agg.warming), (3, 0));
        assert!((agg.value.mean - 0.65).abs() < 1e-9, "{agg:?}");
        assert_eq!((agg.value.min, agg.value.max), (0.05, 1.0));
        assert!((agg.value.sum - 1.95).abs() < 1e-9);
        assert_eq!(agg.window_ns, 3 * SEC);
    }

    #[test]
    fn a_new_replica_warms_up_apart() {
        let mut view = ServiceView::default();
        cpu(&mut view, "a", 0, 0.9, 100 * SEC);
        cpu(&mut view, "new", 95 * SEC, 0.0, 100 * SEC);
        let agg = cpu_of(&view, 100 * SEC);
        assert_eq!((agg.reporting, agg.warming), (1, 1));
        assert_eq!(agg.value.mean, 0.9, "the idle newcomer does not pull the mean down");
        // Past its warm-up (and both still reporting), it counts.
        cpu(&mut view, "a", 0, 0.9, 105 * SEC);
        cpu(&mut view, "new", 95 * SEC, 0.0, 105 * SEC);
        let agg = cpu_of(&view, 105 * SEC + 1);
        assert_eq!((agg.reporting, agg.warming), (2, 0));
    }

    #[test]
    fn a_service_whose_replicas_are_all_young_is_judged_by_the_oldest() {
        let mut view = ServiceView::default();
        cpu(&mut view, "first", 98 * SEC, 1.0, 100 * SEC);
        let agg = cpu_of(&view, 100 * SEC);
        assert_eq!((agg.reporting, agg.warming), (1, 0), "a fresh service under load can scale at once");
        assert_eq!(agg.value.mean, 1.0);
        // Its scale-out's newcomer, idle, while the first is still young:
        // it warms up apart and does not pull the mean down.
        cpu(&mut view, "first", 98 * SEC, 1.0, 101 * SEC);
        cpu(&mut view, "second", 100 * SEC, 0.0, 101 * SEC);
        let agg = cpu_of(&view, 101 * SEC);
        assert_eq!((agg.reporting, agg.warming), (1, 1));
        assert_eq!(agg.value.mean, 1.0);
        // Once the first is past its warm-up, the rule is the usual one.
        cpu(&mut view, "first", 98 * SEC, 1.0, 109 * SEC);
        cpu(&mut view, "second", 100 * SEC, 0.0, 109 * SEC);
        let agg = cpu_of(&view, 109 * SEC);
        assert_eq!((agg.reporting, agg.warming), (1, 1));
    }

    #[test]
    fn a_silent_replica_drops_out_after_the_window_and_when_it_stops() {
        let mut view = ServiceView::default();
        cpu(&mut view, "a", 0, 0.9, 100 * SEC);
        cpu(&mut view, "b", 0, 0.1, 96 * SEC);
        assert_eq!(cpu_of(&view, 100 * SEC).reporting, 1, "b's value is older than the window");
        view.forget_container("a");
        // b still runs but said nothing within the window: no figure, so
        // no aggregate (absent means not measured now).
        assert!(view.aggregates("s1", 100 * SEC, WARMUP, WINDOW).is_empty());
        cpu(&mut view, "b", 0, 0.2, 101 * SEC);
        assert_eq!(cpu_of(&view, 101 * SEC).reporting, 1, "back as soon as it reports");
        view.forget_container("b");
        assert!(view.aggregates("s1", 100 * SEC, WARMUP, WINDOW).is_empty());
    }

    #[test]
    fn memory_comes_in_bytes_and_as_a_fraction_of_the_limit() {
        let mut view = ServiceView::default();
        view.set_memory_limit("s1", "a", 0, 1000);
        view.set_memory_limit("s1", "b", 0, 2000);
        view.record("s1", 0, &reading("a", Metric::CONNECTIONS, 3.0, Unit::Count, 100 * SEC));
        view.record("s1", 0, &reading("a", Metric::MEMORY, 500.0, Unit::Bytes, 100 * SEC));
        view.record("s1", 0, &reading("b", Metric::MEMORY, 1500.0, Unit::Bytes, 100 * SEC));
        let all = view.aggregates("s1", 100 * SEC, WARMUP, WINDOW);
        let names: Vec<&str> = all.iter().map(|a| a.metric.name()).collect();
        assert_eq!(names, ["memory", "connections"], "the table's order, and no aggregate of the limit");
        let memory = all.iter().find(|a| a.metric == Metric::MEMORY).expect("memory");
        assert_eq!((memory.value.sum, memory.unit.clone()), (2000.0, Unit::Bytes));
        let of_limit = memory.of_limit.expect("both replicas have limits");
        assert_eq!((of_limit.min, of_limit.max), (0.5, 0.75));
        let conns = all.iter().find(|a| a.metric == Metric::CONNECTIONS).expect("connections");
        assert_eq!((conns.reporting, conns.value.sum, conns.of_limit), (1, 3.0, None));
    }

    #[test]
    fn no_control_signal_reaches_the_view_or_a_policy() {
        let mut view = ServiceView::default();
        let at = 100 * SEC;
        let signals = [
            Signal::Accepted { container_id: "a".into(), count: 5, timestamp_ns: at },
            Signal::MemoryLimit { container_id: "a".into(), bytes: 1 << 30, timestamp_ns: at },
            Signal::Wake { container_id: "a".into(), timestamp_ns: at },
            Signal::PortSyn { port: 8080, timestamp_ns: at },
            Signal::PortListen { port: 8080, timestamp_ns: at },
        ];
        for signal in signals.clone() {
            assert_eq!(view.admit("s1", 0, ProbeEvent::Signal(signal.clone())), None, "{signal:?} asks no policy");
        }
        // Only the memory limit left a trace, and it is no aggregate.
        assert!(view.aggregates("s1", at, WARMUP, WINDOW).is_empty());
        // A reading of every metric of the table is handed on, and is all
        // the state's aggregates hold.
        let mut asked = Vec::new();
        for def in METRICS {
            let reading = reading("a", def.metric(), 1.0, def.unit.unit(false), at);
            asked.extend(view.admit("s1", 0, ProbeEvent::Reading(reading)));
            for signal in signals.clone() {
                assert_eq!(view.admit("s1", 0, ProbeEvent::Signal(signal)), None);
            }
        }
        let names: Vec<&str> = asked.iter().map(|r| r.metric.name()).collect();
        let table: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(names, table, "one policy call per reading, none per signal");
        let state = view.aggregates("s1", at, WARMUP, WINDOW);
        let aggregated: Vec<&str> = state.iter().map(|a| a.metric.name()).collect();
        assert_eq!(aggregated, table);
        for signal in &signals {
            assert!(!aggregated.contains(&signal.name()) && !names.contains(&signal.name()), "{}", signal.name());
        }
        let memory = state.iter().find(|a| a.metric == Metric::MEMORY).expect("memory");
        assert!(memory.of_limit.is_some(), "the limit signal feeds memory's of-limit");
    }
}
