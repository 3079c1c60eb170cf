#!/usr/bin/env bash
# Build __NAME__.js into __NAME__.wasm with componentize-js (npm), installing
# it first if it is missing (toolchain.sh: once per machine and version, in
# a tools folder shared by every project). The component carries the
# StarlingMonkey JS engine (about 12 MB); the daemon compiles it once
# (seconds) and then loads it from its compile cache.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
source ./toolchain.sh
js_toolchain
"$COMPONENTIZE_JS" __NAME__.js --wit wit --world-name policy \
    -d stdio random clocks http fetch-event -o .__NAME__.wasm.tmp >&2
mv .__NAME__.wasm.tmp __NAME__.wasm
echo "$here/__NAME__.wasm ($(stat -c %s __NAME__.wasm) bytes)"
