#!/usr/bin/env bash
# Bring up a real N-node Docker Swarm on this one machine:
#
#   tests/cluster/up.sh 3     # node1 manager (leader), node2 manager, node3 worker
#   tests/cluster/down.sh     # remove all of it
#
# Each node is a separate dockerd in namespaces of its own:
#   - network: netns sacl-nK, a veth pair to the bridge sacl-br0 in the root
#     namespace, address 10.77.0.(K+1)/24 (the bridge is 10.77.0.1);
#   - UTS: hostname nodeK, so Swarm's node names differ;
#   - mount (slave of the host's): $SACL_STATE/nK/run is mounted over /run
#     and $SACL_STATE/nK/etc-docker over /etc/docker, so the engine listens
#     on /run/docker.sock *inside its namespace*, exactly where a Swarm
#     service bind-mounts it from (deploy/stack.yml), without touching the
#     host's /run/docker.sock; its own engine key, exec root and pidfile;
#   - its own data root ($SACL_STATE/nK/data) and cgroup parent /nK, so its
#     containers live at /sys/fs/cgroup/<controller>/nK/<id>.
# From the host, node K answers on unix:///run/docker-nK.sock (a symlink).
#
# Nodes 1..M are managers (node1 initialises the Swarm), the rest workers.
# M is $CLUSTER_MANAGERS, by default ceil(N/2) but at most N-1 (so N >= 2
# always has a worker). Images named in $CLUSTER_IMAGES (default: the demo
# and autoscaler images, if the main engine has them) are copied to every
# node with `docker save | docker load`.
#
# Idempotent: a node already running is kept, a Swarm already joined is not
# joined again; running it with a larger N adds nodes. The main engine
# (/var/run/docker.sock) and its Swarm are never touched: images are only
# read from it. Prints one line per node:
#   node1 unix:///run/docker-n1.sock manager leader
# and writes the same as shell variables to $SACL_STATE/cluster.env
# (NODE1_DOCKER_HOST=..., NODE1_ROLE=..., CLUSTER_NODES=N).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

n="${1:-}"
if ! [[ "$n" =~ ^[1-9]$ ]]; then
    echo "usage: $0 N   (1 <= N <= $SACL_MAX_NODES nodes)" >&2
    exit 2
fi
[[ $EUID -eq 0 ]] || { echo "up.sh: needs root (netns, veth, dockerd)" >&2; exit 1; }
for tool in ip iptables nsenter unshare dockerd docker; do
    command -v "$tool" >/dev/null || { echo "up.sh: $tool not found (examples/setup.sh installs docker.io and iptables)" >&2; exit 1; }
done
if (( n == 1 )); then default_managers=1; else default_managers=$(( (n + 1) / 2 )); (( default_managers > n - 1 )) && default_managers=$((n - 1)); fi
managers="${CLUSTER_MANAGERS:-$default_managers}"
(( managers >= 1 && managers <= n )) || { echo "up.sh: CLUSTER_MANAGERS=$managers must be within 1..$n" >&2; exit 2; }

log() { echo "up.sh: $*" >&2; }
mkdir -p "$SACL_STATE"

# --- the bridge and the forwarding rule ---------------------------------
if ! ip link show "$SACL_BRIDGE" >/dev/null 2>&1; then
    ip link add "$SACL_BRIDGE" type bridge
    ip addr add "$SACL_SUBNET_PREFIX.1/24" dev "$SACL_BRIDGE"
fi
ip link set "$SACL_BRIDGE" up
chain="$(sacl_chain)"
if ! iptables -C "$chain" -i "$SACL_BRIDGE" -o "$SACL_BRIDGE" -j ACCEPT 2>/dev/null; then
    iptables -I "$chain" -i "$SACL_BRIDGE" -o "$SACL_BRIDGE" -j ACCEPT
fi
# down.sh removes the rule from the chain it went into.
echo "$chain" >"$SACL_STATE/iptables-chain"

# --- one node ------------------------------------------------------------
wait_engine() {
    local k="$1" i
    for i in $(seq 1 100); do
        sacl_docker "$k" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "node$k: dockerd did not answer on $(sacl_sock "$k") within 20 s; its log: $(sacl_dir "$k")/dockerd.log"
    tail -n 20 "$(sacl_dir "$k")/dockerd.log" >&2 || true
    return 1
}

start_node() {
    local k="$1" ns veth dir run
    ns="$(sacl_netns "$k")"; veth="$(sacl_veth "$k")"; dir="$(sacl_dir "$k")"; run="$(sacl_run "$k")"
    if ! ip netns list | grep -qw "^$ns"; then
        ip netns add "$ns"
    fi
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$veth" master "$SACL_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$(sacl_ip "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
    # No default route, on purpose: the nodes reach each other and the
    # host (10.77.0.1) and nothing else. An engine's attempt to pull an
    # image (Swarm tries, images here have no registry digest) then fails
    # at once instead of waiting for a DNS timeout, and no test traffic
    # leaves the test subnet.
    ip -n "$ns" route del default 2>/dev/null || true

    if sacl_engine_pid "$k" >/dev/null; then
        return 0
    fi
    mkdir -p "$dir/data" "$run" "$dir/etc-docker"
    # A stale pidfile or socket from an engine that died would stop dockerd.
    rm -f "$run/docker.pid" "$run/docker.sock"
    ln -sfn "$run/docker.sock" "$(sacl_sock "$k")"
    # nsenter --net, not `ip netns exec`: the latter remounts /sys and hides
    # the cgroup mounts dockerd needs. The mount namespace is a slave of the
    # host's, so the cgroup hierarchies stay visible and nothing mounted in
    # it (overlays, the /run bind) leaks out.
    nsenter --net="/var/run/netns/$ns" \
        unshare --uts --mount --propagation slave \
        setsid bash -c '
            set -e
            # Close every inherited descriptor: a dockerd that kept, say, the
            # e2e lock file open would hold that lock for its whole life.
            for fd in /proc/self/fd/*; do
                n=${fd##*/}
                if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
            done
            mount --bind "$1" /run
            mount --bind "$2" /etc/docker
            # The engine data root also at the default path, as on a real
            # node: a task bind-mounting /var/lib/docker/swarm/certificates
            # (deploy/stack.yml) gets this node'"'"'s own swarm certificates.
            mkdir -p /var/lib/docker
            mount --bind "$4" /var/lib/docker
            hostname "$3"
            exec dockerd --data-root "$4" --exec-root /run/docker \
                -H unix:///run/docker.sock --pidfile /run/docker.pid \
                --bridge none --iptables=false --ip-masq=false \
                --cgroup-parent "$5" --config-file "$6"
        ' sacl-node "$run" "$dir/etc-docker" "$(sacl_hostname "$k")" "$dir/data" \
          "$(sacl_cgroup_parent "$k")" "$dir/daemon.json" \
        </dev/null >"$dir/dockerd.log" 2>&1 &
}

role_of() { if (( $1 <= managers )); then echo manager; else echo worker; fi; }

join_node() {
    local k="$1" role state token
    role="$(role_of "$k")"
    state="$(sacl_docker "$k" info --format '{{.Swarm.LocalNodeState}}')"
    [[ "$state" == active ]] && return 0
    token="$(sacl_docker 1 swarm join-token -q "$role")"
    sacl_docker "$k" swarm join --advertise-addr "$(sacl_ip "$k")" --listen-addr "$(sacl_ip "$k"):2377" \
        --token "$token" "$(sacl_ip 1):2377" >/dev/null
}

for k in $(seq 1 "$n"); do
    # An empty config file: the host's /etc/docker/daemon.json, if any, is
    # the main engine's.
    mkdir -p "$(sacl_dir "$k")"
    [[ -f "$(sacl_dir "$k")/daemon.json" ]] || echo '{}' >"$(sacl_dir "$k")/daemon.json"
    start_node "$k"
done
for k in $(seq 1 "$n"); do wait_engine "$k"; done

if [[ "$(sacl_docker 1 info --format '{{.Swarm.LocalNodeState}}')" != active ]]; then
    sacl_docker 1 swarm init --advertise-addr "$(sacl_ip 1)" --listen-addr "$(sacl_ip 1):2377" >/dev/null
fi
for k in $(seq 2 "$n"); do join_node "$k"; done

# --- images --------------------------------------------------------------
images="${CLUSTER_IMAGES:-swarm-autoscaler-demo:local swarm-autoscaler:local}"
for image in $images; do
    if ! want="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)"; then
        # Only an image asked for by name is worth a word.
        [[ -n "${CLUSTER_IMAGES:-}" ]] && log "image $image is not in the main engine, not copied"
        continue
    fi
    for k in $(seq 1 "$n"); do
        have="$(sacl_docker "$k" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
        [[ "$have" == "$want" ]] && continue
        docker save "$image" | sacl_docker "$k" load >/dev/null
    done
done

# --- report --------------------------------------------------------------
# Roles and leadership as the Swarm sees them (a node may have been
# promoted or demoted by a test since it joined).
env_file="$SACL_STATE/cluster.env"
: >"$env_file.tmp"
echo "CLUSTER_NODES=$n" >>"$env_file.tmp"
for k in $(seq 1 "$n"); do
    role=worker; lead=""
    if [[ "$(sacl_docker "$k" info --format '{{.Swarm.ControlAvailable}}')" == true ]]; then
        role=manager
        [[ "$(sacl_docker "$k" node inspect self --format '{{.ManagerStatus.Leader}}')" == true ]] && lead=leader
    fi
    echo "$(sacl_hostname "$k") $(sacl_docker_host "$k") $role${lead:+ $lead}"
    {
        echo "NODE${k}_DOCKER_HOST=$(sacl_docker_host "$k")"
        echo "NODE${k}_ROLE=$role"
        echo "NODE${k}_ADDR=$(sacl_ip "$k")"
        echo "NODE${k}_HOSTNAME=$(sacl_hostname "$k")"
        echo "NODE${k}_CGROUP_PARENT=$(sacl_cgroup_parent "$k")"
    } >>"$env_file.tmp"
done
mv "$env_file.tmp" "$env_file"
