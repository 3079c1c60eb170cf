//! The inventory's running task containers, by id and by service.
//!
//! The event loop asks for a service's containers on its hot path (is any
//! replica still to send its first reading?), once per reading while the
//! service view fills. Filtering every container of the swarm for that
//! made a reading cost grow with the swarm: at 10,000 replicas it was most
//! of the decider's time (docs/scale.md). The index by service makes it
//! cost the service's replicas only.

use std::collections::{BTreeSet, HashMap, HashSet};

/// A running task container, as Swarm lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// The service its task belongs to.
    pub service_id: String,
    /// The Swarm node its task runs on (the probe that measures it is that
    /// node's).
    pub node_id: String,
    /// When it started running, CLOCK_MONOTONIC ns (warm-up counts from here).
    pub started_ns: u64,
}

/// Containers by id, with an index by service id kept in step.
#[derive(Debug, Default)]
pub struct Containers {
    /// Container id -> container.
    by_id: HashMap<String, ContainerInfo>,
    /// Service id -> its containers' ids (ordered: a stable order out).
    by_service: HashMap<String, BTreeSet<String>>,
}

impl Containers {
    /// A container by id.
    pub fn get(&self, id: &str) -> Option<&ContainerInfo> {
        self.by_id.get(id)
    }

    /// Every container, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.by_id.values()
    }

    /// Every container with its id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ContainerInfo)> {
        self.by_id.iter()
    }

    /// The containers of service `service_id`.
    pub fn of_service<'a>(&'a self, service_id: &str) -> impl Iterator<Item = &'a ContainerInfo> + 'a {
        self.by_service.get(service_id).into_iter().flatten().filter_map(|id| self.by_id.get(id))
    }

    /// Add or replace a container.
    pub fn insert(&mut self, container: ContainerInfo) {
        self.remove(&container.id);
        self.by_service.entry(container.service_id.clone()).or_default().insert(container.id.clone());
        self.by_id.insert(container.id.clone(), container);
    }

    /// Remove a container.
    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id)
            && let Some(ids) = self.by_service.get_mut(&old.service_id)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_service.remove(&old.service_id);
            }
        }
    }

    /// Replace every container.
    pub fn replace_all(&mut self, containers: Vec<ContainerInfo>) {
        *self = Containers::default();
        for container in containers {
            self.insert(container);
        }
    }

    /// Replace the containers of `services` (a re-read of their tasks).
    pub fn replace_services(&mut self, services: &[String], containers: Vec<ContainerInfo>) {
        let read: HashSet<&str> = services.iter().map(String::as_str).collect();
        for service in &read {
            for id in self.by_service.remove(*service).unwrap_or_default() {
                self.by_id.remove(&id);
            }
        }
        for container in containers {
            self.insert(container);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, service_id: &str) -> ContainerInfo {
        ContainerInfo { id: id.into(), service_id: service_id.into(), node_id: "n1".into(), started_ns: 0 }
    }

    fn of(c: &Containers, service: &str) -> Vec<String> {
        c.of_service(service).map(|c| c.id.clone()).collect()
    }

    #[test]
    fn the_index_by_service_follows_every_change() {
        let mut c = Containers::default();
        c.replace_all(vec![container("a", "s1"), container("b", "s1"), container("x", "s2")]);
        assert_eq!(
            (of(&c, "s1"), of(&c, "s2"), of(&c, "s3")),
            (vec!["a".into(), "b".into()], vec!["x".into()], vec![])
        );
        c.insert(container("c", "s1"));
        c.remove("a");
        assert_eq!(of(&c, "s1"), ["b", "c"]);
        // The same id under another service moves.
        c.insert(container("b", "s2"));
        assert_eq!((of(&c, "s1"), of(&c, "s2")), (vec!["c".to_string()], vec!["b".to_string(), "x".to_string()]));
        c.replace_services(&["s2".into(), "s9".into()], vec![container("y", "s2"), container("z", "s9")]);
        assert_eq!((of(&c, "s1"), of(&c, "s2"), of(&c, "s9")), (vec!["c".into()], vec!["y".into()], vec!["z".into()]));
        assert!(c.get("x").is_none() && c.get("b").is_none(), "the re-read services' old containers are gone");
        c.remove("c");
        assert!(of(&c, "s1").is_empty());
        assert!(!c.by_service.contains_key("s1"), "an emptied service leaves the index");
        c.replace_all(Vec::new());
        assert_eq!((c.values().count(), c.by_service.len()), (0, 0));
    }
}
