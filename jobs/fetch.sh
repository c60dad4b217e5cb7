#!/bin/sh
# fetch: datasets into $DATA_ROOT/<target>, models into the Hugging Face / pipesql caches.
#   jobs/fetch.sh spider [--from PATH]  |  jobs/fetch.sh bird --split dev  |  jobs/fetch.sh model NAME
set -eu
export PIPESQL_FETCH_DATA_ROOT="${PIPESQL_FETCH_DATA_ROOT:-${DATA_ROOT:-data}}"
exec pipesql fetch "$@"
