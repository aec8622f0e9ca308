#!/usr/bin/env bash
# Encoder/decoder ablation study (paper Table III): every config trained with one or more
# seeds and evaluated on the same test set, the ideal masks on that test set, and one report
# with the paper's numbers and a verdict per pair of rows.
#
#   ./run_ablation.sh --seeds 3 --jobs 2 --paper-rows       # the demo study: 5 rows x seeds 0 1 2 (CPU scale)
#   ./run_ablation.sh --corpus wsj0-2mix --seeds 3 --jobs 4 # paper scale, 4 runs at once (GPUs 0-3)
#   ./run_ablation.sh --corpus wsj0-2mix --seeds 3 --job-index $SLURM_ARRAY_TASK_ID --n-jobs 21  # a job array
#   ./run_ablation.sh --corpus wsj0-2mix --seeds 3 --stage 3 # then: oracle masks + report
#
# Each (row, seed) is one experiment, <exp-root>/<config basename>/seed<k>, trained with
# --set training.seed=<k> (initialisation and dynamic-mixing stream); --seeds 3 means seeds
# 0 1 2, --seeds "0 5 7" those seeds, --seeds 1 (the default) seed 0 alone: always seed<k>/,
# one layout whatever the number of seeds. Every run is scored on the same test set.
# Stages (finished work is skipped: run.sh and local.oracle keep .done markers, and an
# interrupted training resumes from its last checkpoint: re-run the same command):
#   0  data preparation   ./run.sh --stage 0 (once, for all runs)
#   1  training           ./run.sh --stage 1 per (row, seed) -> <exp-root>/<name>/seed<k>/
#   2  evaluation         ./run.sh --stage 2 per (row, seed) -> <exp-root>/<name>/seed<k>/eval/metrics.{json,csv}
#   3  ideal masks        local.oracle (IBM, IRM, WFM)     -> <exp-root>/oracle/<mask>/eval/
#   4  report             local.report                     -> <exp-root>/ablation_report/ablation.{md,csv}, *.png
#
# Files named base.yml hold a folder's shared settings and are not rows. A run that
# fails is reported at the end; the other runs, the oracle and the report still run.
# With --n-jobs > 1 (one share of a job array) only stages 1-2 run: run stage 0 before
# the array and stages 3-4 after it. The (row, seed) runs are ordered seed by seed
# (every row's seed 0 first), so a study stopped early has whole seeds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
. tools/log.sh

# ---- options (defaults) -------------------------------------------------------
confs=              # configs: files, globs or folders (quoted); default: conf/ablation_demo for demo, else conf/ablation
paper_rows=false    # keep only the rows the paper has numbers for (Table III: 5 of the 7 demo rows)
seeds_opt=1         # --seeds: a count N (seeds 0..N-1) or a list "0 5 7" (a single seed k: "k,")
corpus=demo         # corpus folder under egs/ (demo, wsj0-2mix)
stage=0             # first stage to run
stop_stage=100      # last stage to run
exp_root=           # one experiment folder per config under it; default: exp/<corpus>
data_dir=           # prepared corpus folder; default: data/<corpus>
jobs=1              # (row, seed) runs trained at the same time on this machine
gpus=               # GPU ids for the --jobs workers, e.g. "0 1 2 3" (worker k gets the k-th); default: 0 1 ...
job_index=0         # this job's share of the runs: those with index % n_jobs == job_index
n_jobs=1            # number of jobs the runs are split across (e.g. a SLURM job array)
run_opts=           # extra options passed verbatim to every ./run.sh call (e.g. "--devices 1")
run_args=()         # run.sh options given here one by one (--set, --devices, ...): passed on intact
force=false         # redo finished stages

corpora() {  # the corpus folders: those with a prepare.sh
  local f
  for f in egs/*/prepare.sh; do basename "$(dirname "$f")"; done | tr '\n' ' '
}

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options (default in brackets):
  --confs "F ..."      config files, globs or folders [conf/ablation_demo for demo, else conf/ablation]
  --paper-rows         only the rows the paper has numbers for (the demo folder: its 5 Table III rows)
  --seeds N|"K ..."    seeds per row: a count N (seeds 0..N-1) or a list such as "0 5 7"
                       (one seed k other than 0: "k,") [$seeds_opt]
  --corpus NAME        corpus under egs/: $(corpora)[$corpus]
  --stage N            first stage to run [$stage]
  --stop-stage M       last stage to run [$stop_stage]
  --exp-root DIR       experiments go to DIR/<config basename>/seed<k> [exp/<corpus>]
  --data-dir DIR       prepared corpus folder [data/<corpus>]
  --jobs N             (row, seed) runs trained at once on this machine, one GPU each; on a CPU
                       each gets cores/N threads unless OMP_NUM_THREADS is set [$jobs]
  --gpus "I ..."       GPU ids for the --jobs workers [0 1 ... N-1]
  --job-index I        with --n-jobs: which share of the runs this job runs [$job_index]
  --n-jobs N           split the (row, seed) runs across N separate jobs [$n_jobs]
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
    --paper-rows) paper_rows=true; shift ;;
    --seeds) need_value "$1" $#; seeds_opt=$2; shift 2 ;;
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
# --seeds: a count ("3": 0 1 2) or a list of seeds separated by spaces or commas ("0 5 7", "7,")
if [[ $seeds_opt =~ ^[[:space:]]*[0-9]+[[:space:]]*$ ]]; then
  n_seeds=$((10#${seeds_opt//[[:space:]]/}))
  [ "$n_seeds" -ge 1 ] || die "--seeds $seeds_opt: at least one seed"
  seeds=(); for ((k = 0; k < n_seeds; k++)); do seeds+=("$k"); done
else
  read -r -a seeds <<< "${seeds_opt//,/ }"
  [ ${#seeds[@]} -gt 0 ] || die "--seeds '$seeds_opt': no seed given"
  declare -A seen_seed=()
  for k in "${seeds[@]}"; do
    [[ $k =~ ^[0-9]+$ ]] || die "--seeds '$seeds_opt': '$k' is not a non-negative integer"
    [ -z "${seen_seed[$((10#$k))]:-}" ] || die "--seeds '$seeds_opt': seed $k is given twice"
    seen_seed[$((10#$k))]=1
  done
  for i in "${!seeds[@]}"; do seeds[$i]=$((10#${seeds[$i]})); done
fi
# The seed of every run is set here, one per folder: a --set training.seed would give every
# seed<k> folder the same seed.
for ((i = 0; i < ${#run_args[@]}; i++)); do
  if [ "${run_args[$i]}" = --set ] && [[ ${run_args[$((i + 1))]} == training.seed=* ]]; then
    die "--set ${run_args[$((i + 1))]}: the seeds of the study are set with --seeds (e.g. --seeds \"${run_args[$((i + 1))]#training.seed=}\")"
  fi
done
if [[ " $run_opts " == *training.seed=* ]]; then
  die "--run-opts '$run_opts': set the seeds of the study with --seeds, not training.seed"
fi
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
list_opts=(); $paper_rows && list_opts=(--paper-rows)
list=$("$python" -m local.report --list --confs "${expanded[@]}" "${list_opts[@]}") \
  || die "bad --confs '$confs' (see above)"
mapfile -t rows <<< "$list"
# The job units: one per (row, seed), seed by seed. A unit is "seed<TAB>config".
units=()
for k in "${seeds[@]}"; do
  for conf in "${rows[@]}"; do units+=("$k"$'\t'"$conf"); done
done
mine=()
for i in "${!units[@]}"; do
  if [ $((i % n_jobs)) -eq "$job_index" ]; then mine+=("${units[$i]}"); fi
done
unit_name() {  # unit -> <name>/seed<k>
  local k=${1%%$'\t'*} conf=${1#*$'\t'}
  printf '%s/seed%s' "$(basename "${conf%.*}")" "$k"
}
row_names=$(for c in "${rows[@]}"; do basename "${c%.*}"; done | tr '\n' ' ')
log "corpus=$corpus exp_root=$exp_root stages $stage..$stop_stage; ${#rows[@]} configs: ${row_names% }" \
  "x ${#seeds[@]} seeds (${seeds[*]}): ${#units[@]} runs"
if [ "$n_jobs" -gt 1 ]; then
  log "job $job_index of $n_jobs: ${#mine[@]} runs: $(for u in "${mine[@]}"; do unit_name "$u"; printf ' '; done)"
fi
for conf in "${rows[@]}"; do
  row_dir=$exp_root/$(basename "${conf%.*}")
  if [ -f "$row_dir/conf.yml" ]; then
    log "note: $row_dir holds a run of the single-run layout (before --seeds); it is left as it is," \
      "the runs of this study go to $row_dir/seed<k>/ (local.report reads either)"
  fi
done

shared_stages=true
if [ "$n_jobs" -gt 1 ]; then
  shared_stages=false
  log "--n-jobs $n_jobs: stages 0, 3 and 4 are left to separate calls (--stop-stage 0 before, --stage 3 after)"
fi

# shellcheck disable=SC2086  # run_opts is a list of options by design
run_one() {  # unit (seed<TAB>config), first stage, last stage
  local k=${1%%$'\t'*} conf=${1#*$'\t'} name
  name=$(basename "${conf%.*}")
  ./run.sh --stage "$2" --stop-stage "$3" --corpus "$corpus" --conf "$conf" --data-dir "$data_dir" \
    --exp-dir "$exp_root/$name/seed$k" "${force_opt[@]}" "${run_args[@]}" $run_opts --set "training.seed=$k"
}

if $shared_stages && [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data preparation ($corpus -> $data_dir)"
  run_one "${units[0]}" 0 0 || die "data preparation failed"
fi

failed=()
first=$(( stage > 1 ? stage : 1 ))
last=$(( stop_stage < 2 ? stop_stage : 2 ))
if [ "$first" -le "$last" ] && [ ${#mine[@]} -gt 0 ]; then
  log "Stages $first-$last: training and evaluation of ${#mine[@]} (row, seed) runs, $jobs at a time"
  if [ "$jobs" -eq 1 ]; then
    for unit in "${mine[@]}"; do
      log "---- $(unit_name "$unit") (${unit#*$'\t'}, training.seed=${unit%%$'\t'*})"
      run_one "$unit" "$first" "$last" \
        || { failed+=("$(unit_name "$unit")"); log "$(unit_name "$unit") failed, going on with the others"; }
    done
  else
    status_dir=$(mktemp -d)
    trap 'rm -rf "$status_dir"' EXIT
    mkdir -p "$exp_root/ablation_logs"
    # Threads: on a CPU, N runs side by side with torch's default (every core each) would
    # oversubscribe the cores; each worker gets cores/N unless the caller set OMP_NUM_THREADS.
    threads=${OMP_NUM_THREADS:-$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))}
    # A queue, not fixed shares: each worker claims the next unclaimed run (mkdir is atomic),
    # so a worker whose runs are quick (already done, or skipped) takes over the others' work.
    pids=()
    for ((w = 0; w < jobs && w < ${#mine[@]}; w++)); do
      gpu=${gpu_ids[$w]:-$w}
      worker_log=$exp_root/ablation_logs/worker$w.log
      log "worker $w (CUDA_VISIBLE_DEVICES=$gpu, OMP_NUM_THREADS=$threads, log $worker_log)"
      (
        export CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=$threads
        for i in "${!mine[@]}"; do
          mkdir "$status_dir/claim.$i" 2>/dev/null || continue
          unit=${mine[$i]}
          log "---- worker $w: $(unit_name "$unit") (${unit#*$'\t'}, training.seed=${unit%%$'\t'*})"
          run_one "$unit" "$first" "$last" || echo "$(unit_name "$unit")" >> "$status_dir/failed"
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
  "$python" -m local.report --exp-root "$exp_root" --confs "${rows[@]}" --seeds "${seeds[@]}" \
    --oracle-dir "$exp_root/oracle" --out "$exp_root/ablation_report" || die "report failed"
fi

if [ ${#failed[@]} -gt 0 ]; then
  die "${#failed[@]} runs failed: ${failed[*]} (logs: $exp_root/<name>/seed<k>/logs/, and $exp_root/ablation_logs/ with --jobs;" \
    "re-run the same command: finished runs are skipped, interrupted ones resume)"
fi
log "done in $((SECONDS - start_time)) s"
