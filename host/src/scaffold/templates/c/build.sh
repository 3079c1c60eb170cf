#!/usr/bin/env bash
# Build __MODULE__.c into __NAME__.wasm, installing what is missing first
# (toolchain.sh): clang-19, lld-19, compiler-rt for wasm32 and wasi-libc
# (Debian), wit-bindgen (crates.io, once), wasm-tools (PyPI) and the WASI
# preview1 adapter (crates.io). The C bindings of wit/ are generated into gen/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
source ./toolchain.sh
c_toolchain
wit-bindgen c wit --world policy --out-dir gen >/dev/null 2>&1 || wit-bindgen c wit --world policy --out-dir gen
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
    __MODULE__.c gen/policy.c gen/policy_component_type.o -o gen/__MODULE__.core.wasm
wasm-tools component new gen/__MODULE__.core.wasm --adapt "wasi_snapshot_preview1=$WASI_ADAPTER" -o .__NAME__.wasm.tmp
mv .__NAME__.wasm.tmp __NAME__.wasm
echo "$here/__NAME__.wasm ($(stat -c %s __NAME__.wasm) bytes)"
