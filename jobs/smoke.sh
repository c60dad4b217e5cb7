#!/bin/sh
# smoke: the whole pipeline, small, on the embedded demo corpus (validate, generate, train,
# merge, evaluate); no dataset download.
set -eu
export PIPESQL_PIPELINE_OUT="${PIPESQL_PIPELINE_OUT:-${OUTPUT_ROOT:-runs}/smoke}"
exec pipesql pipeline "$@"
