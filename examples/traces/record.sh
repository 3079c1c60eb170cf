#!/usr/bin/env bash
# Record the shipped traces from the demo: a live daemon (`host --record`)
# with the shipped policies scales the demo service on the local Swarm while
# load.sh drives three load patterns, one trace each:
#   load-step.trace   idle, then a sustained step of load, then idle;
#   slow-ramp.trace   load rising one connection at a time, then falling;
#   bursts.trace      short bursts of heavy load with idle gaps;
#   demand-step.trace idle, then one step to five times what one replica
#                     should hold (10 connections, inflight.target=2), then
#                     idle, under the concurrency policy: a trace with the
#                     demand metrics, written to demand/ (docs/demand.md).
# The service uses the threshold policy, the concurrency one for
# demand-step (its audit log lands beside each trace as *.audit.jsonl, the
# live decisions to compare a replay with).
#
#   examples/traces/record.sh [HOST_BINARY [TRACE...]]   (root; examples/setup.sh first)
#
# TRACE is load-step, slow-ramp, bursts or demand-step (default: all four).
#
# Needs the demo image (examples/demo/build-image.sh) and policies/*.wasm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
host="${1:-$root/target/release/host}"
port=18095
service=trace-demo
out="$here"

cleanup() {
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    docker service rm "$service" >/dev/null 2>&1 || true
}
trap cleanup EXIT

load() { # seconds connections
    "$root/examples/load.sh" "$1" "$2" "$port" >/dev/null
}
idle() { sleep "$1"; }

record() { # name, the load pattern as a function name, [policy max [label...]]
    local name="$1" pattern="$2" policy="${3:-threshold}" max="${4:-4}"
    local extra=()
    for label in "${@:5}"; do extra+=(--label "$label"); done
    docker service rm "$service" >/dev/null 2>&1 || true
    docker service create --detach --quiet --name "$service" --network host \
        --limit-cpu 0.5 --env "PORT=$port" --replicas 1 \
        --label autoscale.enable=true --label "autoscale.policy=$policy" \
        --label autoscale.min=1 --label "autoscale.max=$max" \
        "${extra[@]}" \
        --label autoscale.cpu.upper=0.7 --label autoscale.cpu.lower=0.2 \
        --label autoscale.cpu.target=0.5 \
        --label autoscale.cooldown.up=3s --label autoscale.cooldown.down=10s \
        swarm-autoscaler-demo:local >/dev/null
    until curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1; do sleep 0.5; done
    rm -f "$out/$name.trace" "$out/$name.audit.jsonl"
    (cd "$root" && exec "$host" --policies ./policies --metrics-addr "" \
        --record "$out/$name.trace" --audit-log "$out/$name.audit.jsonl") 2>"/tmp/record-$name.log" &
    daemon=$!
    until grep -q "following docker events" "/tmp/record-$name.log"; do sleep 0.2; done
    sleep 3
    "$pattern"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    daemon=
    echo "$name.trace: $(grep -c '^\[' "$out/$name.trace") calls, $(stat -c %s "$out/$name.trace") bytes"
}

step() { idle 15; load 60 4; idle 45; }
# wrk needs at least as many connections as threads (2).
ramp() { for c in 2 3 4 5 6 5 4 3 2; do load 12 "$c"; done; idle 30; }
bursts() { for _ in 1 2 3 4 5; do load 6 8; idle 14; done; idle 20; }
demand_step() { idle 15; load 60 10; idle 45; }

shift || true
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(load-step slow-ramp bursts demand-step)
for name in "${names[@]}"; do
    case "$name" in
        load-step) record load-step step ;;
        slow-ramp) record slow-ramp ramp ;;
        bursts) record bursts bursts ;;
        demand-step) out="$here/demand" record demand-step demand_step concurrency 8 autoscale.inflight.target=2 ;;
        *) echo "unknown trace $name: load-step, slow-ramp, bursts or demand-step" >&2; exit 1 ;;
    esac
done
