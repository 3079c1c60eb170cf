#!/usr/bin/env bash
# Build __NAME__.js into __NAME__.wasm with componentize-js (npm), installing
# it into node_modules/ first if it is missing. The component carries the
# StarlingMonkey JS engine (about 12 MB); the daemon compiles it once
# (seconds) and then loads it from its compile cache.
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
node_modules/.bin/componentize-js __NAME__.js --wit wit --world-name policy \
    -d stdio random clocks http fetch-event -o .__NAME__.wasm.tmp >&2
mv .__NAME__.wasm.tmp __NAME__.wasm
echo "$here/__NAME__.wasm ($(stat -c %s __NAME__.wasm) bytes)"
