#!/bin/sh
# evaluate: execution accuracy of the merged model of run $MODEL_RUN (1.5b or 7b) on the
# benchmark's dev split.
set -eu
out="${OUTPUT_ROOT:-runs}"
run="${MODEL_RUN:-1.5b}"
benchmark="${PIPESQL_EVALUATE_BENCHMARK:-${BENCHMARK:-spider}}"
export PIPESQL_EVALUATE_BENCHMARK="$benchmark"
export PIPESQL_EVALUATE_DATA_DIR="${PIPESQL_EVALUATE_DATA_DIR:-${DATA_ROOT:-data}/$benchmark}"
export PIPESQL_EVALUATE_MODEL="${PIPESQL_EVALUATE_MODEL:-$out/train-$run/merged}"
export PIPESQL_EVALUATE_OUT="${PIPESQL_EVALUATE_OUT:-$out/evaluate-$run}"
exec pipesql evaluate "$@"
