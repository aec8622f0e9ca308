#!/usr/bin/env bash
# Run the test suite (sets up .venv first when it is missing). Extra arguments go to pytest:
#   ./test.sh                 # everything
#   ./test.sh -k model -x     # a subset
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
. tools/log.sh
tools/setup_env.sh
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
exec .venv/bin/python -m pytest "$@"
