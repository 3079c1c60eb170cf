#!/usr/bin/env bash
# Tear down what tests/cluster/up.sh created, and nothing else:
#   - any process still in a node's network namespace after its engine
#     stopped (a test's autoscaler daemon), found by `ip netns pids`;
#   - each node's dockerd, found by its pidfile (SIGTERM, then SIGKILL after
#     20 s), and any process left in the node's cgroup parent /nK (its
#     containerd, shims and containers, all started by that engine);
#   - the empty cgroup directories /sys/fs/cgroup/*/nK (rmdir only: a
#     directory that still has processes stays, and is reported);
#   - the network namespaces sacl-nK (their veth ends go with them), the
#     host ends sacl-nK-h, the bridge sacl-br0 and the iptables accept rule;
#   - the state directory (data roots, node /run dirs, logs) and the
#     /run/docker-nK.sock symlinks.
# The main engine (/var/run/docker.sock) and its Swarm are never touched.
# Safe to run twice, or when up.sh failed half-way.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
[[ $EUID -eq 0 ]] || { echo "down.sh: needs root" >&2; exit 1; }
log() { echo "down.sh: $*" >&2; }

# Every node number that left a trace: a state dir, a netns, a veth, a symlink.
nodes() {
    {
        for d in "$SACL_STATE"/n[0-9]; do [[ -d "$d" ]] && echo "${d##*/n}"; done
        ip netns list 2>/dev/null | sed -n 's/^sacl-n\([0-9]\)\b.*/\1/p'
        ip -o link show 2>/dev/null | sed -n 's/^[0-9]*: sacl-n\([0-9]\)-h[@:].*/\1/p'
        for s in /run/docker-n[0-9].sock; do [[ -L "$s" ]] && { s="${s#/run/docker-n}"; echo "${s%.sock}"; }; done
    } | sort -un
}

# Pids of every process in node K's cgroup parent, in any hierarchy.
cgroup_pids() {
    local parent root
    parent="$(sacl_cgroup_parent "$1")"
    for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
        [[ -d "$root$parent" ]] || continue
        find "$root$parent" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}

# Whatever else runs in node K's network namespace (an autoscaler daemon a
# test started there and could not stop): SIGTERM, then SIGKILL.
stop_netns_processes() {
    local ns pids
    ns="$(sacl_netns "$1")"
    ip netns list 2>/dev/null | grep -qw "^$ns" || return 0
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [[ -n "${pids// }" ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    sleep 2
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    # shellcheck disable=SC2086
    [[ -n "${pids// }" ]] && kill -KILL $pids 2>/dev/null
    return 0
}

stop_engine() {
    local k="$1" pid i
    if pid="$(sacl_engine_pid "$k")"; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "node$k: dockerd $pid ignored SIGTERM for 20 s, killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    # dockerd stops its containers on exit; whatever survived (a shim of a
    # container it could not stop, or everything after a SIGKILL) is still
    # in the node's cgroup parent, which only this engine used.
    local left
    left="$(cgroup_pids "$k")"
    if [[ -n "$left" ]]; then
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null
        sleep 0.5
    fi
}

remove_cgroups() {
    local parent dir
    parent="$(sacl_cgroup_parent "$1")"
    for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
        dir="$root$parent"
        [[ -d "$dir" ]] || continue
        # Deepest first; rmdir refuses a cgroup that still has members.
        find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
        [[ -d "$dir" ]] && log "node$1: cgroup $dir still has processes, left in place"
    done
}

for k in $(nodes); do
    stop_engine "$k"
    stop_netns_processes "$k"
    remove_cgroups "$k"
    ns="$(sacl_netns "$k")"
    ip netns list 2>/dev/null | grep -qw "^$ns" && ip netns del "$ns"
    # Deleting the namespace deletes the pair, asynchronously: the host end
    # may vanish between the check and the delete.
    ip link show "$(sacl_veth "$k")" >/dev/null 2>&1 && ip link del "$(sacl_veth "$k")" 2>/dev/null
    [[ -L "$(sacl_sock "$k")" ]] && rm -f "$(sacl_sock "$k")"
done

if ip link show "$SACL_BRIDGE" >/dev/null 2>&1; then
    ip link del "$SACL_BRIDGE"
fi
for chain in $(cat "$SACL_STATE/iptables-chain" 2>/dev/null) DOCKER-USER FORWARD; do
    while iptables -C "$chain" -i "$SACL_BRIDGE" -o "$SACL_BRIDGE" -j ACCEPT 2>/dev/null; do
        iptables -D "$chain" -i "$SACL_BRIDGE" -o "$SACL_BRIDGE" -j ACCEPT
    done
done

# The engines mounted their overlays inside their own mount namespaces,
# which died with them; a mount still visible here under the state dir
# would make rm fail, so check rather than remove across it.
if [[ -d "$SACL_STATE" ]]; then
    if grep -q " $SACL_STATE" /proc/mounts; then
        log "mounts remain under $SACL_STATE, not removing it:"
        grep " $SACL_STATE" /proc/mounts >&2
        exit 1
    fi
    rm -rf --one-file-system "$SACL_STATE"
fi
echo "test cluster removed"
