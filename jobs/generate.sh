#!/bin/sh
# generate: the golden pairs written by validate -> chat training data (train.jsonl, dev.jsonl).
set -eu
out="${OUTPUT_ROOT:-runs}"
benchmark="${PIPESQL_GENERATE_BENCHMARK:-${BENCHMARK:-spider}}"
export PIPESQL_GENERATE_BENCHMARK="$benchmark"
export PIPESQL_GENERATE_DATA_DIR="${PIPESQL_GENERATE_DATA_DIR:-${DATA_ROOT:-data}/$benchmark}"
export PIPESQL_GENERATE_GOLDEN_PAIRS="${PIPESQL_GENERATE_GOLDEN_PAIRS:-$out/validate/golden_pairs.jsonl}"
export PIPESQL_GENERATE_OUTPUT_DIR="${PIPESQL_GENERATE_OUTPUT_DIR:-$out/generate}"
. "$(dirname "$0")/lib/ray.sh"
join_ray_cluster
exec pipesql generate "$@"
