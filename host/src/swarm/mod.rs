//! Docker Swarm for the daemon (bollard): the client every other user of
//! Docker (`cluster::docker`, `cluster::lease`, `daemon::multi_node`) is handed.
//!
//! - [`client`]: connect through `DOCKER_HOST` or the local socket, negotiate
//!   the API version, refuse an engine that is not a Swarm manager; classify
//!   Docker's errors.
//! - [`labels`]: `autoscale.*` service labels -> a checked [`ServiceConfig`].
//! - [`inventory`]: services and their task containers on this node, kept
//!   current by Docker's event stream, resynchronised after reconnecting.
//! - [`guardrails`]: the pure rules every decision passes (bounds, step
//!   limit, staleness, cooldowns, holds).
//! - [`actuator`]: the per-service, coalescing workers that apply decisions:
//!   the only code that writes to Swarm; [`writer`] is its Docker I/O.
//! - [`audit`]: one record per applied, held or skipped decision, and per
//!   freeze, thaw or wake.
//! - [`freezer`]: pause and unpause a task container (scale to zero).
//!
//! Invariants: Swarm knows nothing of WebAssembly or eBPF. It takes
//! decisions as plain [`crate::model::Decision`]s and hands out
//! [`crate::model::Tracked`] containers; the daemon wires the two together.
//! Nothing here polls: Docker's events drive the inventory, decisions drive
//! the actuator.

pub mod actuator;
pub mod audit;
pub mod client;
pub mod freezer;
pub mod guardrails;
pub mod inventory;
pub mod labels;
pub mod writer;

pub use actuator::Actuator;
pub use audit::Audit;
pub use client::{ConnectError, SwarmClient, connect, connect_node};
pub use freezer::Freezer;
pub use guardrails::{ActuatorOptions, History, Limits, Request};
pub use inventory::{Change, Inventory};
pub use labels::ServiceConfig;
pub use writer::DockerWriter;
