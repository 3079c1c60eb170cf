//! The inventory's state: services, their autoscaling status and their
//! running task containers, changed only by [`Inventory::apply`] with a
//! [`Change`]. It answers "which service runs this container" and says which
//! containers the probe must track (and with which thresholds) or stop
//! tracking. No I/O: unit-tested with made-up changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard::models::{EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, Service, ServiceSpec};

use super::super::labels::{self, LabelErrors, Published, ServiceConfig};
pub use super::containers::ContainerInfo;
use super::containers::Containers;
use crate::model::{Thresholds, Tracked};

/// A service as read from Docker.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    /// Swarm service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Spec version index (Swarm's optimistic concurrency token).
    pub version: u64,
    /// Replicas in the spec; `None` for global and job services.
    pub replicas: Option<u32>,
    /// Service labels (not container labels).
    pub labels: HashMap<String, String>,
    /// TCP ports the spec publishes (`autoscale.zero=remove` holds them).
    pub published: Vec<Published>,
}

impl ServiceInfo {
    /// Read the parts we use from bollard's service; `None` without an id.
    pub fn from_service(service: &Service) -> Option<ServiceInfo> {
        let spec = service.spec.as_ref();
        Some(ServiceInfo {
            id: service.id.clone()?,
            name: spec.and_then(|s| s.name.clone()).unwrap_or_default(),
            version: service.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            replicas: spec.and_then(spec_replicas),
            labels: spec.and_then(|s| s.labels.clone()).unwrap_or_default(),
            published: spec.map(published_ports).unwrap_or_default(),
        })
    }
}

/// The TCP ports a spec publishes, and whether in host mode (Docker's
/// default is the ingress routing mesh).
fn published_ports(spec: &ServiceSpec) -> Vec<Published> {
    let ports = spec.endpoint_spec.as_ref().and_then(|e| e.ports.as_deref()).unwrap_or_default();
    ports
        .iter()
        .filter(|p| matches!(p.protocol, None | Some(EndpointPortConfigProtocolEnum::TCP)))
        .filter_map(|p| {
            let port = u16::try_from(p.published_port?).ok().filter(|port| *port > 0)?;
            Some(Published { port, host_mode: p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST) })
        })
        .collect()
}

/// Replicas in a service spec; `None` unless the service is replicated
/// (global and job services have no replica count of ours to set).
pub fn spec_replicas(spec: &ServiceSpec) -> Option<u32> {
    let replicated = spec.mode.as_ref()?.replicated.as_ref()?;
    // Docker's default for a replicated service without a count is 1.
    Some(u32::try_from(replicated.replicas.unwrap_or(1).max(0)).unwrap_or(u32::MAX))
}

/// One thing that happened, as the watcher reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Everything, read after (re)connecting: replaces all that was known.
    Resync {
        /// Every service in the Swarm.
        services: Vec<ServiceInfo>,
        /// Every running task container on this node (on every node in multi-node mode).
        containers: Vec<ContainerInfo>,
    },
    /// A service was created or updated (labels, replicas, version).
    Service(ServiceInfo),
    /// A service was removed.
    ServiceRemoved {
        /// Its id.
        id: String,
    },
    /// A task container started on this node.
    ContainerStarted(ContainerInfo),
    /// Every running task container of the swarm, on every node, as the
    /// leader re-reads them (multi-node mode): replaces the containers
    /// known, keeps the services.
    Containers(Vec<ContainerInfo>),
    /// The running task containers of some services, as the leader re-reads
    /// them in turn (multi-node mode, a swarm too large to list whole every
    /// tick: [`super::sweep`]): replaces the containers known of those
    /// services only.
    ServiceContainers {
        /// The services read.
        services: Vec<String>,
        /// Their running task containers.
        containers: Vec<ContainerInfo>,
    },
    /// A container stopped (died) on this node.
    ContainerDied {
        /// Its id.
        id: String,
    },
}

/// Where a service stands with the autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// No `autoscale.enable=true`: not ours.
    NotEnabled,
    /// Looks opted in (`autoscale.*` labels, a misspelt switch) but has no
    /// `autoscale.enable`: not ours, and the operator is told why.
    NotOptedIn(String),
    /// Opted in, but a global or job service: replicas are not ours to set.
    NotReplicated,
    /// Opted in with labels that do not parse: left alone until fixed.
    Invalid {
        /// Every problem, each naming label and value.
        errors: LabelErrors,
        /// Its `autoscale.*` labels without the prefix, for the checks that
        /// need the policies (the policy's name, unknown label names).
        settings: Vec<(String, String)>,
    },
    /// Autoscaled with this configuration.
    Active(Arc<ServiceConfig>),
}

/// A known service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    /// Swarm service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Spec version index at the last read.
    pub version: u64,
    /// Replicas in the spec at the last read (0 for non-replicated).
    pub replicas: u32,
    /// Whether and how it is autoscaled.
    pub status: Status,
    /// The TCP ports its spec publishes, autoscaled or not: scale to zero
    /// never holds a port another service publishes.
    pub published: Vec<u16>,
}

impl ServiceEntry {
    /// The configuration, if the service is autoscaled.
    pub fn config(&self) -> Option<&Arc<ServiceConfig>> {
        match &self.status {
            Status::Active(config) => Some(config),
            _ => None,
        }
    }
}

/// Something worth one log line: a service's status changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Now autoscaled (new, fixed, or labels changed).
    Enabled {
        /// Service name.
        service: String,
        /// Its configuration.
        config: Arc<ServiceConfig>,
    },
    /// Its labels are wrong; it is left alone.
    Invalid {
        /// Service name.
        service: String,
        /// Every problem, each naming label and value.
        errors: LabelErrors,
        /// Its `autoscale.*` labels without the prefix.
        settings: Vec<(String, String)>,
    },
    /// Looks opted in but is not (see [`Status::NotOptedIn`]).
    NotOptedIn {
        /// Service name.
        service: String,
        /// Why, in words.
        reason: String,
    },
    /// Opted in, but not a replicated service.
    NotReplicated {
        /// Service name.
        service: String,
    },
    /// No longer autoscaled (labels removed or the service removed).
    Disabled {
        /// Service name.
        service: String,
    },
}

/// What the daemon must do after a change.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Containers to start tracking, or to track with new thresholds.
    pub track: Vec<Tracked>,
    /// Containers to stop tracking.
    pub untrack: Vec<String>,
    /// Status changes to log, each once.
    pub notices: Vec<Notice>,
    /// Services that are gone or no longer autoscaled: their pending
    /// actuator work is void.
    pub retired: Vec<String>,
}

/// Services and containers as last reported, and what the probe tracks.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Services by id.
    services: HashMap<String, ServiceEntry>,
    /// Running task containers by container id: this node's, or every node's in multi-node mode.
    containers: Containers,
    /// What the probe was told to track: container id -> thresholds.
    /// Ordered so that effects come out in a stable order.
    tracked: BTreeMap<String, Thresholds>,
}

impl Inventory {
    /// The service a container belongs to, if known.
    pub fn service_of(&self, container_id: &str) -> Option<&ServiceEntry> {
        self.containers.get(container_id).and_then(|c| self.services.get(&c.service_id))
    }

    /// A service by id.
    pub fn service(&self, id: &str) -> Option<&ServiceEntry> {
        self.services.get(id)
    }

    /// A running container by id.
    pub fn container(&self, id: &str) -> Option<&ContainerInfo> {
        self.containers.get(id)
    }

    /// The running task containers of a service on this node.
    pub fn containers_of<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a ContainerInfo> + 'a {
        self.containers.of_service(service_id)
    }

    /// Every known service, autoscaled or not.
    pub fn services(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.services.values()
    }

    /// Autoscaled services.
    pub fn active(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.services.values().filter(|s| s.config().is_some())
    }

    /// The containers the probe was told to track.
    pub fn tracked_ids(&self) -> Vec<String> {
        self.tracked.keys().cloned().collect()
    }

    /// What each node's probe must track (multi-node mode): node id ->
    /// its tracked containers, ordered by container id.
    pub fn tracked_by_node(&self) -> BTreeMap<String, Vec<Tracked>> {
        let mut by_node: BTreeMap<String, Vec<Tracked>> = BTreeMap::new();
        for (container, thresholds) in &self.tracked {
            if let Some(info) = self.containers.get(container) {
                by_node
                    .entry(info.node_id.clone())
                    .or_default()
                    .push(Tracked { container_id: container.clone(), thresholds: *thresholds });
            }
        }
        by_node
    }

    /// The running containers the inventory places on `node_id`.
    pub fn containers_on(&self, node_id: &str) -> Vec<String> {
        self.containers.values().filter(|c| c.node_id == node_id).map(|c| c.id.clone()).collect()
    }

    /// Number of containers the probe tracks.
    pub fn tracked_count(&self) -> usize {
        self.tracked.len()
    }

    /// Apply one change and say what follows from it.
    pub fn apply(&mut self, change: Change) -> Effects {
        let mut effects = Effects::default();
        match change {
            Change::Resync { services, containers } => {
                let seen: std::collections::HashSet<String> = services.iter().map(|s| s.id.clone()).collect();
                let gone: Vec<String> = self.services.keys().filter(|id| !seen.contains(*id)).cloned().collect();
                for id in gone {
                    self.remove_service(&id, &mut effects);
                }
                for service in services {
                    self.upsert_service(service, &mut effects);
                }
                self.containers.replace_all(containers);
            }
            Change::Service(service) => self.upsert_service(service, &mut effects),
            Change::ServiceRemoved { id } => self.remove_service(&id, &mut effects),
            Change::ContainerStarted(container) => {
                self.containers.insert(container);
            }
            Change::Containers(containers) => self.containers.replace_all(containers),
            Change::ServiceContainers { services, containers } => {
                self.containers.replace_services(&services, containers);
            }
            Change::ContainerDied { id } => {
                self.containers.remove(&id);
            }
        }
        self.sync_tracking(&mut effects);
        effects
    }

    fn upsert_service(&mut self, info: ServiceInfo, effects: &mut Effects) {
        let parsed = labels::parse(&info.name, &info.labels).and_then(|config| match config {
            Some(mut config) => match labels::resolve_ports(&info.name, &mut config, &info.published) {
                Ok(()) => Ok(Some(config)),
                Err(err) => Err(LabelErrors(vec![err])),
            },
            None => Ok(None),
        });
        let status = match (parsed, info.replicas) {
            (Ok(None), _) => match labels::not_opted_in(&info.labels) {
                Some(reason) => Status::NotOptedIn(reason),
                None => Status::NotEnabled,
            },
            (Err(errors), _) => Status::Invalid { errors, settings: labels::settings_of(&info.labels) },
            (Ok(Some(_)), None) => Status::NotReplicated,
            (Ok(Some(config)), Some(_)) => Status::Active(Arc::new(config)),
        };
        let previous = self.services.get(&info.id).map(|s| &s.status);
        if previous != Some(&status) {
            let service = info.name.clone();
            match &status {
                Status::Active(config) => effects.notices.push(Notice::Enabled { service, config: config.clone() }),
                Status::Invalid { errors, settings } => effects.notices.push(Notice::Invalid {
                    service,
                    errors: errors.clone(),
                    settings: settings.clone(),
                }),
                Status::NotOptedIn(reason) => {
                    effects.notices.push(Notice::NotOptedIn { service, reason: reason.clone() })
                }
                Status::NotReplicated => effects.notices.push(Notice::NotReplicated { service }),
                Status::NotEnabled if matches!(previous, Some(Status::Active(_))) => {
                    effects.notices.push(Notice::Disabled { service });
                }
                Status::NotEnabled => {}
            }
            if matches!(previous, Some(Status::Active(_))) {
                effects.retired.push(info.id.clone());
            }
        }
        let entry = ServiceEntry {
            id: info.id.clone(),
            name: info.name,
            version: info.version,
            replicas: info.replicas.unwrap_or(0),
            status,
            published: info.published.iter().map(|p| p.port).collect(),
        };
        self.services.insert(info.id, entry);
    }

    fn remove_service(&mut self, id: &str, effects: &mut Effects) {
        if let Some(entry) = self.services.remove(id) {
            if entry.config().is_some() {
                effects.notices.push(Notice::Disabled { service: entry.name });
            }
            effects.retired.push(id.to_string());
        }
    }

    /// Bring `tracked` in line with what should be tracked: every running
    /// container of an autoscaled service, with that service's thresholds.
    fn sync_tracking(&mut self, effects: &mut Effects) {
        let mut wanted: BTreeMap<String, Thresholds> = BTreeMap::new();
        for (container, info) in self.containers.iter() {
            if let Some(config) = self.services.get(&info.service_id).and_then(ServiceEntry::config) {
                wanted.insert(container.clone(), config.thresholds);
            }
        }
        for (container, thresholds) in &wanted {
            if self.tracked.get(container) != Some(thresholds) {
                effects.track.push(Tracked { container_id: container.clone(), thresholds: *thresholds });
            }
        }
        for container in self.tracked.keys() {
            if !wanted.contains_key(container) {
                effects.untrack.push(container.clone());
            }
        }
        self.tracked = wanted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Band;

    fn service(id: &str, name: &str, replicas: Option<u32>, labels: &[(&str, &str)]) -> ServiceInfo {
        ServiceInfo {
            id: id.into(),
            name: name.into(),
            version: 1,
            replicas,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            published: Vec::new(),
        }
    }

    const WEB: &[(&str, &str)] = &[
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "4"),
        ("autoscale.cpu.upper", "0.8"),
        ("autoscale.cpu.lower", "0.2"),
    ];

    fn container(id: &str, service_id: &str) -> ContainerInfo {
        ContainerInfo { id: id.into(), service_id: service_id.into(), node_id: "n1".into(), started_ns: 0 }
    }

    fn tracked_ids(effects: &Effects) -> Vec<&str> {
        effects.track.iter().map(|t| t.container_id.as_str()).collect()
    }

    #[test]
    fn resync_tracks_only_containers_of_autoscaled_services() {
        let mut inv = Inventory::default();
        let effects = inv.apply(Change::Resync {
            services: vec![
                service("s1", "web", Some(2), WEB),
                service("s2", "db", Some(1), &[]),
                service("s3", "agent", None, WEB),
            ],
            containers: vec![
                container("c1", "s1"),
                container("c2", "s1"),
                container("c3", "s2"),
                container("c4", "s3"),
            ],
        });
        assert_eq!(tracked_ids(&effects), ["c1", "c2"]);
        assert_eq!(
            effects.track[0].thresholds.band(&crate::model::Metric::CPU),
            Band { upper: Some(0.8), lower: Some(0.2) }
        );
        assert!(effects.untrack.is_empty());
        assert!(effects.notices.contains(&Notice::NotReplicated { service: "agent".into() }));
        assert_eq!(inv.service_of("c2").map(|s| s.name.as_str()), Some("web"));
        assert_eq!(inv.service_of("c2").map(|s| s.replicas), Some(2));
        assert_eq!(inv.active().count(), 1);
    }

    #[test]
    fn container_events_track_and_untrack() {
        let mut inv = Inventory::default();
        inv.apply(Change::Service(service("s1", "web", Some(1), WEB)));
        let effects = inv.apply(Change::ContainerStarted(container("c1", "s1")));
        assert_eq!(tracked_ids(&effects), ["c1"]);
        // A container of a service we do not autoscale is not tracked.
        let effects = inv.apply(Change::ContainerStarted(container("x", "unknown")));
        assert!(effects.track.is_empty());
        let effects = inv.apply(Change::ContainerDied { id: "c1".into() });
        assert_eq!(effects.untrack, ["c1"]);
        assert_eq!(inv.tracked_count(), 0);
        // Dying twice (an event replayed after a resync) is harmless.
        assert_eq!(inv.apply(Change::ContainerDied { id: "c1".into() }), Effects::default());
    }

    #[test]
    fn label_changes_retrack_and_malformed_labels_untrack_once() {
        let mut inv = Inventory::default();
        inv.apply(Change::Resync {
            services: vec![service("s1", "web", Some(1), WEB)],
            containers: vec![container("c1", "s1")],
        });
        // New thresholds: the container is tracked again with them.
        let mut labels: Vec<(&str, &str)> = WEB.to_vec();
        labels.retain(|(k, _)| *k != "autoscale.cpu.upper");
        labels.push(("autoscale.cpu.upper", "0.9"));
        let effects = inv.apply(Change::Service(service("s1", "web", Some(1), &labels)));
        assert_eq!(tracked_ids(&effects), ["c1"]);
        assert_eq!(effects.track[0].thresholds.band(&crate::model::Metric::CPU).upper, Some(0.9));
        assert!(matches!(effects.notices.as_slice(), [Notice::Enabled { .. }]));

        // Malformed: untracked, one notice naming the label, the service retired.
        labels.push(("autoscale.max", "lots"));
        let effects = inv.apply(Change::Service(service("s1", "web", Some(1), &labels)));
        assert_eq!(effects.untrack, ["c1"]);
        assert_eq!(effects.retired, ["s1"]);
        match effects.notices.as_slice() {
            [Notice::Invalid { service, errors, .. }] => {
                assert_eq!(service, "web");
                assert_eq!(errors.0[0].label, "autoscale.max");
            }
            other => panic!("expected one invalid notice, got {other:?}"),
        }
        // The same malformed labels again (a replica change): no new notice.
        let effects = inv.apply(Change::Service(service("s1", "web", Some(2), &labels)));
        assert!(effects.notices.is_empty() && effects.track.is_empty());
        assert_eq!(inv.service("s1").map(|s| s.replicas), Some(2));
    }

    #[test]
    fn a_removed_service_without_a_port_is_left_alone_and_says_why() {
        let zero: Vec<(&str, &str)> = WEB
            .iter()
            .copied()
            .filter(|(k, _)| *k != "autoscale.min")
            .chain([("autoscale.min", "0"), ("autoscale.zero", "remove")])
            .collect();
        let mut inv = Inventory::default();
        inv.apply(Change::Service(service("s1", "web", Some(1), &zero)));
        match &inv.service("s1").expect("known").status {
            Status::Invalid { errors, .. } => assert_eq!(errors.0[0].label, "autoscale.port"),
            other => panic!("{other:?}"),
        }
        let mut published = service("s1", "web", Some(1), &zero);
        published.published = vec![Published { port: 8080, host_mode: true }];
        inv.apply(Change::Service(published));
        assert_eq!(inv.service("s1").and_then(|s| s.config()).map(|c| c.ports.clone()), Some(vec![8080]));
    }

    #[test]
    fn replica_updates_change_state_but_not_tracking() {
        let mut inv = Inventory::default();
        inv.apply(Change::Resync {
            services: vec![service("s1", "web", Some(1), WEB)],
            containers: vec![container("c1", "s1")],
        });
        let mut updated = service("s1", "web", Some(3), WEB);
        updated.version = 7;
        let effects = inv.apply(Change::Service(updated));
        assert_eq!(effects, Effects::default());
        let entry = inv.service("s1").expect("known");
        assert_eq!((entry.replicas, entry.version), (3, 7));
    }

    #[test]
    fn resync_replaces_everything_that_changed_while_away() {
        let mut inv = Inventory::default();
        inv.apply(Change::Resync {
            services: vec![service("s1", "web", Some(2), WEB), service("s2", "api", Some(1), WEB)],
            containers: vec![container("c1", "s1"), container("c2", "s1"), container("c9", "s2")],
        });
        // While Docker was away: s2 was removed, c2 died, c3 started.
        let effects = inv.apply(Change::Resync {
            services: vec![service("s1", "web", Some(2), WEB)],
            containers: vec![container("c1", "s1"), container("c3", "s1")],
        });
        assert_eq!(tracked_ids(&effects), ["c3"]);
        assert_eq!(effects.untrack, ["c2", "c9"]);
        assert_eq!(effects.retired, ["s2"]);
        assert_eq!(effects.notices, [Notice::Disabled { service: "api".into() }]);
        assert!(inv.service("s2").is_none());
    }

    #[test]
    fn removing_a_service_untracks_its_containers() {
        let mut inv = Inventory::default();
        inv.apply(Change::Resync {
            services: vec![service("s1", "web", Some(1), WEB)],
            containers: vec![container("c1", "s1")],
        });
        let effects = inv.apply(Change::ServiceRemoved { id: "s1".into() });
        assert_eq!(effects.untrack, ["c1"]);
        assert_eq!(effects.retired, ["s1"]);
        // The container mapping stays until it dies; it maps to nothing.
        assert!(inv.service_of("c1").is_none());
    }

    #[test]
    fn cluster_wide_containers_are_tracked_per_node() {
        let mut inv = Inventory::default();
        inv.apply(Change::Resync { services: vec![service("s1", "web", Some(3), WEB)], containers: Vec::new() });
        let on = |id: &str, node: &str| ContainerInfo { node_id: node.into(), ..container(id, "s1") };
        let effects = inv.apply(Change::Containers(vec![on("a", "n1"), on("b", "n3"), on("c", "n3")]));
        assert_eq!(tracked_ids(&effects), ["a", "b", "c"]);
        let by_node = inv.tracked_by_node();
        let ids = |node: &str| by_node[node].iter().map(|t| t.container_id.clone()).collect::<Vec<_>>();
        assert_eq!((ids("n1"), ids("n3")), (vec!["a".to_string()], vec!["b".to_string(), "c".to_string()]));
        let mut on_n3 = inv.containers_on("n3");
        on_n3.sort();
        assert_eq!(on_n3, ["b", "c"]);
        // A re-read that no longer lists b: b is untracked, the service stays.
        let effects = inv.apply(Change::Containers(vec![on("a", "n1"), on("c", "n3")]));
        assert_eq!(effects.untrack, ["b"]);
        assert!(effects.retired.is_empty() && inv.service("s1").is_some());
        // Unchanged re-reads change nothing.
        assert_eq!(inv.apply(Change::Containers(vec![on("a", "n1"), on("c", "n3")])), Effects::default());
    }

    #[test]
    fn a_partial_re_read_replaces_only_the_services_it_read() {
        let mut inv = Inventory::default();
        let services = vec![service("s1", "web", Some(2), WEB), service("s2", "api", Some(2), WEB)];
        inv.apply(Change::Resync { services, containers: vec![container("a", "s1"), container("x", "s2")] });
        // s1 re-read: a is gone, b is new; s2's x, not read, stays.
        let effects = inv
            .apply(Change::ServiceContainers { services: vec!["s1".into()], containers: vec![container("b", "s1")] });
        assert_eq!(tracked_ids(&effects), ["b"]);
        assert_eq!(effects.untrack, ["a"]);
        assert!(inv.container("x").is_some());
        // A service read with nothing running loses all its containers.
        let effects = inv.apply(Change::ServiceContainers { services: vec!["s2".into()], containers: Vec::new() });
        assert_eq!(effects.untrack, ["x"]);
    }
}
