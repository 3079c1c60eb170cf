//! The shared vocabulary of the daemon: the only types that `probe`,
//! `policy` and `swarm` have in common. Those three never import each
//! other; they meet here and in the event loop (`daemon`).
//!
//! - [`contract`]: events, service state and decisions, mirroring the WIT
//!   contract one to one (re-exported at this level);
//! - [`tracking`]: what a probe is asked to watch ([`Tracked`], [`Thresholds`]);
//! - [`clock`]: [`monotonic_ns`], the clock of every timestamp.

pub mod clock;
pub mod contract;
pub mod tracking;

pub use clock::monotonic_ns;
pub use contract::*;
pub use tracking::{Band, Thresholds, Tracked};
