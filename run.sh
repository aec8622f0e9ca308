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
num_workers=        # data-loader workers for training; default: from the config
nj=2                # parallel jobs for data preparation and evaluation
prep_opts=          # extra options passed verbatim to egs/<corpus>/prepare.sh
inputs=             # stage 4: files or folders to separate; default: one test mixture
wsj0=               # wsj0-2mix: the LDC WSJ0 folder (passed to egs/wsj0-2mix/prepare.sh --wsj0)
wsj0_2mix=          # wsj0-2mix: an existing wsj0-2mix folder to validate and index instead
ablation=           # a folder of configs: run the ablation study (run_ablation.sh) instead
force=false         # redo stages even if they are up to date
overrides=()        # --set section.key=value, repeatable: config overrides for training

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
  --num-workers N      training data-loader workers [config's data.num_workers]
  --nj N               data-preparation and evaluation jobs [$nj]
  --prep-opts "..."    extra options for egs/<corpus>/prepare.sh (see its --help)
  --set KEY=VALUE      config override, e.g. --set optim.lr=5e-4 (repeatable)
  --inputs "F ..."     stage 4: wav files or folders to separate [one test mixture]
  --wsj0 DIR           wsj0-2mix corpus: your LDC WSJ0 copy (SPHERE or wav)
  --wsj0-2mix DIR      wsj0-2mix corpus: an existing wsj0-2mix folder (validated, indexed)
  --ablation DIR       run the encoder/decoder study on every config in DIR (see run_ablation.sh)
  --force              redo stages that are already done
  -h, --help           this help
EOF
}

need_value() {  # option, remaining-arg-count
  [ "$2" -ge 2 ] || { usage >&2; die "option $1 needs a value"; }
}

while [ $# -gt 0 ]; do
  case $1 in
    --stage) need_value "$1" $#; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) need_value "$1" $#; stop_stage=$2; shift 2 ;;
    --corpus) need_value "$1" $#; corpus=$2; shift 2 ;;
    --conf) need_value "$1" $#; conf=$2; shift 2 ;;
    --tag) need_value "$1" $#; tag=$2; shift 2 ;;
    --exp-dir) need_value "$1" $#; exp_dir=$2; shift 2 ;;
    --data-dir) need_value "$1" $#; data_dir=$2; shift 2 ;;
    --devices) need_value "$1" $#; devices=$2; shift 2 ;;
    --num-workers) need_value "$1" $#; num_workers=$2; shift 2 ;;
    --nj) need_value "$1" $#; nj=$2; shift 2 ;;
    --prep-opts) need_value "$1" $#; prep_opts=$2; shift 2 ;;
    --set) need_value "$1" $#; overrides+=("--set" "$2"); shift 2 ;;
    --inputs) need_value "$1" $#; inputs=$2; shift 2 ;;
    --wsj0) need_value "$1" $#; wsj0=$2; shift 2 ;;
    --wsj0-2mix) need_value "$1" $#; wsj0_2mix=$2; shift 2 ;;
    --ablation) need_value "$1" $#; ablation=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1' (see --help above)" ;;
  esac
done

for name in stage stop_stage nj; do
  [[ ${!name} =~ ^[0-9]+$ ]] || die "--${name//_/-} must be a non-negative integer, got '${!name}'"
done
[ -d "egs/$corpus" ] || die "--corpus $corpus: no folder egs/$corpus (choose one of: $(corpora))"
[ -x "egs/$corpus/prepare.sh" ] || die "egs/$corpus/prepare.sh is missing or not executable"
if [ -n "$ablation" ]; then
  [ -d "$ablation" ] || die "--ablation $ablation: no such folder of configs"
  log "ablation study: exec run_ablation.sh --confs $ablation --corpus $corpus"
  exec ./run_ablation.sh --confs "$ablation" --corpus "$corpus" --stage "$stage" --stop-stage "$stop_stage"
fi
[ -f "$conf" ] || die "--conf $conf: no such file (configs live in conf/)"
if [ -n "$wsj0" ]; then
  [ -d "$wsj0" ] || die "--wsj0 $wsj0: no such folder (point it at your LDC WSJ0 copy)"
  prep_opts="$prep_opts --wsj0 $wsj0"
fi
if [ -n "$wsj0_2mix" ]; then
  [ -d "$wsj0_2mix" ] || die "--wsj0-2mix $wsj0_2mix: no such folder"
  prep_opts="$prep_opts --wsj0-2mix $wsj0_2mix"
fi
tag=${tag:-$(basename "${conf%.*}")}
data_dir=${data_dir:-data/$corpus}
exp_dir=${exp_dir:-exp/$corpus/$tag}
force_opt=(); $force && force_opt=(--force)

log "$0 $*"
log "corpus=$corpus conf=$conf data_dir=$data_dir exp_dir=$exp_dir stages $stage..$stop_stage"
start_time=$SECONDS

tools/setup_env.sh
python=$root/.venv/bin/python
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}

run_logged() {  # logfile, command...: run, keep a copy of the output, fail with the log's name
  local logfile=$1; shift
  mkdir -p "$(dirname "$logfile")"
  if ! "$@" 2>&1 | tee "$logfile"; then
    die "failed: $* (log: $logfile)"
  fi
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data preparation ($corpus -> $data_dir)"
  # shellcheck disable=SC2086  # prep_opts is a list of options by design
  run_logged "$data_dir/logs/prepare.log" \
    "egs/$corpus/prepare.sh" --out "$data_dir" --nj "$nj" "${force_opt[@]}" $prep_opts
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: training ($conf -> $exp_dir)"
  train_opts=("${overrides[@]}")
  [ -n "$devices" ] && train_opts+=(--devices "$devices")
  [ -n "$num_workers" ] && train_opts+=(--num-workers "$num_workers")
  if $force; then rm -f "$exp_dir/.train.done"; fi
  run_logged "$exp_dir/logs/train.log" \
    "$python" -m local.train --conf "$conf" --data-dir "$data_dir" --exp-dir "$exp_dir" "${train_opts[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: evaluation ($exp_dir/eval)"
  run_logged "$exp_dir/logs/evaluate.log" \
    "$python" -m local.evaluate --exp-dir "$exp_dir" --data-dir "$data_dir" --nj "$nj" "${force_opt[@]}"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: export ($exp_dir/export)"
  run_logged "$exp_dir/logs/export.log" "$python" -m local.export --exp-dir "$exp_dir" "${force_opt[@]}"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: separation with the exported model ($exp_dir/separated)"
  if [ -z "$inputs" ]; then
    inputs=$(find "$exp_dir/eval/examples" -name mixture.wav 2>/dev/null | sort | head -n 1)
    [ -n "$inputs" ] || die "no --inputs given and no evaluation example to separate: run stage 2 first"
  fi
  # shellcheck disable=SC2086  # inputs is a list of paths by design
  run_logged "$exp_dir/logs/separate.log" \
    "$python" -m local.separate --model "$exp_dir/export" --out-dir "$exp_dir/separated" $inputs
fi

log "done in $((SECONDS - start_time)) s"
