#!/usr/bin/env bash
# The deployment of deploy/README.md, for real, on the 3-node test cluster:
#   1. deploy/build-image.sh builds swarm-autoscaler:local (the static `host`
#      FROM scratch) in the main engine; the image is loaded into node1 only,
#      as an operator would have it on one manager;
#   2. tests/cluster/up.sh 3 (node1, node2 managers, node3 worker), then
#      deploy/deploy.sh against node1 with NODES = node2 node3: it copies the
#      image to the other engines, creates the token secret and runs
#      `docker stack deploy` of deploy/stack.yml;
#   3. checks: one autoscaler task running on each node; each node's probe
#      loaded the eBPF programs (not the cgroupfs fallback) with the rights
#      the stack grants; every node's agent connected to the decider, which
#      counts three nodes; a demo service pinned to the worker scales out
#      under load and back in when idle, decided by the deciding manager's
#      task; then the same without CAP_SYS_ADMIN (`docker service update
#      --cap-drop`): every task warns and runs the cgroupfs probe, and the
#      service still scales out and back in; before that, the deciding
#      manager is demoted (its task restarts as a worker's agent, the other
#      manager takes the lease and scales the service) and promoted again
#      (its task restarts with a decider);
#   4. the stack, the service and the secret are removed, then the cluster
#      (down.sh; KEEP_CLUSTER=1 keeps the cluster, the stack is removed anyway).
#
# Not part of tests/run.sh: a cold static build of `host` takes about 16
# minutes on 2 cores (its own target directory, STATIC_TARGET_DIR, see
# deploy/README.md). Build it first without holding the test lock (the cargo
# line of deploy/build-image.sh), then run this under the lock tests/run.sh
# holds, so that it never tears down the test swarm under another run:
#   flock -w 1800 /tmp/swarm-autoscaler-tests.lock tests/cluster/stack-smoke.sh
# SKIP_BUILD=1 packages the last static binary as it is. Needs root, dockerd,
# the demo image (examples/demo/build-image.sh) and the shipped policies
# (policies/build.sh); says why and exits 0 when it cannot run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
skip() { echo "SKIP tests/cluster/stack-smoke.sh: $*" >&2; exit 0; }
fail() { echo "FAIL tests/cluster/stack-smoke.sh: $*" >&2; exit 1; }
say() { echo "stack-smoke: $*"; }
[[ $EUID -eq 0 ]] || skip "needs root (network namespaces, dockerd)"
command -v dockerd >/dev/null || skip "dockerd not installed (examples/setup.sh installs it)"
docker image inspect swarm-autoscaler-demo:local >/dev/null 2>&1 || skip "no swarm-autoscaler-demo:local image (examples/demo/build-image.sh)"
for policy in threshold proportional; do
    [[ -f "$root/policies/$policy.wasm" ]] || skip "no policies/$policy.wasm (policies/build.sh)"
done

image="${AUTOSCALER_IMAGE:-swarm-autoscaler:local}"
stack=sacl-stack
service="${stack}_autoscaler"
web=sacl-stack-web
port=18301
work="$(mktemp -d)"
loads=()
cleanup() {
    local rc=$?
    for pid in "${loads[@]}"; do kill "$pid" 2>/dev/null || true; done
    if (( rc != 0 )) && [[ -S "$(sacl_run 1)/docker.sock" ]]; then
        for k in 1 2 3; do
            cid="$(sacl_docker "$k" ps -aq --filter "label=com.docker.swarm.service.name=$service" 2>/dev/null | head -1)"
            [[ -n "$cid" ]] || continue
            echo "--- node$k autoscaler task log (last 30 lines) ---" >&2
            sacl_docker "$k" logs --tail 30 "$cid" 2>&1 | sed 's/^/    /' >&2 || true
        done
    fi
    if [[ -S "$(sacl_run 1)/docker.sock" ]]; then
        sacl_docker 1 service rm "$web" >/dev/null 2>&1 || true
        sacl_docker 1 stack rm "$stack" >/dev/null 2>&1 || true
        # Let the engines stop the tasks now, rather than in their own
        # shutdown (which gives up on them after 15 s).
        for _ in $(seq 1 100); do
            left=0
            for k in 1 2 3; do
                [[ -n "$(sacl_docker "$k" ps -q --filter "label=com.docker.stack.namespace=$stack" 2>/dev/null)" ]] && left=1
            done
            (( left == 0 )) && break
            sleep 0.2
        done
        # The secret goes once no task uses it.
        for _ in $(seq 1 50); do
            sacl_docker 1 secret rm autoscaler_token >/dev/null 2>&1 && break
            sleep 0.2
        done
    fi
    [[ "${KEEP_CLUSTER:-0}" == 1 ]] || "$here/down.sh" >/dev/null
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds (run anew each
# time: pass a function, not a $(...) expanded once); fails with WHAT.
wait_for() {
    local within="$1" what="$2"
    local until=$((SECONDS + within))
    shift 2
    until "$@"; do
        (( SECONDS < until )) || fail "not within $within s: $what"
        sleep 0.2
    done
}
now_ms() { date +%s%3N; }

# --- 1. the image ----------------------------------------------------------
"$root/deploy/build-image.sh"
# Only node1 gets it here (up.sh would copy it to every node): deploy.sh's
# NODES copy is part of what is checked.
CLUSTER_IMAGES=swarm-autoscaler-demo:local "$here/up.sh" 3
for k in 2 3; do sacl_docker "$k" image rm "$image" >/dev/null 2>&1 || true; done
docker save "$image" | sacl_docker 1 load >/dev/null

# --- 2. deploy -------------------------------------------------------------
STACK="$stack" DOCKER_HOST="$(sacl_docker_host 1)" \
    NODES="$(sacl_docker_host 2) $(sacl_docker_host 3)" "$root/deploy/deploy.sh"
deployed=$SECONDS
want="$(sacl_docker 1 image inspect --format '{{.Id}}' "$image")"
for k in 2 3; do
    [[ "$(sacl_docker "$k" image inspect --format '{{.Id}}' "$image" 2>/dev/null)" == "$want" ]] \
        || fail "deploy.sh did not copy $image to node$k"
done

# --- 3a. one task per node -------------------------------------------------
running_nodes() {
    sacl_docker 1 service ps "$service" --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' \
        | awk '$2 == "Running" { print $1 }' | sort | tr '\n' ' '
}
on_every_node() { [[ "$(running_nodes)" == "node1 node2 node3 " ]]; }
wait_for 60 "one running autoscaler task on each node" on_every_node
say "one task per node after $((SECONDS - deployed)) s: $(sacl_docker 1 service ps "$service" --filter desired-state=running --format '{{.Node}}={{.CurrentState}}' | tr '\n' ' ')"

task_cid() { sacl_docker "$1" ps -q --filter "label=com.docker.swarm.service.name=$service" | head -1; }
task_log() { sacl_docker "$1" logs "$(task_cid "$1")" 2>&1; }
metrics() { nsenter --net="/var/run/netns/$(sacl_netns "$1")" curl -s -m 2 http://127.0.0.1:9464/metrics; }
metric() { metrics "$1" | awk -v name="$2" '$1 == name { print $2 }'; }
# Here-strings, not pipes: `grep -q` leaves at the first match, and with
# pipefail the writer's SIGPIPE would fail the check.
has_line() { grep -q "$2" <<<"$(task_log "$1")"; }
first_line() { grep -m1 "$2" <<<"$(task_log "$1")" || true; }

# --- 3b. eBPF on every node, and the rights it came from -------------------
# check_probes ebpf|cgroupfs: every node's task runs that probe; prints the
# rights the task got (CapEff, the seccomp mode).
check_probes() {
    local want="$1" k pid cap_eff seccomp
    for k in 1 2 3; do
        wait_for 60 "node$k's task to start its probe" has_line "$k" '"probe started'
        case "$want" in
            ebpf)
                if has_line "$k" 'falling back to the cgroupfs probe'; then
                    fail "node$k: eBPF did not load in the task: $(first_line "$k" 'falling back')"
                fi
                has_line "$k" '"probe started: eBPF' || fail "node$k: no eBPF probe: $(first_line "$k" 'probe started')" ;;
            cgroupfs)
                has_line "$k" 'falling back to the cgroupfs probe' || fail "node$k: no fallback warning"
                has_line "$k" '"probe started: cgroupfs' || fail "node$k: no cgroupfs probe: $(first_line "$k" 'probe started')" ;;
        esac
        pid="$(sacl_docker "$k" inspect --format '{{.State.Pid}}' "$(task_cid "$k")")"
        cap_eff="$(awk '/^CapEff/ { print $2 }' "/proc/$pid/status")"
        seccomp="$(awk '/^Seccomp:/ { print $2 }' "/proc/$pid/status")"
        # CAP_SYS_ADMIN is bit 21.
        if [[ "$want" == ebpf ]] && ! (( (16#$cap_eff >> 21) & 1 )); then
            fail "node$k: eBPF loaded without CAP_SYS_ADMIN? (CapEff $cap_eff)"
        fi
        if [[ "$want" == cgroupfs ]] && (( (16#$cap_eff >> 21) & 1 )); then
            fail "node$k: the task still has CAP_SYS_ADMIN (CapEff $cap_eff)"
        fi
        say "node$k: $(first_line "$k" '"probe started' | grep -o '"probe started: [^"]*' | cut -c2-) (CapEff $cap_eff, seccomp mode $seccomp)"
    done
}
check_probes ebpf

# --- 3c. the agents reach the decider ----------------------------------------
leader=""
find_leader() {
    local k
    for k in 1 2; do
        [[ "$(metric "$k" autoscaler_cluster_leader)" == 1 ]] && { leader=$k; return 0; }
    done
    return 1
}
three_agents() { [[ "$(metric "$leader" autoscaler_cluster_nodes_connected)" == 3 ]]; }
check_agents() {
    local k
    for k in 1 2 3; do
        wait_for 60 "node$k's agent to connect to a decider" has_line "$k" 'connected to the decider\|decider reachable again'
    done
    wait_for 30 "a manager's task to decide (autoscaler_cluster_leader 1)" find_leader
    wait_for 30 "node$leader's decider to count 3 connected agents" three_agents
    say "node$leader decides ($(first_line "$leader" 'decider lease taken' | grep -o 'decider lease taken[^"]*')); agents connected: $(metric "$leader" autoscaler_cluster_nodes_connected)"
}
check_agents

# --- 3d. a service on the worker scales out and back in --------------------
sacl_docker 1 service create --detach --quiet --no-resolve-image --name "$web" \
    --constraint node.hostname==node3 --network host --limit-cpu 0.5 \
    --env "PORT=$port" --env "SLOT_PORT_BASE=$((port + 10))" --env 'SLOT={{.Task.Slot}}' \
    --stop-grace-period 2s \
    --label autoscale.enable=true --label autoscale.policy=threshold \
    --label autoscale.min=1 --label autoscale.max=3 \
    --label autoscale.cpu.upper=0.6 --label autoscale.cpu.lower=0.15 \
    --label autoscale.cooldown.up=1s --label autoscale.cooldown.down=3s \
    --label autoscale.warmup=2s swarm-autoscaler-demo:local >/dev/null
replicas() { sacl_docker 1 service inspect "$web" --format '{{.Spec.Mode.Replicated.Replicas}}'; }
web_nodes() {
    sacl_docker 1 service ps "$web" --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' \
        | awk '$2 == "Running" { print $1 }' | sort -u | tr '\n' ' '
}
only_on_node3() { [[ "$(web_nodes)" == "node3 " ]]; }
scaled_out() { (( $(replicas) >= 2 )); }
back_to_one() { [[ "$(replicas)" == 1 ]]; }
wait_for 60 "$web to run on node3" only_on_node3

# scale_cycle: load the worker's replica until the deciding task scales the
# service out, stop, and wait until it is back to one replica.
scale_cycle() {
    local addr load_start out_ms idle first k other
    wait_for 30 "node$leader to autoscale $web" has_line "$leader" "service $web autoscaled"
    wait_for 30 "node3's probe to track the replica" has_line 3 'cluster: new tracking set'
    sleep 3 # past the warm-up
    addr="$(sacl_ip 3)"
    load_start="$(now_ms)"
    for _ in 1 2 3 4; do
        ( while :; do curl -s -o /dev/null -m 15 "http://$addr:$port/burn?ms=50" || sleep 0.05; done ) &
        loads+=($!)
    done
    wait_for 90 "a scale-out of $web under load" scaled_out
    out_ms=$(( $(now_ms) - load_start ))
    wait_for 60 "the new replicas of $web on node3" only_on_node3
    first="$(first_line "$leader" "\"scaled $web ")"
    [[ -n "$first" ]] || fail "node$leader's task logged no scale of $web"
    say "load start -> $(replicas) replicas seen by this script: $out_ms ms (kernel event -> spec updated $(grep -o '"latency_us":[0-9]*' <<<"$first" | cut -d: -f2) us)"
    for pid in "${loads[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${loads[@]}" 2>/dev/null || true
    loads=()
    idle=$SECONDS
    wait_for 120 "$web back to 1 replica once idle" back_to_one
    say "back to 1 replica $((SECONDS - idle)) s after the load stopped; decisions:"
    for k in 1 2; do
        { grep -o "\"scaled $web [^\"]*" <<<"$(task_log "$k")" || true; } | cut -c2- | sed "s/^/    node$k: /"
    done
    # Only the deciding manager's task scaled anything.
    other=$((3 - leader))
    if has_line "$other" "\"scaled $web"; then fail "node$other scaled $web too"; fi
    if has_line 3 "\"scaled $web"; then fail "the worker scaled $web"; fi
    for k in 1 2 3; do
        say "node$k: forwarded $(metric "$k" autoscaler_cluster_forwarded_events_total) events, probe events $(metric "$k" autoscaler_probe_events_total)"
    done
}
scale_cycle

# --- 3e. the deciding manager is demoted, then promoted again --------------
# Its task ends once its engine is a worker and Swarm's restart policy
# starts it again as a worker's agent; the other manager takes the lease.
# Promoted again, its task restarts with a decider.
node_id() { sacl_docker "$1" info --format '{{.Swarm.NodeID}}'; }
old_leader=$leader
other=$((3 - old_leader))
old_task="$(task_cid "$old_leader")"
task_replaced() { local now; now="$(task_cid "$old_leader")"; [[ -n "$now" && "$now" != "$old_task" ]]; }
other_leads() { [[ "$(metric "$other" autoscaler_cluster_leader)" == 1 ]]; }
demoted=$SECONDS
sacl_docker "$other" node demote "$(node_id "$old_leader")" >/dev/null
wait_for 30 "node$other's task to take the lease" other_leads
lease_s=$((SECONDS - demoted))
wait_for 60 "node$old_leader's task to restart after the demotion" task_replaced
wait_for 30 "node$old_leader's new task to run as a worker's agent" has_line "$old_leader" 'autoscaler agent running (worker'
ended="$(sacl_docker "$old_leader" ps -a --filter "label=com.docker.swarm.service.name=$service" --format '{{.ID}} {{.Status}}' | grep "^${old_task:0:12}" || true)"
say "demoted node$old_leader: node$other decides after ${lease_s} s; node$old_leader's task restarted as a worker's agent after $((SECONDS - demoted)) s (old task: ${ended:-gone})"
leader=""
check_agents
scale_cycle
old_task="$(task_cid "$old_leader")"
promoted=$SECONDS
sacl_docker "$other" node promote "$(node_id "$old_leader")" >/dev/null
wait_for 60 "node$old_leader's task to restart after the promotion" task_replaced
wait_for 30 "node$old_leader's new task to run a decider" has_line "$old_leader" 'cluster channel listening for agents'
say "promoted node$old_leader again: its task restarted with a decider after $((SECONDS - promoted)) s"

# --- 3f. without the rights: the cgroupfs fallback -------------------------
# The same stack without CAP_SYS_ADMIN (as on an engine that grants no
# capability to services): every task restarts, warns once and reads
# cgroupfs every second; decisions still come, up to a second later.
tasks_before="$(for k in 1 2 3; do task_cid "$k"; done | sort | tr '\n' ' ')"
sacl_docker 1 service update --detach --quiet --cap-drop CAP_SYS_ADMIN "$service" >/dev/null
restarted() {
    local k now
    now="$(for k in 1 2 3; do task_cid "$k"; done | sort | tr '\n' ' ')"
    [[ "$now" != "$tasks_before" && "$(wc -w <<<"$now")" == 3 && "$(running_nodes)" == "node1 node2 node3 " ]] || return 1
    for k in 1 2 3; do
        grep -qw "$(task_cid "$k")" <<<"$tasks_before" && return 1
    done
    return 0
}
updated=$SECONDS
wait_for 120 "every autoscaler task restarted without CAP_SYS_ADMIN" restarted
say "tasks restarted without CAP_SYS_ADMIN in $((SECONDS - updated)) s"
check_probes cgroupfs
check_agents
scale_cycle
say "ok"
