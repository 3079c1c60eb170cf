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

"$root/examples/setup.sh"

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
cargo test --workspace --release
