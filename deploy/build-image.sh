#!/usr/bin/env bash
# Build the autoscaler into the local image `swarm-autoscaler:local`
# (override with AUTOSCALER_IMAGE): the `host` binary linked statically
# (crt-static, x86_64 glibc) in a `FROM scratch` image. There is no registry
# here, so the image is built once and copied to every node with
# `docker save | docker load` (tests/cluster/up.sh does that for its nodes).
#
# The static build has its own target directory: RUSTFLAGS are part of every
# crate's fingerprint, so sharing the normal target directory would rebuild
# everything (wasmtime included, ~15 min on 2 cores) on each switch.
# Override it with STATIC_TARGET_DIR. The binary is rebuilt only when cargo
# finds a source change; SKIP_BUILD=1 packages the last binary as is.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
image="${AUTOSCALER_IMAGE:-swarm-autoscaler:local}"
triple=x86_64-unknown-linux-gnu
target_dir="${STATIC_TARGET_DIR:-/var/cache/swarm-autoscaler/static-target}"
bin="$target_dir/$triple/release/host"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --quiet --locked -p host --bin host --target "$triple")
fi
[[ -x "$bin" ]] || { echo "build-image: no binary at $bin (run without SKIP_BUILD=1)" >&2; exit 1; }
# A static binary has no interpreter; anything else would not start FROM scratch.
if file "$bin" 2>/dev/null | grep -q "dynamically linked"; then
    echo "build-image: $bin is dynamically linked, it cannot run in a scratch image" >&2
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$bin" "$context/"
# The release profile keeps line tables for backtraces (~160 MB static);
# the image gets the binary without them (~28 MB).
strip "$context/host"
# The legacy builder (BuildKit off) needs nothing from the network; its
# deprecation notice is noise, so output is shown only on failure.
if ! DOCKER_BUILDKIT=0 docker build -t "$image" "$context" >"$context/build.log" 2>&1; then
    cat "$context/build.log" >&2
    exit 1
fi
echo "autoscaler image $image ($(stat -c %s "$context/host") bytes binary)"
