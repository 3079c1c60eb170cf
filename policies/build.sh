#!/usr/bin/env bash
# Build the shipped policies into policies/<name>.wasm, the folder that
# `host --policies ./policies` watches. Needs `rustup target add wasm32-wasip2`.
# Files are copied with write-to-temp-then-rename so a running daemon never
# sees a half-written component.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
cargo build --release --target wasm32-wasip2 --quiet
target_dir="${CARGO_TARGET_DIR:-$here/target}"
for crate in threshold proportional concurrency latency; do
    src="$target_dir/wasm32-wasip2/release/$crate.wasm"
    if ! cmp -s "$src" "$here/$crate.wasm"; then
        cp "$src" "$here/.$crate.wasm.tmp"
        mv "$here/.$crate.wasm.tmp" "$here/$crate.wasm"
    fi
    echo "policies/$crate.wasm ($(stat -c %s "$here/$crate.wasm") bytes)"
done
