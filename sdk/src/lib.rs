//! # autoscaler-sdk
//!
//! Write scaling policies for the Docker Swarm autoscaler `host` in Rust.
//!
//! A policy is a WebAssembly component of world `autoscaler:policy/policy`,
//! contract version 1.0.0 (see `wit/policy.wit` in the repository). It does
//! two things:
//!
//! - [`Policy::settings`] declares the settings it reads, each an
//!   `autoscale.<name>` label on the services that use it, with a type, an
//!   optional default and one line of documentation. The daemon asks once,
//!   when it loads the policy, refuses services whose labels do not parse
//!   as declared, and passes the parsed values to every call.
//! - [`Policy::decide`] is called when the kernel pushes an event about a
//!   replica of a service that uses it. The [`Event`] says what was measured on
//!   which replica; the [`State`] names the service and carries its
//!   settings and the service view: one [`Aggregate`] per metric over all
//!   the service's running replicas (mean, min, max, sum of the replicas
//!   that report, how many are still warming up), the clock and the last
//!   scale in each direction. It returns a [`Decision`] (scale to a count,
//!   or hold scale-in for a while) or `None`. The daemon applies a decision
//!   after its own guardrails (bounds, cooldowns, step limit).
//!
//! Settings are read by name and type, without parsing text:
//! [`State::number`], [`State::duration`], [`State::flag`], [`State::text`].
//! The SDK keeps the declared names and maps a name to its position in the
//! state with a short scan, no allocation.
//!
//! Metrics are data: a metric is a name from the daemon's metric table
//! ([`metric::CPU`], [`metric::MEMORY`], [`metric::CONNECTIONS`] today).
//! [`State::metric`] finds the aggregate of any name; [`State::cpu`],
//! [`State::memory`] and [`State::connections`] are one-line accessors
//! for the metrics there are today (a new metric needs a new name, and at
//! most a new accessor here, never a new contract). A policy ignores
//! metrics it does not know.
//!
//! The types are the contract's own ([`Event`], [`State`], [`Aggregate`]
//! are generated from the WIT), with the methods of this crate on them:
//! what a Python, JavaScript or C policy gets is what a Rust policy gets.
//!
//! Policies run sandboxed: no files, network or environment, a time budget per
//! call (10 ms by default) and a memory cap (64 MiB by default). Keep
//! `decide` small, deterministic and cheap: it runs for every event. Return
//! `None` early when nothing changes, and build the reason only for a
//! decision you return ([`Figure`] prints numbers for it cheaply).
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
//! use autoscaler_sdk::{Decision, Event, Policy, SettingSpec, State, export_policy};
//!
//! /// Adds a replica while the service's mean CPU is at or over `cpu.upper`.
//! pub struct ScaleOutOnCpu;
//!
//! impl Policy for ScaleOutOnCpu {
//!     fn settings() -> Vec<SettingSpec> {
//!         vec![
//!             SettingSpec::number("cpu.upper")
//!                 .default("0.8")
//!                 .doc("mean CPU (fraction of the limit) at which to add a replica"),
//!         ]
//!     }
//!
//!     fn decide(_event: Event, state: State) -> Option<Decision> {
//!         let cpu = state.cpu().filter(|cpu| cpu.reporting > 0)?;
//!         let upper = state.number("cpu.upper")?;
//!         if cpu.value.mean < upper || state.current_replicas >= state.max_replicas {
//!             return None;
//!         }
//!         Some(Decision::scale(state.current_replicas + 1, "mean cpu at or over cpu.upper"))
//!     }
//! }
//!
//! export_policy!(ScaleOutOnCpu);
//!
//! // A native unit test, with the builders of `autoscaler_sdk::testing`.
//! # fn main() {
//! use autoscaler_sdk::testing::{EventBuilder, StateBuilder};
//!
//! let state = StateBuilder::new().replicas(2, 1, 5).cpu(&[0.9, 0.95]).build_for::<ScaleOutOnCpu>();
//! let decision = ScaleOutOnCpu::decide(EventBuilder::cpu(0.95).build(), state);
//! assert_eq!(decision.and_then(|d| d.target()), Some(3));
//!
//! // Below the declared default of 0.8: nothing to do.
//! let state = StateBuilder::new().replicas(2, 1, 5).cpu(&[0.5, 0.6]).build_for::<ScaleOutOnCpu>();
//! assert_eq!(ScaleOutOnCpu::decide(EventBuilder::cpu(0.6).build(), state), None);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (after
//! `rustup target add wasm32-wasip2`), check it with
//! `host policy check target/wasm32-wasip2/release/my_policy.wasm` (it lists
//! the declared settings), and drop the `.wasm` into the daemon's policies
//! folder: it is loaded within milliseconds. Point a service at it with the labels
//! `autoscale.enable=true`, `autoscale.policy=my_policy` and the settings.
//!
//! The decision logic is plain Rust, so it is unit-tested natively with
//! `cargo test` and the builders in [`testing`]; [`log`] and the logging
//! macros print to stderr there.

#![deny(missing_docs)]

/// Generated bindings for the WIT world. Not part of the stable API: use the
/// re-exports at the crate root.
#[doc(hidden)]
#[allow(missing_docs, reason = "generated code; the WIT carries the docs")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "autoscaler_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::autoscaler::policy::host::Level;
pub use bindings::autoscaler::policy::types::{
    Action, Aggregate, Crossing, Decision, Direction, Event, EventKind, SettingSpec, SettingType, SettingValue, State,
    Stats, Unit,
};

mod declared;
mod figure;
pub mod hpa;
pub mod series;
mod settings;
mod spec;
mod state;
pub mod testing;
#[cfg(test)]
mod tests;

pub use figure::Figure;
pub use settings::{BOOL_FORMS, DURATION_FORMS, parse_bool, parse_duration, parse_number, parse_quantity};
pub use state::metric;

/// A scaling policy. Implement it on a type and export it with
/// [`export_policy!`].
pub trait Policy {
    /// The settings this policy reads, in a fixed order. Build them with
    /// [`SettingSpec::number`], [`SettingSpec::quantity`],
    /// [`SettingSpec::duration`], [`SettingSpec::flag`] or
    /// [`SettingSpec::text`]. Return the same list every time: the daemon
    /// asks once per load and the SDK asks again in a fresh instance.
    fn settings() -> Vec<SettingSpec>;

    /// Decide what to do about the service described by `state`, now that
    /// `event` arrived. Return `None` to leave the service as it is.
    fn decide(event: Event, state: State) -> Option<Decision>;
}

/// Export a [`Policy`] implementation as the component's `settings` and
/// `decide`. In a fresh instance (the daemon asked for the settings in
/// another one) the first `decide` declares the settings first, so that
/// they are read by name from the first call.
///
/// Use it once per crate, at the top level: `export_policy!(MyPolicy);`
#[macro_export]
macro_rules! export_policy {
    ($policy:ident) => {
        impl $crate::bindings::Guest for $policy {
            fn settings() -> ::std::vec::Vec<$crate::SettingSpec> {
                $crate::__declare_settings(<$policy as $crate::Policy>::settings())
            }

            fn decide(event: $crate::Event, state: $crate::State) -> ::core::option::Option<$crate::Decision> {
                $crate::__ensure_declared(<$policy as $crate::Policy>::settings);
                <$policy as $crate::Policy>::decide(event, state)
            }
        }
        $crate::bindings::__export_policy_world!($policy with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub use declared::{declare_settings as __declare_settings, ensure_declared as __ensure_declared};

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
