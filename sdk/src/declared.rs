//! The declared setting names, so that a setting is read by name.
//!
//! The daemon passes setting values by position, in the order of the list
//! the policy's `settings()` returned. The SDK keeps that list's names here,
//! with an index built once per declaration: [`position`] finds a name's
//! slot from its length and three of its bytes, then compares the name
//! once, eight bytes at a time. A policy reads a dozen settings per call;
//! scanning the list and comparing names byte by byte cost about 350
//! instructions per read in a component. Names are fixed per policy, so
//! the index is built when the settings are declared and never again.
//!
//! Filled by the exported `settings()`, and by the exported `decide` when
//! the instance is fresh (the daemon calls `settings()` once per load,
//! possibly in another instance; the check costs one thread-local read per
//! call). In native unit tests, [`StateBuilder::build_for`](crate::testing::StateBuilder::build_for)
//! fills it for the test's thread. A component instance has one thread, so the
//! thread-local is a plain global there.

use std::cell::{Cell, RefCell};

use crate::SettingSpec;

thread_local! {
    /// The declared settings of this thread; `None` until a list was
    /// declared.
    static DECLARED: RefCell<Option<Declared>> = const { RefCell::new(None) };
}

/// The declared names and the index over them.
#[derive(Debug)]
struct Declared {
    /// The names, in declared order.
    names: Vec<Box<[u8]>>,
    /// Open addressing by [`key`]: a name's position plus one, 0 for a
    /// free slot. A power of two long, at least twice as long as `names`,
    /// so that a probe ends at a free slot.
    slots: Box<[u16]>,
    /// `32 - log2(slots.len())`: the shift that turns a key into a slot.
    shift: u32,
    /// Names found before, by where their bytes lie: a policy reads its
    /// settings through the same string literals on every call, so the
    /// address finds the position without hashing; the name is compared
    /// all the same (a name built at run time may reuse an address).
    seen: [Cell<Seen>; SEEN],
}

/// Entries of [`Declared::seen`] (a power of two).
const SEEN: usize = 16;

/// A name found before: its address, its length and its position.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    address: usize,
    len: usize,
    position: usize,
}

impl Declared {
    fn new(specs: &[SettingSpec]) -> Self {
        let names: Vec<Box<[u8]>> = specs.iter().map(|spec| spec.name.as_bytes().into()).collect();
        let len = (names.len() * 2).next_power_of_two().max(8);
        let shift = 32 - len.trailing_zeros();
        let mut declared = Declared { names, slots: vec![0; len].into_boxed_slice(), shift, seen: Default::default() };
        for position in 0..declared.names.len() {
            // The first of duplicate names wins, as a scan would find it.
            if declared.find(&declared.names[position]).is_some() {
                continue;
            }
            let mut slot = declared.start(&declared.names[position]);
            while declared.slots[slot] != 0 {
                slot = (slot + 1) & (len - 1);
            }
            // The daemon refuses more than 64 settings; a u16 holds far more.
            declared.slots[slot] = u16::try_from(position + 1).unwrap_or(u16::MAX);
        }
        declared
    }

    /// Where the probe for `name` starts.
    #[inline]
    fn start(&self, name: &[u8]) -> usize {
        (key(name).wrapping_mul(0x9e37_79b1) >> self.shift) as usize
    }

    /// The position of `name`, if declared: from [`Declared::seen`] when
    /// the same bytes were looked up before, else from the index.
    #[inline]
    fn lookup(&self, name: &[u8]) -> Option<usize> {
        let address = name.as_ptr() as usize;
        let entry = &self.seen[(address.wrapping_mul(0x9e37_79b1) >> 7) & (SEEN - 1)];
        let seen = entry.get();
        if seen.address == address
            && seen.len == name.len()
            && self.names.get(seen.position).is_some_and(|declared| same(declared, name))
        {
            return Some(seen.position);
        }
        let position = self.find(name)?;
        entry.set(Seen { address, len: name.len(), position });
        Some(position)
    }

    /// The position of `name`, if declared.
    #[inline]
    fn find(&self, name: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut slot = self.start(name);
        loop {
            let position = usize::from(*self.slots.get(slot)?).checked_sub(1)?;
            if same(self.names.get(position)?, name) {
                return Some(position);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// A name's length and its first, middle and last bytes in one word: what
/// tells declared names apart (`cpu.upper` and `cpu.lower` differ in the
/// middle, `memory.upper` and `cpu.upper` in length and first byte)
/// without reading the whole name.
#[inline]
fn key(name: &[u8]) -> u32 {
    match name {
        [] => 0,
        [first, ..] => {
            let (middle, last) = (name[name.len() / 2], name[name.len() - 1]);
            (name.len() as u32 & 0xff) | u32::from(*first) << 8 | u32::from(middle) << 16 | u32::from(last) << 24
        }
    }
}

/// Record `specs` as the declared settings of this thread and hand them back
/// (the exported `settings()` returns them to the daemon).
pub fn declare_settings(specs: Vec<SettingSpec>) -> Vec<SettingSpec> {
    let declared = Declared::new(&specs);
    DECLARED.with_borrow_mut(|slot| *slot = Some(declared));
    specs
}

/// Declare the list `settings` returns unless a list is declared already.
pub fn ensure_declared(settings: fn() -> Vec<SettingSpec>) {
    if DECLARED.with_borrow(Option::is_none) {
        declare_settings(settings());
    }
}

/// Whether two setting names are equal: the lengths first, then eight
/// bytes at a time (the last word overlapping the one before), inline. A
/// byte loop cost about 12 instructions a byte in a component, and a call
/// to `memcmp` more: names are read a dozen times per call.
#[inline]
fn same(declared: &[u8], name: &[u8]) -> bool {
    if declared.len() != name.len() {
        return false;
    }
    let len = name.len();
    if len < 8 {
        return declared.iter().zip(name).all(|(a, b)| a == b);
    }
    let mut at = 0;
    while at + 8 < len {
        if word(declared, at) != word(name, at) {
            return false;
        }
        at += 8;
    }
    word(declared, len - 8) == word(name, len - 8)
}

/// The eight bytes of `bytes` from `at` (which leaves at least eight).
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(&[a, b, c, d, e, f, g, h]) => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    }
}

/// The position of setting `name` in the declared list.
///
/// In a native debug build (unit tests) a name that was not declared is a
/// bug in the policy or the test, and panics with what to do; in the
/// component it is `None`, like an absent setting.
#[inline]
pub fn position(name: &str) -> Option<usize> {
    let found = DECLARED.with_borrow(|declared| declared.as_ref().map(|declared| declared.lookup(name.as_bytes())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_name_is_found_and_no_other() {
        let mut names: Vec<String> =
            ["cpu.upper", "cpu.lower", "memory.upper", "memory.lower", "step", "aggregate", ""]
                .iter()
                .map(|n| n.to_string())
                .collect();
        // Names with the same key (length, first, middle and last bytes).
        names.extend(["axxxa", "axyxa", "ayxxa", "a"].iter().map(|n| n.to_string()));
        names.extend((0..50).map(|i| format!("metric{i}.target")));
        let specs: Vec<SettingSpec> = names.iter().map(SettingSpec::number).collect();
        let declared = Declared::new(&specs);
        for (position, name) in names.iter().enumerate() {
            assert_eq!(declared.find(name.as_bytes()), Some(position), "{name:?}");
        }
        for unknown in
            ["cpu.uper", "cpu.upperr", "cpu.uppe_", "axzxa", "b", "metric50.target", "metric1.targe_", "step "]
        {
            assert_eq!(declared.find(unknown.as_bytes()), None, "{unknown:?}");
        }
        // Through the cache of addresses: twice each, and a name built at
        // run time in the same buffer with other bytes is not taken for the
        // name that buffer held before.
        for _ in 0..2 {
            for (position, name) in names.iter().enumerate() {
                assert_eq!(declared.lookup(name.as_bytes()), Some(position), "{name:?}");
            }
        }
        let mut reused = String::from("cpu.upper");
        assert_eq!(declared.lookup(reused.as_bytes()), Some(0));
        reused.replace_range(.., "cpu.lower");
        assert_eq!(declared.lookup(reused.as_bytes()), Some(1));
        reused.replace_range(.., "cpu.uppe_");
        assert_eq!(declared.lookup(reused.as_bytes()), None);
        let twice = Declared::new(&[SettingSpec::number("x"), SettingSpec::number("x")]);
        assert_eq!(twice.find(b"x"), Some(0), "the first of two equal names");
        assert_eq!(Declared::new(&[]).find(b"x"), None);
    }
}
