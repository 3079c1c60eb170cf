//! The shared vocabulary of the daemon: the only types that `probe`,
//! `policy` and `swarm` have in common. Those three never import each
//! other; they meet here and in the event loop (`daemon`).
//!
//! - [`contract`]: events, service state (with the service view) and
//!   decisions, mirroring the WIT contract (re-exported at this level);
//! - [`metrics`]: the metrics table ([`METRICS`]): every metric's name,
//!   kernel id, unit, labels and aggregation, as data;
//! - [`settings`]: settings a policy declares, resolved against a service's
//!   labels;
//! - [`tracking`]: what a probe is asked to watch ([`Tracked`], [`Thresholds`]);
//! - [`clock`]: [`monotonic_ns`], the clock of every timestamp;
//! - `builders`: short constructors for events and states (tests, benches).

mod builders;
pub mod clock;
pub mod contract;
pub mod metrics;
pub mod settings;
pub mod tracking;

pub use clock::{monotonic_ns, monotonic_of_unix, unix_ns};
pub use contract::*;
pub use metrics::{METRICS, MetricDef};
pub use tracking::{Band, EventBounds, Thresholds, Tracked};
