#!/usr/bin/env bash
# Build the evaluation application into the local image
# `swarm-autoscaler-app:local` (override with APP_IMAGE): the static `app`
# (every service of the application) and `loadgen` (the open-loop load
# generator) in one `FROM scratch` image. Respects CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${APP_IMAGE:-swarm-autoscaler-app:local}"
triple=x86_64-unknown-linux-gnu
cd "$here"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --target "$triple"
bin="${CARGO_TARGET_DIR:-$here/target}/$triple/release"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$bin/app" "$bin/loadgen" "$context/"
if ! DOCKER_BUILDKIT=0 docker build -t "$image" "$context" >"$context/build.log" 2>&1; then
    cat "$context/build.log" >&2
    exit 1
fi
echo "app image $image ($(stat -c %s "$bin/app") + $(stat -c %s "$bin/loadgen") bytes)"
