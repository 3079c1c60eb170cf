#!/usr/bin/env bash
# The test command: prepares the machine (examples/setup.sh), builds the
# policy and fixture components, then runs every test tier:
#   - unit tests of the SDK and the shipped policies' decisions (native);
#   - host unit tests and integration tests against real compiled
#     components, real eBPF (as root) and a real dockerd with Swarm.
# Tests build in release mode so that they share one wasmtime build with
# the benchmarks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# One test run at a time per machine: runs share the main engine's Swarm,
# the test cluster (whose down.sh would tear down another run's nodes) and
# the kernel's probes. A second run waits for the first. Nothing that
# outlives this script may inherit the lock: setup.sh gets it closed (it may
# start dockerd), tests/cluster/up.sh closes every inherited descriptor.
lock_file="${SWARM_AUTOSCALER_TEST_LOCK:-/tmp/swarm-autoscaler-tests.lock}"
exec {lock_fd}>>"$lock_file"
if ! flock -n "$lock_fd"; then
    echo "== another test run holds $lock_file; waiting for it (at most 60 min)"
    flock -w 3600 "$lock_fd" || { echo "gave up waiting for $lock_file" >&2; exit 1; }
fi

"$root/examples/setup.sh" {lock_fd}>&-

echo "== format"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all --check
(cd policies && cargo fmt --all --check)

echo "== building components"
policies/build.sh
tests/fixtures/build.sh
examples/policies/python/build.sh
examples/policies/js/build.sh
examples/policies/c/build.sh

echo "== building the demo image (the Swarm end-to-end tests run it)"
examples/demo/build-image.sh

echo "== policy unit tests (native)"
(cd policies && cargo test --quiet)

echo "== lints"
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo clippy --workspace --release --all-targets --quiet -- -D warnings

echo "== host and sdk tests"
# The multi-node tests (tests/cluster_swarm.rs) are ignored here: they need
# the test swarm, which the next step starts; they run there with --ignored.
cargo test --workspace --release

# Outcomes on the evaluation application (tests/evaluation/outcome.py): the
# 60-second smoke version, one trace against one autoscaler; asserts the run
# completes and reports every figure. It uses this run's lock (--lock-held).
echo "== outcome evaluation smoke (60 s of the step trace, push + proportional)"
if [[ $EUID -ne 0 ]] || ! command -v dockerd >/dev/null; then
    echo "SKIPPED: the outcome smoke needs root and dockerd (examples/setup.sh)"
else
    timeout --kill-after=10 600 tests/evaluation/outcome.py smoke --lock-held
fi

# The multi-node tests need a real 3-node swarm (tests/cluster/up.sh): three
# more dockerd in network namespaces of their own. They run last, on binaries
# the step above built, each step under a time limit; down.sh removes the
# cluster whatever happens (and any daemon a killed test left in it).
echo "== multi-node tests on a 3-node test swarm"
if [[ $EUID -ne 0 ]] || ! command -v dockerd >/dev/null; then
    echo "*** SKIPPED cluster_swarm (8 tests) and cluster_chaos (4 tests): the test swarm needs root and dockerd (examples/setup.sh) ***"
else
    trap 'tests/cluster/down.sh >/dev/null 2>&1 || true' EXIT
    tests/cluster/down.sh >/dev/null 2>&1 || true
    timeout --kill-after=10 300 tests/cluster/up.sh 3
    timeout --kill-after=10 1200 cargo test --release -p host --test cluster_swarm -- --ignored --test-threads=1
    # Chaos on the same swarm: a worker cut off, a decider killed mid
    # scale-out, an engine restarted under a frozen replica, a full audit disk.
    timeout --kill-after=10 600 cargo test --release -p host --test cluster_chaos -- --ignored --test-threads=1
    tests/cluster/down.sh
    trap - EXIT
fi
