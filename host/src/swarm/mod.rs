//! Docker Swarm: the only module that talks to Docker (bollard).
//!
//! - [`client`]: connect through `DOCKER_HOST` or the local socket, negotiate
//!   the API version, refuse an engine that is not a Swarm manager; classify
//!   Docker's errors.
//! - [`labels`]: `autoscale.*` service labels -> a checked [`ServiceConfig`].
//! - [`inventory`]: services and their task containers on this node, kept
//!   current by Docker's event stream, resynchronised after reconnecting.
//! - [`actuator`]: guardrails (bounds, cooldowns, step limit, staleness) and
//!   the per-service, coalescing writer of replica counts: the only code
//!   that writes to Swarm.
//! - [`audit`]: one record per applied or skipped decision.
//!
//! Invariants: Swarm knows nothing of WebAssembly or eBPF. It takes
//! decisions as plain [`crate::model::Decision`]s and hands out
//! [`crate::probe::Tracked`] containers; the daemon wires the two together.
//! Nothing here polls: Docker's events drive the inventory, decisions drive
//! the actuator.

pub mod actuator;
pub mod audit;
pub mod client;
pub mod inventory;
pub mod labels;

pub use actuator::{Actuator, ActuatorOptions, DockerWriter, Limits, Request};
pub use audit::Audit;
pub use client::{ConnectError, SwarmClient, connect};
pub use inventory::{Change, Inventory};
pub use labels::ServiceConfig;
