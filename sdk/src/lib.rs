//! # autoscaler-sdk
//!
//! Write scaling policies for the Docker Swarm autoscaler `host` in Rust.
//!
//! A policy is a WebAssembly component of world `autoscaler:policy/policy`
//! (see `wit/policy.wit` in the repository). The daemon calls its `decide`
//! function for every event the kernel pushes about a container of a service
//! bound to it, and applies the returned target after its own guardrails
//! (the service's min/max, cooldowns, step limit). Returning `None` leaves
//! the service alone.
//!
//! Policies run sandboxed: no files, network or environment, a time budget per
//! call (10 ms by default) and a memory cap (64 MiB by default). Keep
//! `decide` small and deterministic; use [`State::settings`] (the service's
//! `autoscale.*` labels, prefix removed) for anything configurable.
//!
//! ## A complete policy
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-policy"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! autoscaler-sdk = { path = "../sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use autoscaler_sdk::{Decision, Event, Metric, Policy, State, export_policy, info};
//!
//! /// Adds a replica whenever CPU goes over `cpu.upper` (default 0.8).
//! struct ScaleOutOnCpu;
//!
//! impl Policy for ScaleOutOnCpu {
//!     fn decide(event: Event, state: State) -> Option<Decision> {
//!         if event.metric != Metric::Cpu {
//!             return None;
//!         }
//!         let upper = state.number("cpu.upper").ok().flatten().unwrap_or(0.8);
//!         if event.value < upper || state.current_replicas >= state.max_replicas {
//!             return None;
//!         }
//!         info!("{} is busy: {:.2}", event.service_name, event.value);
//!         Some(Decision::new(
//!             state.current_replicas + 1,
//!             format!("cpu {:.2} over {upper}", event.value),
//!         ))
//!     }
//! }
//!
//! export_policy!(ScaleOutOnCpu);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (after
//! `rustup target add wasm32-wasip2`), check it with
//! `host policy check target/wasm32-wasip2/release/my_policy.wasm`, try it with
//! `host policy run FILE --event JSON --state JSON`, and drop the `.wasm` into
//! the daemon's policies folder: it is loaded within milliseconds.
//!
//! The decision logic is plain Rust, so it can be unit-tested natively with
//! `cargo test`; [`log`] and the logging macros print to stderr there.

#![deny(missing_docs)]

/// Generated bindings for the WIT world. Not part of the stable API: use the
/// re-exports at the crate root.
#[doc(hidden)]
#[allow(missing_docs, reason = "generated code; the WIT carries the docs")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "autoscaler_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::autoscaler::policy::host::Level;
pub use bindings::autoscaler::policy::types::{Crossing, Decision, Direction, Event, EventKind, Metric, State, Unit};

mod settings;
pub use settings::{SettingError, parse_quantity};

/// A scaling policy. Implement it on a type and export it with
/// [`export_policy!`].
pub trait Policy {
    /// Decide what to do about `event` for the service described by `state`.
    /// Return `None` to leave the service as it is.
    fn decide(event: Event, state: State) -> Option<Decision>;
}

/// Export a [`Policy`] implementation as the component's `decide`.
///
/// Use it once per crate, at the top level: `export_policy!(MyPolicy);`
#[macro_export]
macro_rules! export_policy {
    ($policy:ident) => {
        impl $crate::bindings::Guest for $policy {
            fn decide(
                event: $crate::Event,
                state: $crate::State,
            ) -> ::core::option::Option<$crate::Decision> {
                <$policy as $crate::Policy>::decide(event, state)
            }
        }
        $crate::bindings::__export_policy_world!($policy with_types_in $crate::bindings);
    };
}

impl Decision {
    /// A decision to run `target_replicas`, with a reason for the audit log.
    pub fn new(target_replicas: u32, reason: impl Into<String>) -> Self {
        Decision { target_replicas, reason: reason.into() }
    }
}

impl Event {
    /// The crossing, if this event is one.
    pub fn crossing(&self) -> Option<&Crossing> {
        match &self.kind {
            EventKind::Crossing(c) => Some(c),
            EventKind::Sample => None,
        }
    }

    /// The metric's name as used in settings keys: `cpu`, `memory`,
    /// `connections`, or the name of a newer metric.
    pub fn metric_name(&self) -> &str {
        self.metric.name()
    }
}

impl Metric {
    /// The WIT case name: `cpu`, `memory`, `connections`, or the other name.
    pub fn name(&self) -> &str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Connections => "connections",
            Metric::Other(name) => name,
        }
    }
}

impl State {
    /// The raw value of setting `key` (an `autoscale.KEY` label).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Setting `key` as a number. Accepts plain numbers and the suffixes
    /// k, M, G, T (powers of 1000) and Ki, Mi, Gi, Ti (powers of 1024), so
    /// `512Mi` and `0.75` both work. `Ok(None)` when the setting is absent.
    pub fn number(&self, key: &str) -> Result<Option<f64>, SettingError> {
        match self.setting(key) {
            None => Ok(None),
            Some(raw) => parse_quantity(raw)
                .map(Some)
                .ok_or_else(|| SettingError { key: key.to_string(), value: raw.to_string() }),
        }
    }

    /// Clamp a wished-for replica count to this service's `[min, max]`.
    pub fn clamp(&self, replicas: i64) -> u32 {
        let lo = i64::from(self.min_replicas);
        let hi = i64::from(self.max_replicas.max(self.min_replicas));
        // The clamped value lies within two u32s, so the conversion holds.
        u32::try_from(replicas.clamp(lo, hi)).unwrap_or(self.min_replicas)
    }
}

/// Write a line to the daemon's log, tagged with the policy's name.
///
/// In a native build (unit tests) the line goes to stderr instead.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    bindings::autoscaler::policy::host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

/// Log at debug level with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)*)) };
}

/// Log at info level with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Log at warn level with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Log at error level with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &::std::format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(settings: &[(&str, &str)]) -> State {
        State {
            current_replicas: 2,
            min_replicas: 1,
            max_replicas: 5,
            last_scale_ns: None,
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn settings_lookup_and_numbers() {
        let s = state(&[("cpu.upper", "0.8"), ("memory.upper", "512Mi"), ("bad", "x1")]);
        assert_eq!(s.setting("cpu.upper"), Some("0.8"));
        assert_eq!(s.number("cpu.upper"), Ok(Some(0.8)));
        assert_eq!(s.number("memory.upper"), Ok(Some(512.0 * 1024.0 * 1024.0)));
        assert_eq!(s.number("missing"), Ok(None));
        let err = s.number("bad").expect_err("x1 is not a number");
        assert_eq!(err.key, "bad");
        assert!(err.to_string().contains("x1"));
    }

    #[test]
    fn clamp_respects_bounds() {
        let s = state(&[]);
        assert_eq!(s.clamp(-3), 1);
        assert_eq!(s.clamp(3), 3);
        assert_eq!(s.clamp(99), 5);
    }
}
