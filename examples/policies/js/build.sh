#!/usr/bin/env bash
# Build headroom.js into headroom.wasm with componentize-js (npm), installing
# it into node_modules/ first if it is missing (Node 18 or newer).
# The component is about 11 MB (it carries the StarlingMonkey JS engine); the
# daemon compiles it once (seconds) and then serves it from its cache.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node and npm not found: install Node.js 18 or newer (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if [ ! -x node_modules/.bin/componentize-js ]; then
    echo "installing componentize-js (npm) into $here/node_modules" >&2
    npm install --no-audit --no-fund --loglevel=error >&2
fi
# The daemon offers no HTTP; stdio, random and clocks are left out too, so
# the component imports only the contract and what the engine itself needs.
node_modules/.bin/componentize-js headroom.js --wit ../../../wit --world-name policy \
    -d stdio random clocks http fetch-event -o .headroom.wasm.tmp >&2
mv .headroom.wasm.tmp headroom.wasm
echo "examples/policies/js/headroom.wasm ($(stat -c %s headroom.wasm) bytes)"
