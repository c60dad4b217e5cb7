#!/bin/sh
# train-1.5b: LoRA fine-tune of Qwen2.5-Coder-1.5B-Instruct,
# preset 1.5b, on the data written by generate. Its adapter lands in $OUTPUT_ROOT/train-1.5b/final.
set -eu
out="${OUTPUT_ROOT:-runs}"
export PIPESQL_TRAIN_TRAIN_DATA="${PIPESQL_TRAIN_TRAIN_DATA:-$out/generate/train.jsonl}"
export PIPESQL_TRAIN_DEV_DATA="${PIPESQL_TRAIN_DEV_DATA:-$out/generate/dev.jsonl}"
# Preset and run folder are flags: two services share the train stage's variables.
exec pipesql train --preset 1.5b --output-dir "$out/train-1.5b" "$@"
