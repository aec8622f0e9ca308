#!/usr/bin/env bash
# Corpus contract for run.sh stage 0: prepare.sh --out DIR --nj N [--force] [corpus options]
# makes DIR/wav8k/min/{tr,cv,tt}/{mix,s1,s2}.json. Here: wsj0-2mix (or wsj0-3mix with --n-src 3),
# built from WSJ0 exactly like MERL's create_wav_2speakers.m, or indexed from an existing copy.
#
#   ./run.sh --corpus wsj0-2mix --prep-opts "--wsj0 /corpora/LDC93S6A"
#   ./run.sh --corpus wsj0-2mix --prep-opts "--wsj0-2mix /corpora/wsj0-mix/2speakers"
#   WSJ0=/corpora/LDC93S6A ./run.sh --corpus wsj0-2mix        # same as --wsj0 (or WSJ0_2MIX=...)
#
# Corpus options: see `egs/wsj0-2mix/prepare.py --help` (--n-src, --mix-lists, --sample-rates,
# --modes, --wav-cache, --sph2pipe, --sph2pipe-src, --allow-partial, ...).
# --force rebuilds the mixtures (converted WSJ0 sources are kept); with --wsj0-2mix it only
# rewrites this script's links and metadata, never the existing corpus.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$root/tools/log.sh"
args=()
out=
have_source=false
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ $# -ge 2 ] || die "--out needs a value"; out=$2; args+=("$1" "$2"); shift 2 ;;
    --wsj0|--wsj0-2mix|--wsj0-mix) have_source=true; args+=("$1"); shift ;;
    -h|--help) exec "$root/.venv/bin/python" "$root/egs/wsj0-2mix/prepare.py" --help ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || die "egs/wsj0-2mix/prepare.sh: --out DIR is required"
if ! $have_source; then
  if [ -n "${WSJ0_2MIX:-}" ]; then
    args+=(--wsj0-2mix "$WSJ0_2MIX")
  elif [ -n "${WSJ0:-}" ]; then
    args+=(--wsj0 "$WSJ0")
  else
    die "wsj0-2mix needs the WSJ0 corpus: pass --prep-opts \"--wsj0 /path/to/wsj0\" to run.sh (LDC discs or a wav copy), or --prep-opts \"--wsj0-2mix /path/to/wsj0-mix/2speakers\" for an existing wsj0-2mix; or set WSJ0 / WSJ0_2MIX"
  fi
fi
log "preparing wsj0-mix in $out"
exec "$root/.venv/bin/python" "$root/egs/wsj0-2mix/prepare.py" "${args[@]}"
