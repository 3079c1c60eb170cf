#!/usr/bin/env bash
# The agent channel across the nodes of the test cluster (tests/cluster/up.sh 3),
# over the veth links, with discovery and leadership from the real engines:
#   1. deciders on node1 and node2 (managers), an agent on node3 (worker)
#      that finds the managers in its engine's `docker info`: its events
#      reach the Raft leader only;
#   2. an agent with another token is refused and nothing of it arrives;
#   3. the leader's decider stops: the agent logs one line and keeps
#      measuring; the decider comes back: forwarding resumes, one line.
# Runs host/examples/cluster_channel.rs (CLUSTER_CHANNEL_BIN, or built with
# `cargo build --release -p host --example cluster_channel`). Needs root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
bin="${CLUSTER_CHANNEL_BIN:-${CARGO_TARGET_DIR:-/var/cache/swarm-autoscaler/target}/release/examples/cluster_channel}"
skip() { echo "SKIP tests/cluster/channel.sh: $*" >&2; exit 0; }
fail() { echo "FAIL tests/cluster/channel.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || skip "needs root"
[[ -x "$bin" ]] || skip "no $bin (cargo build --release -p host --example cluster_channel)"
[[ -S "$(sacl_run 3)/docker.sock" ]] || skip "no test cluster (tests/cluster/up.sh 3)"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/other-token"

# run K NAME ARGS...: the example in node K's network namespace, against its engine.
run() {
    local k="$1" name="$2"
    shift 2
    : >"$work/$name.out"
    : >"$work/$name.err"
    DOCKER_HOST="$(sacl_docker_host "$k")" nsenter --net="/var/run/netns/$(sacl_netns "$k")" \
        "$bin" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    last_pid=$!
}
wait_for() { # SECONDS DESCRIPTION COMMAND...
    local until=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@"; do
        (( SECONDS < until )) || fail "not within the time: $what"
        sleep 0.2
    done
}
leader=1
[[ "$(sacl_docker 2 node inspect self --format '{{.ManagerStatus.Leader}}')" == true ]] && leader=2
standby=$((3 - leader))

run "$leader" "decider$leader" decider "$work/token"
leader_pid=$last_pid
run "$standby" "decider$standby" decider "$work/token"
run 3 agent agent "$work/token" 20
wait_for 15 "events from node3 at the leader" grep -q '^event .* node3-c ' "$work/decider$leader.out"
grep -q '^event' "$work/decider$standby.out" && fail "the standby manager received events"
echo "ok: node3's events reach the leader (node$leader) over 10.77.0.0/24; the standby gets none"

run 2 intruder agent "$work/other-token" 20
# The intruder finds that the deciders' proofs do not match its token and
# hangs up before proving anything; the deciders log the refusal.
wait_for 10 "the intruder refused" grep -q 'refused a peer' "$work/decider$leader.err"
grep -q "does not hold this cluster's token" "$work/intruder.err" || fail "the intruder did not say why it failed"
sleep 1
grep -q '^event .* node2-c ' "$work/decider$leader.out" && fail "events of an agent with another token arrived"
echo "ok: an agent with another token is refused, nothing of it arrives"

kill "$leader_pid"
wait_for 15 "the agent says no decider is reachable" grep -q 'no autoscaler decider reachable' "$work/agent.err"
sleep 3
lines="$(grep -c 'no autoscaler decider reachable' "$work/agent.err")"
[[ "$lines" == 1 ]] || fail "$lines 'no decider' lines in 3 s, want 1"
before="$(grep -c '^event .* node3-c ' "$work/decider$leader.out")"
run "$leader" "decider$leader-again" decider "$work/token"
wait_for 15 "forwarding resumes" grep -q '^event .* node3-c ' "$work/decider$leader-again.out"
grep -q 'decider reachable again after' "$work/agent.err" || fail "no line saying forwarding resumed"
echo "ok: with no decider the agent logged one line; $before events before, forwarding resumed after the restart:"
grep -E 'no autoscaler decider reachable|reachable again' "$work/agent.err" | sed 's/^/    /'
