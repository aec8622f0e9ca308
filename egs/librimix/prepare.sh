#!/usr/bin/env bash
# Corpus contract for run.sh stage 0: prepare.sh --out DIR --nj N [--force] [corpus options]
# makes DIR/wav8k/min/{tr,cv,tt}/{mix,s1,s2}.json. Here: an existing LibriMix folder (Libri2Mix or
# Libri3Mix, made with https://github.com/JorisCos/LibriMix), validated and indexed; no audio is copied
# (tr = train-360 or --train-set train-100, cv = dev, tt = test). No WSJ0 licence needed.
#
#   ./run.sh --corpus librimix --prep-opts "--librimix /corpora/Libri2Mix"
#   ./run.sh --corpus librimix --conf conf/paper_best_16k.yml --prep-opts "--librimix /corpora/Libri2Mix --sample-rates 16000"
#   LIBRIMIX=/corpora/Libri2Mix ./run.sh --corpus librimix        # same as --librimix
#
# Corpus options: see `python -m egs.librimix.prepare --help` (--n-src, --sample-rates, --modes,
# --train-set, --mix-type, --allow-partial).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$root/tools/log.sh"
args=()
out=
have_source=false
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a value"; out=$2; args+=("$1" "$2"); shift 2 ;;
    --librimix) have_source=true; args+=("$1"); shift ;;
    -h|--help) PYTHONPATH=$root exec "$root/.venv/bin/python" -m egs.librimix.prepare --help ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || die "egs/librimix/prepare.sh: --out DIR is required"
if ! $have_source; then
  [ -n "${LIBRIMIX:-}" ] || die "librimix needs an existing LibriMix folder: pass --prep-opts \"--librimix /path/to/Libri2Mix\" to run.sh, or set LIBRIMIX (generate it with https://github.com/JorisCos/LibriMix)"
  args+=(--librimix "$LIBRIMIX")
fi
log "indexing LibriMix into $out"
PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} exec "$root/.venv/bin/python" -m egs.librimix.prepare "${args[@]}"
