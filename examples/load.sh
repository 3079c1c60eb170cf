#!/usr/bin/env bash
# Drive CPU load on the demo service: every request asks a replica to burn
# 50 ms of CPU, on a new connection each time (`Connection: close`) so the
# kernel spreads requests over the replicas sharing the port.
#
#   examples/load.sh [SECONDS] [CONNECTIONS] [PORT]     (defaults: 30 4 8080)
#
# Load goes to 127.0.0.1 only. Uses wrk (examples/setup.sh installs it).
set -euo pipefail
seconds="${1:-30}"
connections="${2:-4}"
port="${3:-${DEMO_PORT:-8080}}"
if ! command -v wrk >/dev/null; then
    echo "load: wrk is missing; run examples/setup.sh (as root) or apt-get install wrk" >&2
    exit 1
fi
exec wrk --threads 2 --connections "$connections" --duration "${seconds}s" --timeout 10s \
    --header 'Connection: close' "http://127.0.0.1:${port}/burn?ms=50"
