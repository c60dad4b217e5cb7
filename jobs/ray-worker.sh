#!/bin/sh
# ray-worker (profile `cluster`, `--scale ray-worker=N`): a worker node joining ray-head. Blocks
# until the container stops; arguments go to `ray start` (e.g. --num-cpus 4).
set -eu
exec ray start --block --address=ray-head:6379 "$@"
