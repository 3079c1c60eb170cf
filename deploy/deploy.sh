#!/usr/bin/env bash
# Deploy the autoscaler stack (deploy/stack.yml) to the swarm DOCKER_HOST
# points at (a manager), as stack STACK (default `autoscaler`):
#   1. build the image if this engine does not have it (deploy/build-image.sh);
#   2. build the shipped policies if missing (policies/build.sh);
#   3. create the `autoscaler_token` secret if the swarm has none;
#   4. docker stack deploy.
# With no registry, every node needs the image: NODES="unix:///run/docker-n2.sock ..."
# lists other engines to copy it to (tests/cluster/up.sh does it for its nodes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
stack="${STACK:-autoscaler}"
image="${AUTOSCALER_IMAGE:-swarm-autoscaler:local}"

docker image inspect "$image" >/dev/null 2>&1 || "$here/build-image.sh"
for policy in threshold proportional; do
    [[ -f "$root/policies/$policy.wasm" ]] || { "$root/policies/build.sh"; break; }
done
for node in ${NODES:-}; do
    want="$(docker image inspect --format '{{.Id}}' "$image")"
    have="$(DOCKER_HOST="$node" docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    [[ "$have" == "$want" ]] || docker save "$image" | DOCKER_HOST="$node" docker load >/dev/null
done
if ! docker secret inspect autoscaler_token >/dev/null 2>&1; then
    # 32 random bytes as hex, straight from the kernel into the secret.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | docker secret create autoscaler_token - >/dev/null
    echo "created secret autoscaler_token"
fi
docker stack deploy --resolve-image never -c "$here/stack.yml" "$stack"
