#!/bin/sh
# merge: fold the final LoRA adapter of run $MODEL_RUN (1.5b or 7b) into its base model
# -> $OUTPUT_ROOT/train-$MODEL_RUN/merged.
set -eu
export PIPESQL_MERGE_OUTPUT_DIR="${PIPESQL_MERGE_OUTPUT_DIR:-${OUTPUT_ROOT:-runs}/train-${MODEL_RUN:-1.5b}}"
exec pipesql merge "$@"
