# Shared names for tests/cluster/up.sh and down.sh. Everything the test
# cluster creates carries one of these names, so down.sh removes exactly
# that and nothing else. Sourced, not run.

# Everything on disk lives under one state directory.
SACL_STATE="${SACL_STATE:-/var/lib/swarm-autoscaler-cluster}"
# The bridge in the root namespace that joins the nodes, and its subnet:
# the bridge is 10.77.0.1, node K is 10.77.0.(K+1).
SACL_BRIDGE=sacl-br0
SACL_SUBNET_PREFIX=10.77.0
SACL_MAX_NODES=9

sacl_netns() { echo "sacl-n$1"; }
sacl_veth() { echo "sacl-n$1-h"; }
sacl_ip() { echo "$SACL_SUBNET_PREFIX.$(($1 + 1))"; }
sacl_hostname() { echo "node$1"; }
sacl_dir() { echo "$SACL_STATE/n$1"; }
# The node's /run, bind-mounted over /run inside the node's mount namespace:
# its socket, pidfile and exec root live here.
sacl_run() { echo "$SACL_STATE/n$1/run"; }
# The name operators and tests use: a symlink to the socket above.
sacl_sock() { echo "/run/docker-n$1.sock"; }
sacl_docker_host() { echo "unix://$(sacl_sock "$1")"; }
sacl_cgroup_parent() { echo "/n$1"; }

# docker against node K.
sacl_docker() {
    local k="$1"
    shift
    DOCKER_HOST="$(sacl_docker_host "$k")" docker "$@"
}

# The pid in node K's pidfile if that process is still a dockerd.
sacl_engine_pid() {
    local pidfile pid
    pidfile="$(sacl_run "$1")/docker.pid"
    [[ -s "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
    echo "$pid"
}

# The iptables chain that takes the accept rule: DOCKER-USER when a main
# dockerd made it (its FORWARD policy is DROP), FORWARD otherwise.
sacl_chain() {
    if iptables -n -L DOCKER-USER >/dev/null 2>&1; then echo DOCKER-USER; else echo FORWARD; fi
}
