#!/bin/sh
# train-7b: QLoRA fine-tune of Qwen2.5-Coder-7B-Instruct (4-bit NF4 base),
# preset 7b, on the data written by generate. Its adapter lands in $OUTPUT_ROOT/train-7b/final.
set -eu
out="${OUTPUT_ROOT:-runs}"
export PIPESQL_TRAIN_TRAIN_DATA="${PIPESQL_TRAIN_TRAIN_DATA:-$out/generate/train.jsonl}"
export PIPESQL_TRAIN_DEV_DATA="${PIPESQL_TRAIN_DEV_DATA:-$out/generate/dev.jsonl}"
# Preset and run folder are flags: two services share the train stage's variables.
exec pipesql train --preset 7b --output-dir "$out/train-7b" "$@"
