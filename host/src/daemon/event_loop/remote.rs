//! Multi-node mode's sources of the loop: the events and scale-to-zero
//! reports nodes' agents forward, and changes of membership and
//! leadership. Nothing is decided or written unless this manager leads.

use std::time::Duration;

use super::{Loop, Outside};
use crate::cluster::{Membership, RemoteEvent, RemoteZero, ZeroReport};
use crate::daemon::multi_node::ClusterTracking;
use crate::daemon::service_view::ServiceView;
use crate::daemon::zero;
use crate::model;
use crate::swarm::Inventory;
use crate::swarm::audit::ZeroOutcome;

impl<O: Outside> Loop<O> {
    /// Multi-node mode: a node's agent says how a freeze, thaw or recover
    /// ended, or that a connection woke a replica it had frozen.
    pub fn on_remote_zero(&mut self, remote: RemoteZero) {
        if !self.deciding() {
            return;
        }
        let service = |inventory: &Inventory, container: &str| {
            inventory.service_of(container).map(|s| (s.id.clone(), s.name.clone())).unwrap_or_default()
        };
        let us = |us: u64| Duration::from_micros(us);
        let done = match remote.report {
            ZeroReport::Frozen { container_id, took_us, .. } => {
                zero::Done::Frozen { container: container_id, took: us(took_us) }
            }
            ZeroReport::Busy { container_id } => zero::Done::Busy { container: container_id },
            ZeroReport::NotFrozen { container_id, refused, reason } => zero::Done::NotFrozen {
                container: container_id,
                outcome: if refused { ZeroOutcome::Refused } else { ZeroOutcome::Failed },
                reason,
            },
            ZeroReport::Thawed { container_id, took_us, wake_us: None } => {
                zero::Done::Thawed { container: container_id, took: us(took_us) }
            }
            ZeroReport::Thawed { container_id, took_us, wake_us: Some(wake_us) } => zero::Done::WokenOnNode {
                service: service(&self.inventory, &container_id),
                container: container_id,
                took: us(took_us),
                wake: us(wake_us),
            },
            ZeroReport::ThawFailed { container_id, reason } => {
                zero::Done::ThawFailed { container: container_id, reason }
            }
            ZeroReport::FoundPaused { container_id, took_us, error } => {
                let (service_id, service) = service(&self.inventory, &container_id);
                let unpaused = match (took_us, error) {
                    (Some(took), _) => Ok(us(took)),
                    (None, error) => Err(error.unwrap_or_default()),
                };
                zero::Done::FoundPaused { container: container_id, service_id, service, unpaused }
            }
        };
        tracing::debug!(node = %remote.node_id, "cluster: scale-to-zero report {done:?}");
        self.on_zero_done(done);
    }

    /// Whether this daemon may decide and write: always in single-node
    /// mode, only while leading in multi-node mode.
    pub(super) fn deciding(&self) -> bool {
        self.cluster.as_ref().is_none_or(ClusterTracking::is_leader)
    }

    /// An event a node's agent forwarded (this node's included): the same
    /// path as a local event, once the node is checked to run the container.
    pub fn on_remote_event(&mut self, remote: RemoteEvent) {
        let RemoteEvent { node_id, event } = remote;
        if !self.deciding() {
            self.ignored_remote += 1;
            return;
        }
        if let Some(container) = event.container_id().and_then(|id| self.inventory.container(id))
            && container.node_id != node_id
        {
            // A node reports only its own containers; a container that
            // moved is re-read with the swarm's tasks.
            self.ignored_remote += 1;
            tracing::debug!(node = %node_id, container = %event.container_id().unwrap_or_default(), on = %container.node_id, "cluster: event for a container on another node ignored");
            return;
        }
        self.on_probe_event(event);
    }

    /// A node joined or went silent. A silent node's replicas leave the
    /// service view (the decider logged it once); they count again with
    /// their next reading.
    pub fn on_membership(&mut self, change: Membership) {
        if let Membership::Lost { node_id, .. } = change {
            for container in self.inventory.containers_on(&node_id) {
                self.view.forget_container(&container);
            }
        }
    }

    /// Leadership changed: a manager that starts or stops leading forgets
    /// readings a previous term may have left; a new term starts from what
    /// the agents send now.
    pub fn on_leadership_change(&mut self) {
        let leading = self.deciding();
        if leading != self.leading {
            self.leading = leading;
            self.view = ServiceView::default();
            self.view_since_ns = model::monotonic_ns();
        }
    }
}
