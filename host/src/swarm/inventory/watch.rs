//! Follows Docker's event stream (service create, update, remove; container
//! start, die) and turns it into [`Change`]s for the inventory's state.
//! After every (re)connection it sends a full [`Change::Resync`] read from
//! the engine, so nothing missed while Docker was away survives. There is
//! no polling loop: between resyncs, only events move the inventory.
//!
//! Multi-node mode ([`Scope::Swarm`]) is the exception, on managers only:
//! Docker's event stream carries container events of the local engine
//! alone and no task events, so the containers on other nodes are learned
//! by re-reading the swarm's running tasks every `refresh` and right after
//! each service event (a scale starts tasks elsewhere): the whole swarm's
//! ([`Change::Containers`]) while it is small, in turn a bounded number of
//! services' ([`Change::ServiceContainers`]) once it is large, see
//! [`super::sweep`]. This re-read is the inventory's, not the measurements':
//! those are still pushed by each node's probe.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum, Task, TaskState};
use bollard::query_parameters::{EventsOptions, ListTasksOptions};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::state::{Change, ContainerInfo, ServiceInfo};
use super::sweep::{Read, TASKS_PER_TICK, TaskSweep};
use crate::model::{monotonic_ns, monotonic_of_unix};
use crate::swarm::client::{Backoff, is_not_found, rfc3339_unix_ns};

/// The Swarm label Docker puts on every task container: its service id.
pub const SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";
/// The Swarm label Docker puts on every task container: its task id.
pub const TASK_ID_LABEL: &str = "com.docker.swarm.task.id";
/// The Swarm label Docker puts on every task container: its node id.
pub const NODE_ID_LABEL: &str = "com.docker.swarm.node.id";

/// An event stream that lasted this long was healthy: the back-off
/// starts again from its shortest delay.
const HEALTHY_SESSION: std::time::Duration = std::time::Duration::from_secs(10);

/// Which task containers the inventory covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The containers of this node's engine (single-node mode).
    ThisNode,
    /// Every node's running task containers (multi-node mode, on managers),
    /// re-read every `refresh` and after each service event.
    Swarm {
        /// Time between two re-reads of the swarm's tasks.
        refresh: std::time::Duration,
    },
}

/// Follow Docker's event stream and send [`Change`]s until `changes` is
/// closed. Never returns early on Docker errors: it logs, backs off and
/// reconnects, and resyncs everything after each reconnection.
pub async fn watch(docker: Docker, changes: mpsc::Sender<Change>, scope: Scope) {
    let mut backoff = Backoff::new();
    let mut connected_before = false;
    loop {
        let started = std::time::Instant::now();
        let result = session(&docker, &changes, &mut connected_before, scope).await;
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
            Ok(()) => tracing::warn!(
                "docker closed the event stream; reconnecting in {}",
                crate::units::human_duration(delay)
            ),
            Err(err) => tracing::warn!(
                "lost the docker event stream: {err}; reconnecting in {}",
                crate::units::human_duration(delay)
            ),
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
    scope: Scope,
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

    let resync = read_everything(docker, scope).await?;
    let mut sweep = TaskSweep::new(TASKS_PER_TICK);
    if let Change::Resync { services, containers } = &resync {
        sweep.reset(services.iter().map(|s| s.id.clone()), containers);
    }
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

    let Scope::Swarm { refresh } = scope else {
        while let Some(event) = events.next().await {
            let event = event?;
            for change in interpret(docker, event).await? {
                if changes.send(change).await.is_err() {
                    return Ok(());
                }
            }
        }
        return Ok(());
    };
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        let read = tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return Ok(()) };
                let event = event?;
                let service = matches!(event.typ, Some(EventMessageTypeEnum::SERVICE))
                    .then(|| (event.actor.as_ref().and_then(|a| a.id.clone()), event.action.clone()));
                for change in interpret(docker, event).await? {
                    if changes.send(change).await.is_err() {
                        return Ok(());
                    }
                }
                let Some((Some(id), action)) = service else { continue };
                if action.as_deref() == Some("remove") {
                    sweep.forget(&id);
                    continue;
                }
                // A scale or an update starts and stops tasks on other
                // nodes: look at once, and at the next few ticks.
                sweep.touched(&id);
                Read::Services(vec![id])
            }
            _ = tick.tick() => sweep.due(),
        };
        let change = match &read {
            Read::All => Change::Containers(swarm_containers(docker, None).await?),
            Read::Services(ids) => {
                let containers = services_containers(docker, ids, &mut sweep).await?;
                Change::ServiceContainers { services: ids.clone(), containers }
            }
        };
        if let Change::Containers(c) | Change::ServiceContainers { containers: c, .. } = &change {
            sweep.listed(&read, c);
        }
        if changes.send(change).await.is_err() {
            return Ok(());
        }
    }
}

/// The engine's clock (`SystemTime` in `/info`, RFC 3339 with nanoseconds)
/// as the events API's `since` wants it: `seconds.nanoseconds` since the
/// Unix epoch. `None` if it does not parse (then we subscribe from "now"
/// and rely on the resync alone).
fn api_timestamp(rfc3339: &str) -> Option<String> {
    let ns = rfc3339_unix_ns(rfc3339)?;
    Some(format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000)))
}

/// Every service, and every running task container on this node (every
/// node's, for [`Scope::Swarm`]), as Swarm lists them: a container counts
/// for a service only if Swarm names it as the container of one of the
/// service's tasks (labels can be forged by anyone who can start a
/// container).
async fn read_everything(docker: &Docker, scope: Scope) -> Result<Change, bollard::errors::Error> {
    let services = docker.list_services(None).await?.iter().filter_map(ServiceInfo::from_service).collect();
    let node = match scope {
        Scope::ThisNode => Some(docker.info().await?.swarm.and_then(|s| s.node_id).unwrap_or_default()),
        Scope::Swarm { .. } => None,
    };
    let containers = swarm_containers(docker, node).await?;
    Ok(Change::Resync { services, containers })
}

/// The running task containers on `node`, or on every node.
async fn swarm_containers(docker: &Docker, node: Option<String>) -> Result<Vec<ContainerInfo>, bollard::errors::Error> {
    let mut filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
    if let Some(node) = node {
        filters.insert("node".to_string(), vec![node]);
    }
    let tasks = docker.list_tasks(Some(ListTasksOptions { filters: Some(filters) })).await?;
    Ok(tasks.iter().filter_map(running_container).collect())
}

/// The running task containers of `services`. A service removed meanwhile
/// makes the engine refuse the whole list (404): then each is read alone,
/// and the ones gone are forgotten (their removal event follows).
async fn services_containers(
    docker: &Docker,
    services: &[String],
    sweep: &mut TaskSweep,
) -> Result<Vec<ContainerInfo>, bollard::errors::Error> {
    let list = |ids: Vec<String>| async move {
        let filters =
            HashMap::from([("desired-state".to_string(), vec!["running".to_string()]), ("service".to_string(), ids)]);
        let tasks = docker.list_tasks(Some(ListTasksOptions { filters: Some(filters) })).await?;
        Ok::<_, bollard::errors::Error>(tasks.iter().filter_map(running_container).collect::<Vec<_>>())
    };
    match list(services.to_vec()).await {
        Err(err) if is_not_found(&err) => {}
        other => return other,
    }
    let mut all = Vec::new();
    for id in services {
        match list(vec![id.clone()]).await {
            Ok(found) => all.extend(found),
            Err(err) if is_not_found(&err) => sweep.forget(id),
            Err(err) => return Err(err),
        }
    }
    Ok(all)
}

/// The running container of a task, if it has one.
fn running_container(task: &Task) -> Option<ContainerInfo> {
    let status = task.status.as_ref()?;
    if status.state != Some(TaskState::RUNNING) {
        return None;
    }
    let id = status.container_status.as_ref()?.container_id.clone()?;
    let started_ns = status.timestamp.as_deref().and_then(rfc3339_unix_ns).map_or_else(monotonic_ns, monotonic_of_unix);
    Some(ContainerInfo { id, service_id: task.service_id.clone()?, node_id: task.node_id.clone()?, started_ns })
}

/// A container that started with a task label: counted only if Swarm's task
/// of that id names this container and this service.
async fn verified_task_container(
    docker: &Docker,
    container_id: String,
    attributes: &HashMap<String, String>,
    started_ns: u64,
) -> Result<Option<ContainerInfo>, bollard::errors::Error> {
    let (Some(service_id), Some(task_id)) = (attributes.get(SERVICE_ID_LABEL), attributes.get(TASK_ID_LABEL)) else {
        return Ok(None);
    };
    let task = match docker.inspect_task(task_id).await {
        Ok(task) => task,
        Err(err) if is_not_found(&err) => Task::default(),
        Err(err) => return Err(err),
    };
    // Swarm records the task's container a moment after the container
    // starts: a task of this service that names no container yet is taken
    // at its word; one that names another container is a forgery.
    let named = task.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.container_id.as_deref());
    let listed = task.service_id.as_deref() == Some(service_id.as_str())
        && named.is_none_or(|named| named.is_empty() || named == container_id);
    if !listed {
        tracing::warn!(
            container = %container_id,
            "container {container_id} carries the labels of service {service_id} (task {task_id}) but swarm lists no such task container; it is not counted"
        );
        return Ok(None);
    }
    let node_id = task.node_id.clone().or_else(|| attributes.get(NODE_ID_LABEL).cloned()).unwrap_or_default();
    Ok(Some(ContainerInfo { id: container_id, service_id: service_id.clone(), node_id, started_ns }))
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
            let started_ns = event.time_nano.map_or_else(monotonic_ns, |t| monotonic_of_unix(i128::from(t)));
            let attributes = actor.attributes.unwrap_or_default();
            let container = verified_task_container(docker, id, &attributes, started_ns).await?;
            Ok(container.map(Change::ContainerStarted).into_iter().collect())
        }
        (Some(EventMessageTypeEnum::CONTAINER), "die") => Ok(vec![Change::ContainerDied { id }]),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_time_becomes_an_events_api_timestamp() {
        assert_eq!(api_timestamp("1970-01-01T00:00:00Z").as_deref(), Some("0.000000000"));
        assert_eq!(api_timestamp("2026-11-28T04:10:21.041417123Z").as_deref(), Some("1795839021.041417123"));
        assert_eq!(api_timestamp("2026-11-28T05:10:21.5+01:00").as_deref(), Some("1795839021.500000000"));
        assert_eq!(api_timestamp("2000-02-29T12:00:00Z").as_deref(), Some("951825600.000000000"));
        assert_eq!(api_timestamp("yesterday"), None);
    }
}
