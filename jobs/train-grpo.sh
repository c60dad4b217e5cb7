#!/bin/sh
# train-grpo: GRPO after SFT on the golden pairs' questions, rewarded by execution match
# (docs/rl.md). Starts from the SFT adapter of run $MODEL_RUN (1.5b or 7b), with that run's preset;
# the GRPO adapter lands in $OUTPUT_ROOT/grpo-$MODEL_RUN/final (merge it with
# `merge --output-dir $OUTPUT_ROOT/grpo-$MODEL_RUN`).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="${OUTPUT_ROOT:-runs}"
run="${MODEL_RUN:-1.5b}"
# The run's shipped recipe (recipes/grpo-1.5b.yaml), unless PIPESQL_RL_CONFIG names another.
if [ -z "${PIPESQL_RL_CONFIG:-}" ] && [ -f "$root/recipes/grpo-$run.yaml" ]; then
    export PIPESQL_RL_CONFIG="$root/recipes/grpo-$run.yaml"
fi
benchmark="${PIPESQL_RL_BENCHMARK:-${BENCHMARK:-spider}}"
export PIPESQL_RL_BENCHMARK="$benchmark"
export PIPESQL_RL_DATA_DIR="${PIPESQL_RL_DATA_DIR:-${DATA_ROOT:-data}/$benchmark}"
export PIPESQL_RL_GOLDEN_PAIRS="${PIPESQL_RL_GOLDEN_PAIRS:-$out/validate/golden_pairs.jsonl}"
export PIPESQL_RL_ADAPTER="${PIPESQL_RL_ADAPTER:-$out/train-$run/final}"
# Preset and run folder are flags, as for train-1.5b / train-7b.
exec pipesql rl --preset "$run" --output-dir "$out/grpo-$run" "$@"
