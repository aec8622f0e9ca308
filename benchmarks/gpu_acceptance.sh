#!/usr/bin/env bash
# GPU acceptance: on a machine with one NVIDIA GPU and nothing but the checkout, set up the
# environment, run the GPU tests (pytest -m gpu), then print (and write) one table: paper_best
# training throughput and peak memory for stock asteroid ConvTasNet and the recipe in fp32,
# bf16-mixed and compiled, and evaluation speed (benchmarks/gpu_acceptance.py).
#
#   benchmarks/gpu_acceptance.sh                          # the acceptance run, table in exp/gpu_acceptance.md
#   benchmarks/gpu_acceptance.sh --device cpu --quick     # CPU dry run (CI runs it): no GPU tests, tiny sizes
#
# Other options go to benchmarks/gpu_acceptance.py (see its --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. tools/log.sh
start=$SECONDS
tools/setup_env.sh
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
quick=false
for arg in "$@"; do [ "$arg" = --quick ] && quick=true; done
if ! $quick; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  log "GPU tests (pytest -m gpu)"
  .venv/bin/python -m pytest -q -m gpu -p no:cacheprovider || die "GPU tests failed (see above)"
fi
log "benchmarks"
.venv/bin/python benchmarks/gpu_acceptance.py "$@"
log "acceptance done in $((SECONDS - start)) s"
