#!/usr/bin/env bash
# The demo, end to end, on a fresh machine (run as root):
#   1. examples/setup.sh: Docker Engine, dockerd, a one-node Swarm, wrk, the
#      wasm target (only what is missing);
#   2. builds the daemon (`cargo build --release -p host`; CARGO_TARGET_DIR
#      is respected), the shipped policies and the demo image;
#   3. deploys examples/stack.yml (stack `autoscale-demo`);
#   4. runs `host --policies ./policies` against it;
#   5. drives CPU load for DEMO_LOAD_SECONDS (default 40), then stops, and
#      prints one line per replica change while the service scales out and
#      back in, and `host status` when the load stops and once scaled in;
#   6. waits for the idle service to go to zero (its last replica frozen,
#      autoscale.min=0, after DEMO_IDLE), then sends one request, which the
#      kernel's wake event answers: a line for each.
# On exit (also on Ctrl-C) it stops the daemon and the load and removes the
# stack. dockerd and the Swarm stay up for the next run; setup.sh reuses them.
#
# Settings: DEMO_PORT (8080), DEMO_LOAD_SECONDS (40), DEMO_CONNECTIONS (4),
# DEMO_SETTLE_SECONDS (90: longest wait for the scale-in), DEMO_IDLE (10s:
# autoscale.idle of the demo service), HOST_ARGS (extra
# flags for host, e.g. "--probe cgroupfs --interval 1s" or "--dry-run").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

port="${DEMO_PORT:-8080}"
load_seconds="${DEMO_LOAD_SECONDS:-40}"
connections="${DEMO_CONNECTIONS:-4}"
settle_seconds="${DEMO_SETTLE_SECONDS:-90}"
stack=autoscale-demo
service="${stack}_web"
work="$(mktemp -d /tmp/autoscale-demo.XXXXXX)"
host_pid=""
load_pid=""
deployed=""

say() { printf 'demo: %s\n' "$*"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$load_pid" ] && kill -0 "$load_pid" 2>/dev/null; then kill "$load_pid" 2>/dev/null || true; fi
    if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
        kill -TERM "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    if [ -n "$deployed" ]; then
        say "removing stack $stack"
        docker stack rm "$stack" >/dev/null 2>&1 || true
    fi
    say "logs kept in $work (host.log, audit.jsonl, load.log)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

examples/setup.sh

say "building the daemon, the policies and the demo image"
cargo build --release --quiet -p host
host_bin="${CARGO_TARGET_DIR:-$root/target}/release/host"
policies/build.sh
examples/demo/build-image.sh

if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    say "port $port is in use on this machine; set DEMO_PORT to a free port"
    exit 1
fi
say "deploying stack $stack (examples/stack.yml) on port $port"
deployed=1
if ! DEMO_PORT="$port" DEMO_IDLE="${DEMO_IDLE:-10s}" docker stack deploy --resolve-image never -c examples/stack.yml "$stack" >"$work/deploy.log" 2>&1; then
    cat "$work/deploy.log" >&2
    exit 1
fi

replicas() { docker service inspect "$service" --format '{{.Spec.Mode.Replicated.Replicas}}' 2>/dev/null || echo "?"; }
running() {
    docker service ps "$service" --filter desired-state=running --format '{{.CurrentState}}' 2>/dev/null |
        grep -c '^Running' || true
}
answers() { curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; }

for _ in $(seq 1 120); do
    answers && break
    sleep 0.5
done
answers || { say "the demo service did not answer on 127.0.0.1:$port"; exit 1; }

say "starting: $host_bin --policies ./policies ${HOST_ARGS:-}"
# shellcheck disable=SC2086 # HOST_ARGS is a list of flags
"$host_bin" --policies ./policies --audit-log "$work/audit.jsonl" ${HOST_ARGS:-} >"$work/host.log" 2>&1 &
host_pid=$!
for _ in $(seq 1 120); do
    grep -q "following docker events" "$work/host.log" && break
    kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log" >&2; say "the daemon exited"; exit 1; }
    sleep 0.5
done
grep -q "service $service autoscaled" "$work/host.log" || sleep 1
grep "service $service autoscaled\|probe started" "$work/host.log" | sed 's/^.*INFO[^:]*: /host: /' || true

start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%6.1fs", n - s }'; }

# The reason of the daemon's latest applied change, from its audit log.
last_reason() {
    grep '"outcome":"applied"' "$work/audit.jsonl" 2>/dev/null | tail -1 |
        sed -n 's/.*"reason":"\([^"]*\)".*"event_to_outcome_us":\([0-9]*\).*/\1; kernel event -> spec updated \2 us/p'
}

# Print a line whenever the replicas in the spec or the running tasks change,
# until `$1` seconds have passed or the predicate `$2` holds.
watch_replicas() {
    local until=$(($(date +%s) + $1)) done_when="$2"
    while [ "$(date +%s)" -lt "$until" ]; do
        local now_replicas now_running
        now_replicas="$(replicas)"
        now_running="$(running)"
        if [ "$now_replicas" != "$shown_replicas" ]; then
            say "$(elapsed)  replicas $shown_replicas -> $now_replicas  ($(last_reason))"
            shown_replicas="$now_replicas"
        fi
        if [ "$now_running" != "$shown_running" ]; then
            say "$(elapsed)  running tasks $shown_running -> $now_running"
            shown_running="$now_running"
        fi
        if eval "$done_when"; then return 0; fi
        kill -0 "$host_pid" 2>/dev/null || { say "the daemon exited; see $work/host.log"; return 1; }
        sleep 0.2
    done
}

shown_replicas="$(replicas)"
shown_running="$(running)"
say "$(elapsed)  $service: $shown_replicas replica(s); driving load for ${load_seconds}s ($connections connections, /burn?ms=50 on 127.0.0.1:$port)"
examples/load.sh "$load_seconds" "$connections" "$port" >"$work/load.log" 2>&1 &
load_pid=$!
watch_replicas "$load_seconds" false || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
say "$(elapsed)  host status while the service is loaded:"
"$host_bin" status "$service" | sed 's/^/    /' || say "host status failed"
say "$(elapsed)  load stopped ($(grep -o '[0-9.]* requests in' "$work/load.log" | head -1 | cut -d' ' -f1) requests served); waiting for the scale-in"
watch_replicas "$settle_seconds" '[ "$(replicas)" = 1 ] && [ "$(running)" = 1 ]' || true

say "$(elapsed)  host status (what the daemon knows, from http://127.0.0.1:9464/status):"
"$host_bin" status "$service" | sed 's/^/    /' || say "host status failed"
applied=$(grep -c '"outcome":"applied"' "$work/audit.jsonl" 2>/dev/null || true)
audit_lines=$(wc -l <"$work/audit.jsonl" 2>/dev/null || echo 0)
dry=$(grep -c '"outcome":"dry-run"' "$work/audit.jsonl" 2>/dev/null || true)
say "$(elapsed)  scaled in: $service at $(replicas) replica(s); the daemon applied ${applied:-0} change(s) (dry-run decisions: ${dry:-0}); audit log: $audit_lines line(s)"

# Scale to zero: the idle service's last replica is frozen, and the next
# request wakes it.
frozen() {
    local c
    for c in $(docker ps -q --filter "label=com.docker.swarm.service.name=$service"); do
        [ "$(docker inspect --format '{{.State.Paused}}' "$c" 2>/dev/null)" = true ] && return 0
    done
    return 1
}
last_zero() {
    grep "\"zero\":\"$1\"" "$work/audit.jsonl" 2>/dev/null | tail -1
}
say "$(elapsed)  waiting for $service to go to zero (no connection and CPU below cpu.lower for autoscale.idle=${DEMO_IDLE:-10s})"
for _ in $(seq 1 $((settle_seconds * 5))); do
    frozen && break
    kill -0 "$host_pid" 2>/dev/null || { say "the daemon exited; see $work/host.log"; exit 1; }
    sleep 0.2
done
if frozen; then
    pause_us=$(last_zero frozen | sed -n 's/.*"docker_us":\([0-9]*\).*/\1/p')
    say "$(elapsed)  $service at zero: its replica is frozen (docker ps: Paused; Swarm: $(running) running task, $(replicas) in the spec; pause took ${pause_us:-?} us)"
    first_byte=$(curl -s -o /dev/null -m 10 -w '%{time_starttransfer}' "http://127.0.0.1:$port/" || echo "failed")
    sleep 0.3
    wake_us=$(last_zero woken | sed -n 's/.*"wake_us":\([0-9]*\).*/\1/p')
    say "$(elapsed)  one request woke it: first byte after $(awk -v t="$first_byte" 'BEGIN { printf "%.1f", t * 1000 }') ms (kernel saw the connection -> docker unpause returned: $(awk -v u="${wake_us:-0}" 'BEGIN { printf "%.1f", u / 1000 }') ms)"
else
    say "$(elapsed)  $service did not go to zero within ${settle_seconds}s; see $work/host.log"
fi
