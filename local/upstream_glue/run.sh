#!/bin/bash
# Conv-TasNet (Luo & Mesgarani, 2019) and its encoder/decoder variants on wsj0-2mix.
# Generated from @@SOURCE@@ by the Conv-TasNet recipe's `python -m local.upstream`.
#
# Stages (run a slice with --stage N --stop_stage M):
#   0  json metadata of an existing wsj0-2mix folder -> data/<n_src>speakers/wav<sr>k/<mode>/{tr,cv,tt}/*.json
#   1  training (train.py)    -> exp/<tag>/{conf.yml, checkpoints/, best_k_models.json, best_model.pth}
#   2  evaluation (eval.py)   -> exp/<tag>/{eval/, final_metrics.json, all_metrics.csv, publish_dir/}

# Exit on error
set -e
set -o pipefail

# If you already have the wsj0-2mix mixtures (made by MERL's scripts, by WHAM's sep_clean scripts,
# or by the Conv-TasNet plugin recipe), point this at the folder that holds `2speakers/`
# (or `wav8k/` directly) and start from stage 0. See local/prepare_data.sh otherwise.
wsj0mix_wav_dir=

# Path to the python you'll use for the experiment. Defaults to the current python
# You can run ./utils/prepare_python_env.sh to create a suitable python environment, paste the output here.
python_path=python

# Example usage
# ./run.sh --wsj0mix_wav_dir /corpora/wsj0-mix --id 0
# ./run.sh --stage 1 --who_is_pinv encoder          # the paper's Pinv row, in exp/convtasnet_who_is_pinv-encoder
# ./run.sh --stage 1 --train_opts "--causal true --norm_type cgLN" --tag causal

# General
stage=0  # Controls from which stage to start
stop_stage=100  # Controls at which stage to stop
tag=""  # Experiment name: exp/<tag>. Default: named after the options below (same options, same folder)
# You can ask for several GPUs using id (passed to CUDA_VISIBLE_DEVICES)
id=$CUDA_VISIBLE_DEVICES

# Data
n_src=@@N_SRC@@
corpus_dir=  # the json folders (wav<sr>k/<mode>/{tr,cv,tt}); default: data/<n_src>speakers, written by stage 0

# Training: empty means the value in local/conf.yml
batch_size=
lr=
epochs=
encoder_activation=  # linear, relu or sigmoid
who_is_pinv=  # none, encoder or decoder (pseudo-inverse side)
mask_act=  # sigmoid, softmax or relu
train_opts=""  # any other train.py flags (every second-level key of local/conf.yml), passed verbatim

# Evaluation
nj=1  # processes computing the metrics
n_save_ex=  # audio examples saved (-1: all); empty: n_examples of local/conf.yml

help_message="Usage: ./run.sh [--stage N] [--stop_stage M] [--wsj0mix_wav_dir DIR] [--tag NAME] [--id GPUS]
  [--<variable> VALUE] for any variable set above the '. utils/parse_options.sh' line of run.sh,
  e.g. --who_is_pinv encoder, --train_opts \"--n_blocks 6\" (any key of local/conf.yml).
Stages: 0 json metadata, 1 training, 2 evaluation. Outputs: exp/<tag>/ (see README.md)."

. utils/parse_options.sh

corpus_dir=${corpus_dir:-data/${n_src}speakers}
knobs=(--n_src $n_src)
tag_default=convtasnet
for knob in batch_size lr epochs encoder_activation who_is_pinv mask_act; do
  if [[ -n ${!knob} ]]; then
    knobs+=(--$knob "${!knob}")
    tag_default=${tag_default}_${knob}-${!knob}
  fi
done
tag=${tag:-$tag_default}
expdir=exp/${tag}
gpu_env=()
[[ -n $id ]] && gpu_env=(CUDA_VISIBLE_DEVICES=$id)

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  echo "Stage 0: Generating json files including wav path and duration"
  local/prepare_data.sh --wsj0mix_wav_dir "$wsj0mix_wav_dir" --n_src $n_src \
    --out_dir data/${n_src}speakers --python_path $python_path
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  echo "Stage 1: Training ($expdir)"
  mkdir -p logs $expdir
  # shellcheck disable=SC2086  # train_opts is a list of flags
  env "${gpu_env[@]}" $python_path train.py --exp_dir $expdir --corpus_dir "$corpus_dir" "${knobs[@]}" \
    $train_opts | tee logs/train_${tag}.log
  cp logs/train_${tag}.log $expdir/train.log
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "Stage 2: Evaluation ($expdir)"
  mkdir -p logs
  env "${gpu_env[@]}" $python_path eval.py --exp_dir $expdir --corpus_dir "$corpus_dir" --nj $nj \
    ${n_save_ex:+--n_save_ex $n_save_ex} | tee logs/eval_${tag}.log
  cp logs/eval_${tag}.log $expdir/eval.log
  echo "@@RECIPE@@" > $expdir/publish_dir/recipe_name.txt
fi
