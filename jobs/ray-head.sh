#!/bin/sh
# ray-head (profile `cluster`): the head of the Ray cluster that `--engine ray` of validate and
# generate joins through RAY_ADDRESS=ray-head:6379 (docs/scale.md): its GCS on 6379, Ray Client
# on 10001. Blocks until the container stops; arguments go to `ray start` (--num-cpus N).
set -eu
exec ray start --head --block --port=6379 --ray-client-server-port=10001 --include-dashboard=false "$@"
