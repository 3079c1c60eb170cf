#!/usr/bin/env bash
# Build __NAME__.wasm (a WebAssembly component) into this folder. Installs
# the wasm32-wasip2 Rust target first if it is missing (rustup).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "adding the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2 >&2
fi
cargo build --release --target wasm32-wasip2 --quiet
target_dir="${CARGO_TARGET_DIR:-$here/target}"
cp "$target_dir/wasm32-wasip2/release/__CRATE__.wasm" .__NAME__.wasm.tmp
mv .__NAME__.wasm.tmp __NAME__.wasm
echo "$here/__NAME__.wasm ($(stat -c %s __NAME__.wasm) bytes)"
