#!/usr/bin/env bash
# Build headroom.js into headroom.wasm with componentize-js (npm), installing
# it first if it is missing (toolchain.sh: once per machine; Node 18 or newer).
# The component is about 11 MB (it carries the StarlingMonkey JS engine); the
# daemon compiles it once (seconds) and then serves it from its cache.
# Against the contract in wit/ (autoscaler:policy@1.0.0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
source ./toolchain.sh
js_toolchain
# The daemon offers no HTTP; stdio, random and clocks are left out too, so
# the component imports only the contract and what the engine itself needs.
"$COMPONENTIZE_JS" headroom.js --wit ../../../wit --world-name policy \
    -d stdio random clocks http fetch-event -o .headroom.wasm.tmp >&2
mv .headroom.wasm.tmp headroom.wasm
echo "examples/policies/js/headroom.wasm ($(stat -c %s headroom.wasm) bytes)"
