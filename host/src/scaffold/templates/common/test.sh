#!/usr/bin/env bash
# Test __NAME__.wasm through the daemon's own runtime: `host policy check`,
# then `host policy run` on three service states (test/*.json):
#   hot  (mean CPU 0.9 at 2 replicas)  -> scale to 3
#   warm (mean CPU 0.5)                -> no decision
#   cold (mean CPU 0.1)                -> scale to 1
# Change the cases when you change the rule. HOST names the host binary
# (default: `host` on PATH); the component is built first if it is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
host="${HOST:-host}"
if ! command -v "$host" >/dev/null; then
    echo "host not found: build it in the autoscaler checkout (cargo build --release -p host)" >&2
    echo "and put target/release on PATH, or set HOST=/path/to/host" >&2
    exit 1
fi
__PRE_TEST__[ -f __NAME__.wasm ] || ./build.sh
"$host" policy check __NAME__.wasm
passed=0
failed=0
expect() {
    local got
    got="$("$host" policy run __NAME__.wasm --event @test/event.json --state "@test/state-$1.json")"
    case "$got" in
        *"$2"*) echo "ok   $1: $got"; passed=$((passed + 1)) ;;
        *) echo "FAIL $1: $got (expected $2)"; failed=$((failed + 1)) ;;
    esac
}
expect hot '"scale":3'
expect warm 'null'
expect cold '"scale":1'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
