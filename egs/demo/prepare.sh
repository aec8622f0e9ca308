#!/usr/bin/env bash
# Corpus contract for run.sh stage 0: prepare.sh --out DIR --nj N [--force] [corpus options]
# makes DIR/wav8k/min/{tr,cv,tt}/{mix,s1,s2}.json. Here: the built-in eSpeak demo corpus.
# Corpus options: see `python -m egs.demo.prepare --help` (speaker counts, sizes, seed, rates).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$root/tools/log.sh"
args=()
out=
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=true; shift ;;
    --out) out=$2; args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || die "egs/demo/prepare.sh: --out DIR is required"
if [ "${force:-false}" = true ] && [ -d "$out" ]; then
  log "--force: removing $out to rebuild the demo corpus"
  rm -rf "$out"
fi
cd "$root"
PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} exec "$root/.venv/bin/python" -m egs.demo.prepare "${args[@]}"
