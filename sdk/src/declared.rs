//! The declared setting names, so that a setting is read by name.
//!
//! The daemon passes setting values by position, in the order of the list
//! the policy's `settings()` returned. The SDK keeps that list's names here
//! and [`position`] maps a name to its index with a linear scan (a policy
//! declares a handful of settings; a scan over short names beats hashing and
//! allocates nothing).
//!
//! Filled by the exported `settings()`, and by the exported `bind` when the
//! instance is fresh (the daemon calls `settings()` once per load, possibly
//! in another instance, and binds every service before its first call in
//! an instance, so `decide` needs no check of its own). In native unit tests,
//! [`StateBuilder::build_for`](crate::testing::StateBuilder::build_for)
//! fills it for the test's thread. A component instance has one thread, so
//! the thread-local is a plain global there.

use std::cell::RefCell;

use crate::SettingSpec;

thread_local! {
    /// The names of the declared settings, in declared order; `None` until
    /// a list was declared on this thread.
    static NAMES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Record `specs` as the declared settings of this thread and hand them back
/// (the exported `settings()` returns them to the daemon).
pub fn declare_settings(specs: Vec<SettingSpec>) -> Vec<SettingSpec> {
    let names = specs.iter().map(|spec| spec.name.clone()).collect();
    NAMES.with_borrow_mut(|slot| *slot = Some(names));
    specs
}

/// Declare the list `settings` returns unless a list is declared already.
pub fn ensure_declared(settings: fn() -> Vec<SettingSpec>) {
    if NAMES.with_borrow(Option::is_none) {
        declare_settings(settings());
    }
}

/// Whether two setting names are equal: the lengths first, then the bytes
/// from the end, inline. Declared names share prefixes (`cpu.`, `memory.`)
/// and differ in their suffixes (`upper`, `lower`), and a policy reads a
/// dozen of them per call: a call to `memcmp` for each was a tenth of a
/// threshold policy's time in its component.
#[inline]
fn same(declared: &str, name: &str) -> bool {
    let (declared, name) = (declared.as_bytes(), name.as_bytes());
    declared.len() == name.len() && declared.iter().rev().zip(name.iter().rev()).all(|(a, b)| a == b)
}

/// The position of setting `name` in the declared list.
///
/// In a native debug build (unit tests) a name that was not declared is a
/// bug in the policy or the test, and panics with what to do; in the
/// component it is `None`, like an absent setting.
pub fn position(name: &str) -> Option<usize> {
    let found = NAMES.with_borrow(|names| names.as_ref().map(|names| names.iter().position(|n| same(n, name))));
    #[cfg(all(debug_assertions, not(target_family = "wasm")))]
    match found {
        None => panic!(
            "setting {name:?} read before any settings were declared on this thread: build the state with \
             autoscaler_sdk::testing::StateBuilder::build_for::<YourPolicy>()"
        ),
        Some(None) => panic!("setting {name:?} is not declared by the policy's settings(); declare it there"),
        Some(Some(_)) => {}
    }
    found.flatten()
}
