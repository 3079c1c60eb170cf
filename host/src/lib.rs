//! `host`: a push-based horizontal autoscaler for Docker Swarm.
//!
//! Layout (see ARCHITECTURE.md for the data path):
//! - [`model`]: events, service state and decisions as the daemon sees them.
//! - [`policy`]: the WebAssembly policy runtime (the only user of wasmtime).
//! - [`swarm`]: Docker Swarm: service labels, the inventory of services and
//!   their containers, the guarded actuator and the audit log (bollard's main
//!   user; `cluster::docker`, `cluster::lease` and `daemon::multi_node` use the
//!   client it connects).
//! - [`cluster`]: multi-node Swarm: the agent on every node and the decider
//!   endpoint on the leader, over an authenticated channel.
//! - [`daemon`]: the event loop that ties the parts together.
//! - [`config`], [`telemetry`]: flags and logging; [`units`]: the one grammar
//!   for durations, booleans and quantities.
//! - [`policy_cmd`]: `host policy check|run` for policy authors;
//!   [`scaffold`]: `host policy new`; [`replay`]: `--record` traces and
//!   `host replay`.
//! - [`status`]: every service's state for `host status`, `/status` and the
//!   per-service series.

pub mod cluster;
pub mod config;
pub mod daemon;
pub mod live;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod policy_cmd;
pub mod probe;
pub mod reload;
pub mod replay;
pub mod scaffold;
pub mod secret;
pub mod status;
pub mod swarm;
pub mod telemetry;
pub mod units;
