//! What runs: Swarm services, their autoscaling labels, and the task
//! containers of each on this node (on every node of the swarm in
//! multi-node mode, where the leader decides for all of them).
//!
//! Two halves:
//! - [`state`]: [`Inventory`], plain state changed only by
//!   [`Inventory::apply`] with a [`Change`]; no I/O.
//! - [`watch`]: the task that turns Docker's event stream into [`Change`]s,
//!   resynchronising everything after each reconnection. Containers count
//!   for a service only when Swarm lists them as its tasks' containers.
//!
//! Invariant: this module knows nothing of policies or probes beyond the
//! [`crate::model::Tracked`] values it hands out; the daemon does the tracking.

mod containers;
pub mod state;
pub mod sweep;
pub mod watch;

pub use state::{Change, ContainerInfo, Effects, Inventory, Notice, ServiceEntry, ServiceInfo, Status, spec_replicas};
pub use watch::{Scope, watch};
