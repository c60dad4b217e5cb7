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
# One folder per mode, so a one-shot and an agent run of the same model do not overwrite each
# other; the mode may come from the environment or from the arguments.
mode="${PIPESQL_EVALUATE_MODE:-oneshot}"
previous=""
for arg in "$@"; do
    [ "$previous" = "--mode" ] && mode="$arg"
    case "$arg" in --mode=*) mode=$(echo "$arg" | cut -d= -f2-) ;; esac
    previous="$arg"
done
export PIPESQL_EVALUATE_OUT="${PIPESQL_EVALUATE_OUT:-$out/evaluate-$run-$mode}"
exec pipesql evaluate "$@"
