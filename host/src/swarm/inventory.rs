//! What runs: Swarm services, their autoscaling labels, and the task
//! containers of each on this node, learnt from Docker's event stream.
//!
//! Two halves:
//! - [`Inventory`]: plain state, changed only by [`Inventory::apply`] with a
//!   [`Change`]; it answers "which service runs this container" and says
//!   which containers the probe must track (and with which thresholds) or
//!   stop tracking. No I/O: unit-tested with made-up changes.
//! - [`watch`]: the task that turns Docker's event stream (service create,
//!   update, remove; container start, die) into [`Change`]s. After every
//!   (re)connection it sends a full [`Change::Resync`] read from the engine,
//!   so nothing missed while Docker was away survives. There is no polling
//!   loop: between resyncs, only events move the inventory.
//!
//! Invariant: this module knows nothing of policies or probes beyond the
//! [`Tracked`] values it hands out; the daemon does the tracking.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum, Service, ServiceSpec};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::client::{Backoff, is_not_found};
use super::labels::{self, LabelErrors, ServiceConfig};
use crate::model::{Thresholds, Tracked};

/// The Swarm label Docker puts on every task container: its service id.
pub const SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";

/// An event stream that lasted this long was healthy: the back-off
/// starts again from its shortest delay.
const HEALTHY_SESSION: std::time::Duration = std::time::Duration::from_secs(10);

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
        })
    }
}

/// Replicas in a service spec; `None` unless the service is replicated
/// (global and job services have no replica count of ours to set).
pub fn spec_replicas(spec: &ServiceSpec) -> Option<u32> {
    let replicated = spec.mode.as_ref()?.replicated.as_ref()?;
    // Docker's default for a replicated service without a count is 1.
    Some(u32::try_from(replicated.replicas.unwrap_or(1).max(0)).unwrap_or(u32::MAX))
}

/// A running task container on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// The service its task belongs to.
    pub service_id: String,
}

/// One thing that happened, as the watcher reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Everything, read after (re)connecting: replaces all that was known.
    Resync {
        /// Every service in the Swarm.
        services: Vec<ServiceInfo>,
        /// Every running task container on this node.
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
    /// Opted in, but a global or job service: replicas are not ours to set.
    NotReplicated,
    /// Opted in with labels that do not parse: left alone until fixed.
    Invalid(LabelErrors),
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
    /// Running task containers on this node: container id -> service id.
    containers: HashMap<String, String>,
    /// What the probe was told to track: container id -> thresholds.
    /// Ordered so that effects come out in a stable order.
    tracked: BTreeMap<String, Thresholds>,
}

impl Inventory {
    /// The service a container belongs to, if known.
    pub fn service_of(&self, container_id: &str) -> Option<&ServiceEntry> {
        self.containers.get(container_id).and_then(|id| self.services.get(id))
    }

    /// A service by id.
    pub fn service(&self, id: &str) -> Option<&ServiceEntry> {
        self.services.get(id)
    }

    /// Autoscaled services.
    pub fn active(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.services.values().filter(|s| s.config().is_some())
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
                self.containers = containers.into_iter().map(|c| (c.id, c.service_id)).collect();
            }
            Change::Service(service) => self.upsert_service(service, &mut effects),
            Change::ServiceRemoved { id } => self.remove_service(&id, &mut effects),
            Change::ContainerStarted(container) => {
                self.containers.insert(container.id, container.service_id);
            }
            Change::ContainerDied { id } => {
                self.containers.remove(&id);
            }
        }
        self.sync_tracking(&mut effects);
        effects
    }

    fn upsert_service(&mut self, info: ServiceInfo, effects: &mut Effects) {
        let status = match (labels::parse(&info.name, &info.labels), info.replicas) {
            (Ok(None), _) => Status::NotEnabled,
            (Err(errors), _) => Status::Invalid(errors),
            (Ok(Some(_)), None) => Status::NotReplicated,
            (Ok(Some(config)), Some(_)) => Status::Active(Arc::new(config)),
        };
        let previous = self.services.get(&info.id).map(|s| &s.status);
        if previous != Some(&status) {
            let service = info.name.clone();
            match &status {
                Status::Active(config) => effects.notices.push(Notice::Enabled { service, config: config.clone() }),
                Status::Invalid(errors) => effects.notices.push(Notice::Invalid { service, errors: errors.clone() }),
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
        for (container, service_id) in &self.containers {
            if let Some(config) = self.services.get(service_id).and_then(ServiceEntry::config) {
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

/// Follow Docker's event stream and send [`Change`]s until `changes` is
/// closed. Never returns early on Docker errors: it logs, backs off and
/// reconnects, and resyncs everything after each reconnection.
pub async fn watch(docker: Docker, changes: mpsc::Sender<Change>) {
    let mut backoff = Backoff::new();
    let mut connected_before = false;
    loop {
        let started = std::time::Instant::now();
        let result = session(&docker, &changes, &mut connected_before).await;
        if changes.is_closed() {
            return;
        }
        // A stream that held for a while was healthy: reconnect promptly.
        // One that fails at once must not become a busy loop.
        if started.elapsed() > HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        match result {
            Ok(()) => tracing::warn!("docker closed the event stream; reconnecting in {delay:?}"),
            Err(err) => tracing::warn!("lost the docker event stream: {err}; reconnecting in {delay:?}"),
        }
        tokio::time::sleep(delay).await;
    }
}

/// One connection: subscribe, resync, then follow events until the stream
/// ends or fails.
async fn session(
    docker: &Docker,
    changes: &mpsc::Sender<Change>,
    connected_before: &mut bool,
) -> Result<(), bollard::errors::Error> {
    // Subscribe from the engine's own "now", read before the resync: events
    // that happen while we list everything are replayed from Docker's event
    // buffer, and applying them again is harmless.
    let since = docker.info().await?.system_time.as_deref().and_then(api_timestamp);
    let filters = HashMap::from([
        ("type".to_string(), vec!["service".to_string(), "container".to_string()]),
        ("event".to_string(), ["create", "update", "remove", "start", "die"].iter().map(|e| e.to_string()).collect()),
    ]);
    let mut events = std::pin::pin!(docker.events(Some(EventsOptions { since, until: None, filters: Some(filters) })));

    let resync = read_everything(docker).await?;
    let (services, containers) = match &resync {
        Change::Resync { services, containers } => (services.len(), containers.len()),
        _ => (0, 0),
    };
    if changes.send(resync).await.is_err() {
        return Ok(());
    }
    if *connected_before {
        tracing::info!(services, containers, "reconnected to docker; inventory resynchronised");
    } else {
        tracing::info!(services, containers, "inventory read; following docker events");
    }
    *connected_before = true;

    while let Some(event) = events.next().await {
        let event = event?;
        for change in interpret(docker, event).await? {
            if changes.send(change).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The engine's clock (`SystemTime` in `/info`, RFC 3339 with nanoseconds)
/// as the events API's `since` wants it: `seconds.nanoseconds` since the
/// Unix epoch. `None` if it does not parse (then we subscribe from "now"
/// and rely on the resync alone).
fn api_timestamp(rfc3339: &str) -> Option<String> {
    let (date, rest) = rfc3339.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    // Time, fraction and offset: 04:10:21.041417123Z or ...+02:00.
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let offset = match zone.as_bytes().first() {
        Some(b'+' | b'-') => {
            let (h, m) = zone[1..].split_once(':')?;
            let seconds = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if zone.starts_with('-') { -seconds } else { seconds }
        }
        _ => 0,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let nanos: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(format!("{seconds}.{nanos}"))
}

/// Every service, and every running task container on this node.
async fn read_everything(docker: &Docker) -> Result<Change, bollard::errors::Error> {
    let services = docker.list_services(None).await?.iter().filter_map(ServiceInfo::from_service).collect();
    let options = ListContainersOptions {
        filters: Some(HashMap::from([("label".to_string(), vec![SERVICE_ID_LABEL.to_string()])])),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .filter_map(|c| {
            let service_id = c.labels.as_ref()?.get(SERVICE_ID_LABEL)?.clone();
            Some(ContainerInfo { id: c.id?, service_id })
        })
        .collect();
    Ok(Change::Resync { services, containers })
}

/// What one Docker event means for the inventory.
async fn interpret(docker: &Docker, event: EventMessage) -> Result<Vec<Change>, bollard::errors::Error> {
    let action = event.action.as_deref().unwrap_or_default();
    let actor = event.actor.unwrap_or_default();
    let Some(id) = actor.id else { return Ok(Vec::new()) };
    match (event.typ, action) {
        (Some(EventMessageTypeEnum::SERVICE), "create" | "update") => match docker.inspect_service(&id, None).await {
            Ok(service) => Ok(ServiceInfo::from_service(&service).map(Change::Service).into_iter().collect()),
            Err(err) if is_not_found(&err) => Ok(vec![Change::ServiceRemoved { id }]),
            Err(err) => Err(err),
        },
        (Some(EventMessageTypeEnum::SERVICE), "remove") => Ok(vec![Change::ServiceRemoved { id }]),
        (Some(EventMessageTypeEnum::CONTAINER), "start") => {
            let service_id = actor.attributes.as_ref().and_then(|a| a.get(SERVICE_ID_LABEL)).cloned();
            Ok(service_id
                .map(|service_id| Change::ContainerStarted(ContainerInfo { id, service_id }))
                .into_iter()
                .collect())
        }
        (Some(EventMessageTypeEnum::CONTAINER), "die") => Ok(vec![Change::ContainerDied { id }]),
        _ => Ok(Vec::new()),
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
        ContainerInfo { id: id.into(), service_id: service_id.into() }
    }

    fn tracked_ids(effects: &Effects) -> Vec<&str> {
        effects.track.iter().map(|t| t.container_id.as_str()).collect()
    }

    #[test]
    fn engine_time_becomes_an_events_api_timestamp() {
        assert_eq!(api_timestamp("1970-01-01T00:00:00Z").as_deref(), Some("0.000000000"));
        assert_eq!(api_timestamp("2026-11-28T04:10:21.041417123Z").as_deref(), Some("1795839021.041417123"));
        assert_eq!(api_timestamp("2026-11-28T05:10:21.5+01:00").as_deref(), Some("1795839021.500000000"));
        assert_eq!(api_timestamp("2000-02-29T12:00:00Z").as_deref(), Some("951825600.000000000"));
        assert_eq!(api_timestamp("yesterday"), None);
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
        assert_eq!(effects.track[0].thresholds.cpu, Band { upper: Some(0.8), lower: Some(0.2) });
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
        assert_eq!(effects.track[0].thresholds.cpu.upper, Some(0.9));
        assert!(matches!(effects.notices.as_slice(), [Notice::Enabled { .. }]));

        // Malformed: untracked, one notice naming the label, the service retired.
        labels.push(("autoscale.max", "lots"));
        let effects = inv.apply(Change::Service(service("s1", "web", Some(1), &labels)));
        assert_eq!(effects.untrack, ["c1"]);
        assert_eq!(effects.retired, ["s1"]);
        match effects.notices.as_slice() {
            [Notice::Invalid { service, errors }] => {
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
}
