#!/usr/bin/env bash
# Create (or update) the recipe's virtual environment in .venv from requirements.txt.
#
# Idempotent: the environment is rebuilt only when it is missing or when
# requirements.txt changed since it was made (its hash is stored in the venv).
# Override the interpreter with PYTHON=/path/to/python3.11, the venv with VENV=.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/tools/log.sh"

venv=${VENV:-$root/.venv}
python=${PYTHON:-python3}
stamp=$venv/.requirements.sha256
want=$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v "$python" >/dev/null || die "no '$python' on PATH: install Python 3.11 or set PYTHON=/path/to/python3.11"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case $version in
  3.10|3.11|3.12) ;;
  *) die "$python is Python $version; the pinned packages need Python 3.10-3.12 (set PYTHON=...)" ;;
esac
log "setting up $venv with $python ($version) from requirements.txt (several GB: torch ships CUDA)"
start=$SECONDS
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" \
  || die "pip install -r requirements.txt failed (see above); fix it and re-run, the venv is reused"
echo "$want" > "$stamp"
log "environment ready in $((SECONDS - start)) s"
