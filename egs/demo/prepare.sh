#!/usr/bin/env bash
# Corpus contract for run.sh stage 0: prepare.sh --out DIR --nj N [--force] [corpus options]
# makes DIR/wav8k/min/{tr,cv,tt}/{mix,s1,s2}.json. Here: the built-in eSpeak demo corpus.
# Corpus options: see `python -m egs.demo.prepare --help` (speaker counts, sizes, seed, rates).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$root/tools/log.sh"
# --force goes to the Python side, which deletes only what it made (never an arbitrary --out).
args=()
out=
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a value"; out=$2; args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || die "egs/demo/prepare.sh: --out DIR is required"
cd "$root"
PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} exec "$root/.venv/bin/python" -m egs.demo.prepare "${args[@]}"
