#!/bin/sh
# train-1.5b: LoRA fine-tune of Qwen2.5-Coder-1.5B-Instruct (recipes/qwen2.5-coder-1.5b-lora.yaml
# unless PIPESQL_TRAIN_CONFIG names another recipe), on the data written by generate, one DDP
# process per reserved GPU. Its adapter lands in $OUTPUT_ROOT/train-1.5b/final.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/jobs/lib/accelerate.sh"
out="${OUTPUT_ROOT:-runs}"
export PIPESQL_TRAIN_CONFIG="${PIPESQL_TRAIN_CONFIG:-$root/recipes/qwen2.5-coder-1.5b-lora.yaml}"
export PIPESQL_TRAIN_TRAIN_DATA="${PIPESQL_TRAIN_TRAIN_DATA:-$out/generate/train.jsonl}"
export PIPESQL_TRAIN_DEV_DATA="${PIPESQL_TRAIN_DEV_DATA:-$out/generate/dev.jsonl}"
# The run folder is a flag: two services share the train stage's variables.
launch_train "$root/pipesql/train/accelerate/ddp.yaml" --output-dir "$out/train-1.5b" "$@"
