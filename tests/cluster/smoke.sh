#!/usr/bin/env bash
# Check the test cluster itself: bring up 3 nodes, run a host-network
# service pinned to the worker, and check that its container runs on node3,
# answers inside node3's network namespace, and has its cgroups under
# /n3 in every hierarchy; then tear everything down (KEEP_CLUSTER=1 keeps
# it). Needs root, dockerd and the demo image (examples/demo/build-image.sh)
# in the main engine; says why and exits 0 when it cannot run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
skip() { echo "SKIP tests/cluster/smoke.sh: $*" >&2; exit 0; }
[[ $EUID -eq 0 ]] || skip "needs root (network namespaces, dockerd)"
command -v dockerd >/dev/null || skip "dockerd not installed (examples/setup.sh installs it)"
docker image inspect swarm-autoscaler-demo:local >/dev/null 2>&1 || skip "no swarm-autoscaler-demo:local image (examples/demo/build-image.sh)"

fail() { echo "FAIL tests/cluster/smoke.sh: $*" >&2; exit 1; }
[[ "${KEEP_CLUSTER:-0}" == 1 ]] || trap '"$here/down.sh" >/dev/null' EXIT

out="$("$here/up.sh" 3)"
echo "$out"
[[ "$(echo "$out" | wc -l)" == 3 ]] || fail "up.sh printed $(echo "$out" | wc -l) lines, want 3"
# node1 leads a fresh cluster; tests may have moved leadership since.
[[ "$(grep -c ' manager leader$' <<<"$out")" == 1 ]] || fail "not exactly one leader"
grep -q '^node1 unix:///run/docker-n1.sock manager' <<<"$out" || fail "node1 is not a manager"
grep -q '^node3 unix:///run/docker-n3.sock worker$' <<<"$out" || fail "node3 is not a worker"
# Idempotent: a second run changes nothing and prints the same.
[[ "$("$here/up.sh" 3)" == "$out" ]] || fail "a second up.sh 3 printed something else"

port=18080
sacl_docker 1 service create --detach --quiet --name sacl-smoke --constraint node.role==worker \
    --network host -e PORT=$port swarm-autoscaler-demo:local >/dev/null 2>&1
cid=""
for _ in $(seq 1 150); do
    cid="$(sacl_docker 3 ps -q --no-trunc --filter label=com.docker.swarm.service.name=sacl-smoke)"
    [[ -n "$cid" ]] && break
    sleep 0.2
done
[[ -n "$cid" ]] || fail "no container of sacl-smoke on node3 after 30 s: $(sacl_docker 1 service ps sacl-smoke --no-trunc)"
node="$(sacl_docker 1 service ps sacl-smoke --format '{{.Node}}' | head -1)"
[[ "$node" == node3 ]] || fail "sacl-smoke runs on $node, want node3"
for h in /sys/fs/cgroup/*/; do
    [[ -d "$h/n3" ]] || continue
    [[ -d "$h/n3/$cid" ]] || fail "no cgroup $h/n3/$cid"
done
[[ -d /sys/fs/cgroup/cpu/n3/$cid || -d /sys/fs/cgroup/n3/$cid ]] || fail "container $cid has no cgroup under /n3"
answer=""
for _ in $(seq 1 50); do
    answer="$(nsenter --net=/var/run/netns/sacl-n3 curl -s -m 1 "http://127.0.0.1:$port/" || true)"
    [[ -n "$answer" ]] && break
    sleep 0.2
done
[[ -n "$answer" ]] || fail "the service does not answer on 127.0.0.1:$port inside node3"
sacl_docker 1 service rm sacl-smoke >/dev/null
echo "ok: service on node3, container ${cid:0:12} under /n3, answered: $answer"
