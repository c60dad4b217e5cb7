#!/bin/sh
# Pin docker/Dockerfile's base image to the digest its tag has today: asks the registry (needs
# Docker with buildx and access to Docker Hub), rewrites the `ARG BASE_IMAGE=TAG@sha256:...` line
# and prints it. Commit the change; every manifest of a job run in the new image records it.
set -eu
dockerfile="$(dirname "$0")/Dockerfile"
tag=$(sed -n 's/^ARG BASE_IMAGE=\([^@]*\)@sha256:.*/\1/p' "$dockerfile")
[ -n "$tag" ] || { echo "no 'ARG BASE_IMAGE=TAG@sha256:...' line in $dockerfile" >&2; exit 1; }
digest=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest}}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
sed -i "s|^ARG BASE_IMAGE=.*|ARG BASE_IMAGE=$tag@$digest|" "$dockerfile"
echo "$tag@$digest"
