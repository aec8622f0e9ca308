#!/usr/bin/env bash
# Conv-TasNet speech separation recipe: data preparation, training, evaluation, export.
#
#   ./run.sh                                   # every stage on the built-in demo corpus (CPU is fine)
#   ./run.sh --corpus wsj0-2mix --conf conf/paper_best.yml --devices 4
#   ./run.sh --stage 2 --stop-stage 2          # re-run the evaluation only
#
# Stages (each reads only what earlier stages wrote; a finished stage is skipped
# unless its inputs changed or --force is given):
#   0  data preparation   egs/<corpus>/prepare.sh -> data/<corpus>/wav8k/min/{tr,cv,tt}/*.json
#   1  training           local.train    -> exp/<corpus>/<tag>/{conf.yml, checkpoints/, best_model.pth}
#   2  evaluation         local.evaluate -> exp/<corpus>/<tag>/eval/{metrics.csv, metrics.json, examples/}
#   3  export             local.export   -> exp/<corpus>/<tag>/export/{model.pth, conf.yml, README.md}
#   4  separation demo    local.separate -> exp/<corpus>/<tag>/separated/ (the --inputs files)
#
# Everything under data/ and exp/ is generated and can be deleted and rebuilt.
set -euo pipefail
run_started=$(date +%s.%N)  # a whole-run time budget (training.time_budget_scope: run) counts from here
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
. tools/log.sh

# ---- options (defaults) -------------------------------------------------------
stage=0             # first stage to run
stop_stage=100      # last stage to run
corpus=demo         # corpus folder under egs/ (demo, wsj0-2mix)
conf=conf/demo.yml  # experiment config (one file per experiment)
tag=                # experiment name; default: the config's basename
exp_dir=            # experiment folder; default: exp/<corpus>/<tag>
data_dir=           # prepared corpus folder; default: data/<corpus>
devices=            # Lightning devices for training (e.g. 1, 4, auto); default: from the config
precision=          # Lightning precision for training (32-true, bf16-mixed, 16-mixed); default: from the config
strategy=           # Lightning strategy for training (auto = DDP with several processes); default: from the config
num_nodes=          # machines for training (Lightning num_nodes); default: from the config
num_workers=        # data-loader workers for training; default: from the config
nj=2                # parallel jobs for data preparation and evaluation
device=             # evaluation and separation: cpu or cuda; default: cuda when torch sees a GPU
prep_opts=          # extra options passed verbatim to egs/<corpus>/prepare.sh
inputs=()           # stage 4: --inputs PATH, repeatable (a file or a folder each); default: one test mixture
wsj0=               # wsj0-2mix: the LDC WSJ0 folder (passed to egs/wsj0-2mix/prepare.sh --wsj0)
wsj0_2mix=          # wsj0-2mix: an existing wsj0-2mix folder to validate and index instead
ablation=           # a folder of configs: run the ablation study (run_ablation.sh) instead
seeds=              # --ablation: training runs per row, a count or a list (run_ablation.sh --seeds)
force=false         # redo stages even if they are up to date
overrides=()        # --set section.key=value, repeatable: config overrides (training; evaluation.* also stage 2)
last_stage=4        # the stages are 0..last_stage
given=()            # options given on the command line, for --ablation's pass-through check
cmdline=$(printf '%q ' "$0" "$@")  # recorded before the options are shifted away

corpora() {  # corpus folders: those with a prepare.sh
  local d; for d in egs/*/prepare.sh; do d=${d%/prepare.sh}; printf '%s ' "${d#egs/}"; done
}

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options (default in brackets):
  --stage N            first stage to run [$stage]
  --stop-stage M       last stage to run [$stop_stage]
  --corpus NAME        corpus under egs/: $(corpora)[$corpus]
  --conf FILE          experiment config [$conf]
  --tag NAME           experiment name [basename of --conf]
  --exp-dir DIR        experiment folder [exp/<corpus>/<tag>]
  --data-dir DIR       prepared corpus folder [data/<corpus>]
  --devices D          training devices, e.g. 1, 4 or auto [config's training.devices]
  --precision P        training precision: 32-true, bf16-mixed, 16-mixed [config's training.precision]
  --strategy S         Lightning strategy, e.g. ddp [config's training.strategy: auto]
  --num-nodes N        training machines [config's training.num_nodes]
  --num-workers N      training data-loader workers [config's data.num_workers]
  --nj N               data-preparation and evaluation jobs [$nj]
  --device D           where evaluation and separation run: cpu, cuda [cuda when available]
  --prep-opts "..."    extra options for egs/<corpus>/prepare.sh (see its --help)
  --set KEY=VALUE      config override, e.g. --set optim.lr=5e-4 (repeatable)
  --inputs PATH        stage 4: a wav file or folder to separate, repeatable [one test mixture]
  --wsj0 DIR           wsj0-2mix corpus: your LDC WSJ0 copy (SPHERE or wav)
  --wsj0-2mix DIR      wsj0-2mix corpus: an existing wsj0-2mix folder (validated, indexed)
  --ablation DIR       run the encoder/decoder study on every config in DIR (see run_ablation.sh);
                       --set, --devices, --num-workers, --nj, --data-dir, --prep-opts, --wsj0,
                       --wsj0-2mix and --force go to every run of the study
  --seeds N|"K ..."    with --ablation: training runs per row (seeds 0..N-1, or the listed seeds)
  --force              redo stages that are already done (stage 1: train again from scratch)
  -h, --help           this help
EOF
}

need_value() {  # option, remaining-arg-count
  [ "$2" -ge 2 ] || { usage >&2; die "option $1 needs a value"; }
}

while [ $# -gt 0 ]; do
  [[ $1 == --* ]] && given+=("$1")
  case $1 in
    --stage) need_value "$1" $#; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) need_value "$1" $#; stop_stage=$2; shift 2 ;;
    --corpus) need_value "$1" $#; corpus=$2; shift 2 ;;
    --conf) need_value "$1" $#; conf=$2; shift 2 ;;
    --tag) need_value "$1" $#; tag=$2; shift 2 ;;
    --exp-dir) need_value "$1" $#; exp_dir=$2; shift 2 ;;
    --data-dir) need_value "$1" $#; data_dir=$2; shift 2 ;;
    --devices) need_value "$1" $#; devices=$2; shift 2 ;;
    --precision) need_value "$1" $#; precision=$2; shift 2 ;;
    --strategy) need_value "$1" $#; strategy=$2; shift 2 ;;
    --num-nodes) need_value "$1" $#; num_nodes=$2; shift 2 ;;
    --num-workers) need_value "$1" $#; num_workers=$2; shift 2 ;;
    --nj) need_value "$1" $#; nj=$2; shift 2 ;;
    --device) need_value "$1" $#; device=$2; shift 2 ;;
    --prep-opts) need_value "$1" $#; prep_opts=$2; shift 2 ;;
    --set) need_value "$1" $#; overrides+=("--set" "$2"); shift 2 ;;
    --inputs) need_value "$1" $#; inputs+=("$2"); shift 2 ;;
    --wsj0) need_value "$1" $#; wsj0=$2; shift 2 ;;
    --wsj0-2mix) need_value "$1" $#; wsj0_2mix=$2; shift 2 ;;
    --ablation) need_value "$1" $#; ablation=$2; shift 2 ;;
    --seeds) need_value "$1" $#; seeds=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1' (see --help above)" ;;
  esac
done

for name in stage stop_stage nj; do
  [[ ${!name} =~ ^[0-9]+$ ]] || die "--${name//_/-} must be a non-negative integer, got '${!name}'"
done
[ "$stage" -le "$last_stage" ] || die "--stage $stage: there is no such stage (the stages are 0-$last_stage)"
[ "$stop_stage" -ge "$stage" ] || die "--stop-stage $stop_stage is before --stage $stage: nothing would run"
[ "$nj" -ge 1 ] || die "--nj must be at least 1"
# A name, not a path: a tag such as ../../etc would put the experiment outside exp/.
name_re='^[A-Za-z0-9][A-Za-z0-9._+-]*$'
[[ $corpus =~ $name_re ]] || die "--corpus '$corpus' must be a folder name under egs/ (one of: $(corpora))"
[ -d "egs/$corpus" ] || die "--corpus $corpus: no folder egs/$corpus (choose one of: $(corpora))"
[ -x "egs/$corpus/prepare.sh" ] || die "egs/$corpus/prepare.sh is missing or not executable"
if [ -n "$tag" ] && { ! [[ $tag =~ $name_re ]] || [[ $tag == *..* ]]; }; then
  die "--tag '$tag' must be a plain name (letters, digits, . _ + -, no '/' or '..'); use --exp-dir for a path"
fi
# Training options, the same words for local.train and for every run of --ablation.
train_opts=("${overrides[@]}")
[ -n "$devices" ] && train_opts+=(--devices "$devices")
[ -n "$precision" ] && train_opts+=(--precision "$precision")
[ -n "$strategy" ] && train_opts+=(--strategy "$strategy")
[ -n "$num_nodes" ] && train_opts+=(--num-nodes "$num_nodes")
[ -n "$num_workers" ] && train_opts+=(--num-workers "$num_workers")
[ -z "$seeds" ] || [ -n "$ablation" ] || die "--seeds has a meaning only with --ablation; for one run use --set training.seed=K"
if [ -n "$ablation" ]; then
  [ -d "$ablation" ] || die "--ablation $ablation: no such folder of configs"
  for opt in "${given[@]}"; do
    case $opt in
      --conf|--tag|--exp-dir|--inputs) die "$opt has no meaning with --ablation (each config of $ablation is its own experiment under exp/<corpus>/)" ;;
    esac
  done
  pass=("${train_opts[@]}")
  [ -n "$data_dir" ] && pass+=(--data-dir "$data_dir")
  [ -n "$prep_opts" ] && pass+=(--prep-opts "$prep_opts")
  [ -n "$wsj0" ] && pass+=(--wsj0 "$wsj0")
  [ -n "$wsj0_2mix" ] && pass+=(--wsj0-2mix "$wsj0_2mix")
  $force && pass+=(--force)
  [ -n "$seeds" ] && pass+=(--seeds "$seeds")
  log "ablation study: exec run_ablation.sh --confs $ablation --corpus $corpus ${pass[*]}"
  exec ./run_ablation.sh --confs "$ablation" --corpus "$corpus" --stage "$stage" --stop-stage "$stop_stage" \
    --nj "$nj" "${pass[@]}"
fi
[ -f "$conf" ] || die "--conf $conf: no such file (configs live in conf/)"
prep_args=()  # each path one word, whatever spaces it holds
if [ -n "$wsj0" ]; then
  [ -d "$wsj0" ] || die "--wsj0 $wsj0: no such folder (point it at your LDC WSJ0 copy)"
  prep_args+=(--wsj0 "$wsj0")
fi
if [ -n "$wsj0_2mix" ]; then
  [ -d "$wsj0_2mix" ] || die "--wsj0-2mix $wsj0_2mix: no such folder"
  prep_args+=(--wsj0-2mix "$wsj0_2mix")
fi
for input in "${inputs[@]}"; do
  [ -e "$input" ] || die "--inputs $input: no such file or folder"
done
tag=${tag:-$(basename "${conf%.*}")}
data_dir=${data_dir:-data/$corpus}
exp_dir=${exp_dir:-exp/$corpus/$tag}
force_opt=(); $force && force_opt=(--force)
runs() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }  # whether stage $1 is in this run

log "$cmdline"
log "corpus=$corpus conf=$conf data_dir=$data_dir exp_dir=$exp_dir stages $stage..$stop_stage"
start_time=$SECONDS

tools/setup_env.sh
python=$root/.venv/bin/python
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}

run_logged() {  # logdir, name, command...: run, keep this run's output as logdir/name.<time>.log
  # Every run keeps its own log (a skipped or failed re-run never overwrites a finished
  # run's); name.log links to the newest. Each log starts with run.sh's command line.
  local logdir=$1 name=$2; shift 2
  local logfile=$logdir/$name.$(date +%Y%m%d-%H%M%S).$$.log
  mkdir -p "$logdir"
  if [ -f "$logdir/$name.log" ] && [ ! -L "$logdir/$name.log" ]; then  # a log from before this layout
    mv "$logdir/$name.log" "$logdir/$name.$(date -r "$logdir/$name.log" +%Y%m%d-%H%M%S).log"
  fi
  printf '# %s\n# stage command: %s\n' "$cmdline" "$*" > "$logfile"
  ln -sfn "$(basename "$logfile")" "$logdir/$name.log"
  if ! "$@" 2>&1 | tee -a "$logfile"; then
    die "failed: $* (log: $logfile)"
  fi
}

if runs 1 || runs 2 || runs 3; then
  # The whole config (with --set and the device options) is checked before any stage runs, and
  # so is the experiment folder: settings that would not reach a trained model are refused.
  check_opts=()
  $force && runs 1 && check_opts+=(--force)
  "$python" -m local.train --check-only --conf "$conf" --data-dir "$data_dir" --exp-dir "$exp_dir" \
    "${train_opts[@]}" "${check_opts[@]}" || die "bad configuration (see the line above); nothing was run"
fi

if runs 0; then
  log "Stage 0: data preparation ($corpus -> $data_dir)"
  # shellcheck disable=SC2086  # prep_opts is a list of options by design
  run_logged "$data_dir/logs" prepare \
    "egs/$corpus/prepare.sh" --out "$data_dir" --nj "$nj" "${force_opt[@]}" "${prep_args[@]}" $prep_opts
fi

if runs 1; then
  log "Stage 1: training ($conf -> $exp_dir)"
  budget_opts=(--run-started "$run_started")
  [ "$stop_stage" -ge 2 ] && budget_opts+=(--more-stages)
  run_logged "$exp_dir/logs" train \
    "$python" -m local.train --conf "$conf" --data-dir "$data_dir" --exp-dir "$exp_dir" "${train_opts[@]}" \
    "${force_opt[@]}" "${budget_opts[@]}"
fi

if runs 2; then
  log "Stage 2: evaluation ($exp_dir/eval)"
  run_logged "$exp_dir/logs" evaluate \
    "$python" -m local.evaluate --exp-dir "$exp_dir" --data-dir "$data_dir" --nj "$nj" "${force_opt[@]}" \
    --conf "$conf" "${overrides[@]}" ${device:+--device "$device"}
fi

if runs 3; then
  log "Stage 3: export ($exp_dir/export)"
  run_logged "$exp_dir/logs" export "$python" -m local.export --exp-dir "$exp_dir" --dataset "$corpus" "${force_opt[@]}"
fi

if runs 4; then
  log "Stage 4: separation with the exported model ($exp_dir/separated)"
  if [ ${#inputs[@]} -eq 0 ]; then
    example=$(find "$exp_dir/eval/examples" -name mixture.wav 2>/dev/null | sort | head -n 1)
    [ -n "$example" ] || die "no --inputs given and no evaluation example to separate: run stage 2 first"
    inputs=("$example")
  fi
  run_logged "$exp_dir/logs" separate \
    "$python" -m local.separate --model "$exp_dir/export" --out-dir "$exp_dir/separated" "${inputs[@]}" \
    ${device:+--device "$device"}
fi

log "done in $((SECONDS - start_time)) s"
