#!/bin/sh
# validate: decompile the benchmark's gold SQL to pipe SQL and prove each pair by execution
# -> golden_pairs.jsonl (the train split by default: it is what generate turns into training data).
set -eu
benchmark="${PIPESQL_VALIDATE_BENCHMARK:-${BENCHMARK:-spider}}"
export PIPESQL_VALIDATE_BENCHMARK="$benchmark"
export PIPESQL_VALIDATE_DATA_DIR="${PIPESQL_VALIDATE_DATA_DIR:-${DATA_ROOT:-data}/$benchmark}"
export PIPESQL_VALIDATE_SPLIT="${PIPESQL_VALIDATE_SPLIT:-train}"
export PIPESQL_VALIDATE_OUT="${PIPESQL_VALIDATE_OUT:-${OUTPUT_ROOT:-runs}/validate}"
. "$(dirname "$0")/lib/ray.sh"
join_ray_cluster
exec pipesql validate "$@"
