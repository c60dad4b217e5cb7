#!/bin/sh
# train-7b: QLoRA fine-tune of Qwen2.5-Coder-7B-Instruct (4-bit NF4 base;
# recipes/qwen2.5-coder-7b-qlora.yaml unless PIPESQL_TRAIN_CONFIG names another recipe), on the
# data written by generate, FSDP over the reserved GPUs. Its adapter lands in
# $OUTPUT_ROOT/train-7b/final.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/jobs/lib/accelerate.sh"
out="${OUTPUT_ROOT:-runs}"
export PIPESQL_TRAIN_CONFIG="${PIPESQL_TRAIN_CONFIG:-$root/recipes/qwen2.5-coder-7b-qlora.yaml}"
export PIPESQL_TRAIN_TRAIN_DATA="${PIPESQL_TRAIN_TRAIN_DATA:-$out/generate/train.jsonl}"
export PIPESQL_TRAIN_DEV_DATA="${PIPESQL_TRAIN_DEV_DATA:-$out/generate/dev.jsonl}"
# The run folder is a flag: two services share the train stage's variables.
launch_train "$root/pipesql/train/accelerate/fsdp_qlora.yaml" --output-dir "$out/train-7b" "$@"
