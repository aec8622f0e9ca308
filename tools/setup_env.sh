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
# --no-compile, then compileall on every core: pip byte-compiles the ~20k files of torch
# one by one (measured here: 70 s -> 39 s + 12 s on 2 cores). The .pyc files still matter:
# without them every python process of run.sh pays ~4 s more to import torch when
# PYTHONDONTWRITEBYTECODE is set.
"$venv/bin/python" -m pip install --quiet --no-compile -r "$root/requirements.txt" \
  || die "pip install -r requirements.txt failed (see above); fix it and re-run, the venv is reused"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# Some packages ship files that do not compile on purpose (test data, Python 2 examples),
# so compileall's status is not an error here: a missing .pyc only costs import time.
"$venv/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
echo "$want" > "$stamp"
log "environment ready in $((SECONDS - start)) s"
