#!/usr/bin/env bash
# Encoder/decoder ablation study (paper Table III): every config trained and evaluated on the
# same test set, the ideal masks on that test set, and one report with the paper's numbers.
#
#   ./run_ablation.sh                                       # demo corpus, conf/ablation_demo (CPU scale)
#   ./run_ablation.sh --corpus wsj0-2mix --jobs 4           # paper scale, 4 configs at once (GPUs 0-3)
#   ./run_ablation.sh --corpus wsj0-2mix --job-index $SLURM_ARRAY_TASK_ID --n-jobs 7   # a job array
#   ./run_ablation.sh --corpus wsj0-2mix --stage 3          # then: oracle masks + report
#
# Stages (finished work is skipped: run.sh and local.oracle keep .done markers):
#   0  data preparation   ./run.sh --stage 0 (once, for all configs)
#   1  training           ./run.sh --stage 1 for each config -> <exp-root>/<config basename>/
#   2  evaluation         ./run.sh --stage 2 for each config -> <exp-root>/<name>/eval/metrics.json
#   3  ideal masks        local.oracle (IBM, IRM, WFM)     -> <exp-root>/oracle/<mask>/eval/
#   4  report             local.report                     -> <exp-root>/ablation_report/ablation.{md,csv}, *.png
#
# Files named base.yml hold a folder's shared settings and are not rows. A config that
# fails is reported at the end; the other configs, the oracle and the report still run.
# With --n-jobs > 1 (one share of a job array) only stages 1-2 run: run stage 0 before
# the array and stages 3-4 after it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
. tools/log.sh

# ---- options (defaults) -------------------------------------------------------
confs=              # configs: files, globs or folders (quoted); default: conf/ablation_demo for demo, else conf/ablation
corpus=demo         # corpus folder under egs/ (demo, wsj0-2mix)
stage=0             # first stage to run
stop_stage=100      # last stage to run
exp_root=           # one experiment folder per config under it; default: exp/<corpus>
data_dir=           # prepared corpus folder; default: data/<corpus>
jobs=1              # configs trained at the same time on this machine
gpus=               # GPU ids for the --jobs workers, e.g. "0 1 2 3" (worker k gets the k-th); default: 0 1 ...
job_index=0         # this job's share of the configs: those with index % n_jobs == job_index
n_jobs=1            # number of jobs the configs are split across (e.g. a SLURM job array)
run_opts=           # extra options passed verbatim to every ./run.sh call (e.g. "--devices 1")
run_args=()         # run.sh options given here one by one (--set, --devices, ...): passed on intact
force=false         # redo finished stages

corpora() {  # the corpus folders: those with a prepare.sh
  local f
  for f in egs/*/prepare.sh; do basename "$(dirname "$f")"; done | tr '\n' ' '
}

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options (default in brackets):
  --confs "F ..."      config files, globs or folders [conf/ablation_demo for demo, else conf/ablation]
  --corpus NAME        corpus under egs/: $(corpora)[$corpus]
  --stage N            first stage to run [$stage]
  --stop-stage M       last stage to run [$stop_stage]
  --exp-root DIR       experiments go to DIR/<config basename> [exp/<corpus>]
  --data-dir DIR       prepared corpus folder [data/<corpus>]
  --jobs N             configs trained at once on this machine, one GPU each [$jobs]
  --gpus "I ..."       GPU ids for the --jobs workers [0 1 ... N-1]
  --job-index I        with --n-jobs: which share of the configs this job runs [$job_index]
  --n-jobs N           split the configs across N separate jobs [$n_jobs]
  --run-opts "..."     extra options for every ./run.sh call, e.g. "--devices 1 --set training.epochs=5"
  --set KEY=VALUE, --devices D, --precision P, --strategy S, --num-nodes N, --num-workers N, --nj N, --prep-opts "...", --wsj0 DIR, --wsj0-2mix DIR
                       as in ./run.sh, passed to every ./run.sh call (paths with spaces stay whole)
  --force              redo stages that are already done
  -h, --help           this help
EOF
}

need_value() {  # option, remaining-arg-count
  [ "$2" -ge 2 ] || { usage >&2; die "option $1 needs a value"; }
}

cmdline=$(printf '%q ' "$0" "$@")
while [ $# -gt 0 ]; do
  case $1 in
    --confs) need_value "$1" $#; confs=$2; shift 2 ;;
    --corpus) need_value "$1" $#; corpus=$2; shift 2 ;;
    --stage) need_value "$1" $#; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) need_value "$1" $#; stop_stage=$2; shift 2 ;;
    --exp-root) need_value "$1" $#; exp_root=$2; shift 2 ;;
    --data-dir) need_value "$1" $#; data_dir=$2; shift 2 ;;
    --jobs) need_value "$1" $#; jobs=$2; shift 2 ;;
    --gpus) need_value "$1" $#; gpus=$2; shift 2 ;;
    --job-index) need_value "$1" $#; job_index=$2; shift 2 ;;
    --n-jobs) need_value "$1" $#; n_jobs=$2; shift 2 ;;
    --run-opts) need_value "$1" $#; run_opts=$2; shift 2 ;;
    --set|--devices|--precision|--strategy|--num-nodes|--num-workers|--nj|--prep-opts|--wsj0|--wsj0-2mix)
      need_value "$1" $#; run_args+=("$1" "$2"); shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1' (see --help above)" ;;
  esac
done

for name in stage stop_stage jobs job_index n_jobs; do
  [[ ${!name} =~ ^[0-9]+$ ]] || die "--${name//_/-} must be a non-negative integer, got '${!name}'"
done
[ "$jobs" -ge 1 ] || die "--jobs must be at least 1"
[ "$n_jobs" -ge 1 ] || die "--n-jobs must be at least 1"
[ "$job_index" -lt "$n_jobs" ] || die "--job-index $job_index must be below --n-jobs $n_jobs"
[ -d "egs/$corpus" ] || die "--corpus $corpus: no folder egs/$corpus (choose one of: $(corpora))"
if [ -z "$confs" ]; then
  if [ "$corpus" = demo ]; then confs=conf/ablation_demo; else confs=conf/ablation; fi
fi
read -r -a gpu_ids <<< "$gpus"
[ ${#gpu_ids[@]} -eq 0 ] || [ ${#gpu_ids[@]} -ge "$jobs" ] \
  || die "--gpus '$gpus' names fewer GPUs than --jobs $jobs"
exp_root=${exp_root:-exp/$corpus}
data_dir=${data_dir:-data/$corpus}
force_opt=(); $force && force_opt=(--force)

log "$cmdline"
start_time=$SECONDS
tools/setup_env.sh
python=$root/.venv/bin/python
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}

# ---- the rows: files, globs (expanded here on purpose) and folders ------------
expanded=()
for item in $confs; do
  if [ -d "$item" ]; then expanded+=("$item"/*.yml); else expanded+=("$item"); fi
done
[ ${#expanded[@]} -gt 0 ] || die "--confs '$confs' selects no file"
# local.report decides what a row is (base.yml is not) and refuses two rows with one name.
list=$("$python" -m local.report --list --confs "${expanded[@]}") || die "bad --confs '$confs' (see above)"
mapfile -t rows <<< "$list"
mine=()
for i in "${!rows[@]}"; do
  if [ $((i % n_jobs)) -eq "$job_index" ]; then mine+=("${rows[$i]}"); fi
done
log "corpus=$corpus exp_root=$exp_root stages $stage..$stop_stage; ${#rows[@]} configs:" \
  "$(for c in "${rows[@]}"; do basename "${c%.*}"; done | tr '\n' ' ')"
if [ "$n_jobs" -gt 1 ]; then
  log "job $job_index of $n_jobs: ${#mine[@]} configs: ${mine[*]:-none}"
fi

shared_stages=true
if [ "$n_jobs" -gt 1 ]; then
  shared_stages=false
  log "--n-jobs $n_jobs: stages 0, 3 and 4 are left to separate calls (--stop-stage 0 before, --stage 3 after)"
fi

# shellcheck disable=SC2086  # run_opts is a list of options by design
run_one() {  # config, first stage, last stage
  local conf=$1 name
  name=$(basename "${conf%.*}")
  ./run.sh --stage "$2" --stop-stage "$3" --corpus "$corpus" --conf "$conf" --data-dir "$data_dir" \
    --exp-dir "$exp_root/$name" "${force_opt[@]}" "${run_args[@]}" $run_opts
}

if $shared_stages && [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data preparation ($corpus -> $data_dir)"
  run_one "${rows[0]}" 0 0 || die "data preparation failed"
fi

failed=()
first=$(( stage > 1 ? stage : 1 ))
last=$(( stop_stage < 2 ? stop_stage : 2 ))
if [ "$first" -le "$last" ] && [ ${#mine[@]} -gt 0 ]; then
  log "Stages $first-$last: training and evaluation of ${#mine[@]} configs, $jobs at a time"
  if [ "$jobs" -eq 1 ]; then
    for conf in "${mine[@]}"; do
      log "---- $conf"
      run_one "$conf" "$first" "$last" || { failed+=("$conf"); log "$conf failed, going on with the others"; }
    done
  else
    status_dir=$(mktemp -d)
    trap 'rm -rf "$status_dir"' EXIT
    mkdir -p "$exp_root/ablation_logs"
    pids=()
    for ((k = 0; k < jobs; k++)); do
      share=()
      for i in "${!mine[@]}"; do
        if [ $((i % jobs)) -eq "$k" ]; then share+=("${mine[$i]}"); fi
      done
      [ ${#share[@]} -gt 0 ] || continue
      gpu=${gpu_ids[$k]:-$k}
      worker_log=$exp_root/ablation_logs/worker$k.log
      log "worker $k (CUDA_VISIBLE_DEVICES=$gpu, log $worker_log): ${share[*]}"
      (
        export CUDA_VISIBLE_DEVICES=$gpu
        for conf in "${share[@]}"; do
          log "---- $conf"
          run_one "$conf" "$first" "$last" || echo "$conf" >> "$status_dir/failed"
        done
      ) > "$worker_log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    if [ -f "$status_dir/failed" ]; then mapfile -t failed < "$status_dir/failed"; fi
  fi
fi

if $shared_stages && [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: ideal masks IBM, IRM, WFM on the test set ($exp_root/oracle)"
  mkdir -p "$exp_root/oracle"
  "$python" -m local.oracle --data-dir "$data_dir" --conf "${rows[0]}" --out-dir "$exp_root/oracle" \
    "${force_opt[@]}" 2>&1 | tee "$exp_root/oracle/oracle.log" \
    || die "ideal-mask evaluation failed (log: $exp_root/oracle/oracle.log)"
fi

if $shared_stages && [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: report ($exp_root/ablation_report)"
  "$python" -m local.report --exp-root "$exp_root" --confs "${rows[@]}" --oracle-dir "$exp_root/oracle" \
    --out "$exp_root/ablation_report" || die "report failed"
fi

if [ ${#failed[@]} -gt 0 ]; then
  die "${#failed[@]} configs failed: ${failed[*]} (logs: $exp_root/<name>/logs/, and $exp_root/ablation_logs/ with --jobs)"
fi
log "done in $((SECONDS - start_time)) s"
