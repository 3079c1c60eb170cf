//! What tests that call the policy runtime directly (no daemon) share:
//! the built components and the compile cache the test command keeps.

use std::path::PathBuf;

use super::repo;

/// The bytes of a built component, `path` repository-relative. Fails
/// saying how to build it: the test command does (tests/run.sh).
pub fn component(path: &str) -> Vec<u8> {
    let file = repo().join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components first: policies/build.sh && tests/fixtures/build.sh (tests/run.sh does both)",
            file.display()
        )
    })
}

/// The compile cache tests/run.sh keeps between runs
/// (`AUTOSCALER_TEST_CACHE_DIR`), if any: each component compiles once.
pub fn test_cache_dir() -> Option<PathBuf> {
    std::env::var_os("AUTOSCALER_TEST_CACHE_DIR").map(PathBuf::from)
}
