#!/usr/bin/env bash
# Build the demo workload into the local image `swarm-autoscaler-demo:local`
# (override with DEMO_IMAGE): a static binary (crt-static, x86_64 glibc) in a
# `FROM scratch` image. There is no registry here, so the image is built on
# the Swarm node that runs it. Respects CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${DEMO_IMAGE:-swarm-autoscaler-demo:local}"
triple=x86_64-unknown-linux-gnu
cd "$here"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --target "$triple"
bin="${CARGO_TARGET_DIR:-$here/target}/$triple/release/demo"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$bin" "$context/"
# The legacy builder (BuildKit off) needs nothing from the network; its
# deprecation notice is noise, so output is shown only on failure.
if ! DOCKER_BUILDKIT=0 docker build -t "$image" "$context" >"$context/build.log" 2>&1; then
    cat "$context/build.log" >&2
    exit 1
fi
echo "demo image $image ($(stat -c %s "$bin") bytes binary)"
