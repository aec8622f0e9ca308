#!/bin/bash
# Conv-TasNet (Luo & Mesgarani, 2019) and its encoder/decoder variants on wsj0-2mix.
# Generated from conf/paper_best.yml by the Conv-TasNet recipe's `python -m local.upstream`.
#
# Stages (run a slice with --stage N --stop_stage M):
#   0  json metadata of an existing wsj0-2mix folder   -> data/<n_src>speakers/wav<sr>k/<mode>/{tr,cv,tt}/*.json
#   1  training (train.py)                             -> exp/<tag>/{conf.yml, best_k_models.json, best_model.pth}
#   2  evaluation (eval.py)                            -> exp/<tag>/{final_metrics.json, examples/, publish_dir/}

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
# ./run.sh --stage 1 --who_is_pinv encoder --tag pinv_encoder      # the paper's Pinv row
# ./run.sh --stage 1 --train_opts "--n_blocks 6 --norm_type cLN --causal true"

# General
stage=0  # Controls from which stage to start
stop_stage=100  # Controls at which stage to stop
tag=""  # Experiment name: exp/<tag>. Default: derived from the options below (same options, same folder)
# You can ask for several GPUs using id (passed to CUDA_VISIBLE_DEVICES)
id=$CUDA_VISIBLE_DEVICES

# Data
sample_rate=8000
mode=min
n_src=2

# Training
batch_size=4
num_workers=2
lr=0.001
epochs=100
train_opts=""  # any other train.py flags (every second-level key of local/conf.yml), passed verbatim

# Architecture: the paper's Table III variants
encoder_activation=linear  # linear, relu or sigmoid
who_is_pinv=none  # none, encoder or decoder (pseudo-inverse side)
mask_act=sigmoid  # sigmoid, softmax or relu

# Evaluation
eval_use_gpu=1
n_save_ex=5  # audio examples saved (-1: all)

help_message="Usage: ./run.sh [--stage N] [--stop_stage M] [--wsj0mix_wav_dir DIR] [--tag NAME] [--id GPUS]
  [--<variable> VALUE] for any variable set above the '. utils/parse_options.sh' line of run.sh,
  e.g. --who_is_pinv encoder, --train_opts \"--n_blocks 6\" (any key of local/conf.yml).
Stages: 0 json metadata, 1 training, 2 evaluation. Outputs: exp/<tag>/ (see README.md)."

. utils/parse_options.sh

sr_string=$(($sample_rate/1000))
dumpdir=data/${n_src}speakers/wav${sr_string}k/$mode  # directory to put generated json files

train_dir=$dumpdir/tr
valid_dir=$dumpdir/cv
test_dir=$dumpdir/tt

if [[ -z ${tag} ]]; then
  tag=convtasnet_${n_src}sep_${sr_string}k${mode}_enc-${encoder_activation}_pinv-${who_is_pinv}_mask-${mask_act}
fi
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
  env "${gpu_env[@]}" $python_path train.py \
    --train_dir $train_dir \
    --valid_dir $valid_dir \
    --n_src $n_src \
    --sample_rate $sample_rate \
    --mode $mode \
    --lr $lr \
    --epochs $epochs \
    --batch_size $batch_size \
    --num_workers $num_workers \
    --encoder_activation $encoder_activation \
    --who_is_pinv $who_is_pinv \
    --mask_act $mask_act \
    $train_opts \
    --exp_dir ${expdir}/ | tee logs/train_${tag}.log
  cp logs/train_${tag}.log $expdir/train.log

  # Get ready to publish
  mkdir -p $expdir/publish_dir
  echo "wsj0-2mix/ConvTasNetVariants" > $expdir/publish_dir/recipe_name.txt
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "Stage 2: Evaluation ($expdir)"
  mkdir -p logs
  env "${gpu_env[@]}" $python_path eval.py \
    --test_dir $test_dir \
    --use_gpu $eval_use_gpu \
    --n_save_ex $n_save_ex \
    --exp_dir ${expdir} | tee logs/eval_${tag}.log
  cp logs/eval_${tag}.log $expdir/eval.log
fi
