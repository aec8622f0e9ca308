#!/bin/bash
# Write asteroid's json metadata (lists of [wav_path, n_samples]) for an existing wsj0-mix folder:
#   <out_dir>/wav{8,16}k/{min,max}/{tr,cv,tt}/{mix,s1,s2}.json
# for every sample rate and mode found under wsj0mix_wav_dir, which may be MERL's layout
# (<dir>/<n_src>speakers/wav8k/min/tr/mix/*.wav) or the same without the <n_src>speakers level.
#
# No wsj0-2mix yet? Three ways to make it from the LDC WSJ0 corpus (LDC93S6A):
#   - MERL's MATLAB/Octave scripts (see egs/wsj0-mix/DeepClustering/run.sh, stage 1):
#     https://www.merl.com/demos/deep-clustering/create-speaker-mixtures.zip
#   - WHAM's Python scripts: their sep_clean task is wsj0-2mix (see egs/wham/ConvTasNet/run.sh);
#   - the Conv-TasNet plugin recipe this folder was generated from, which mixes in Python,
#     checks MERL's lists and writes this very layout (wavs and json):
#       egs/wsj0-2mix/prepare.sh --wsj0 /path/to/LDC93S6A --out /path/to/wsj0-mix/2speakers
set -e

wsj0mix_wav_dir=
out_dir=data/2speakers
n_src=2
python_path=python

. utils/parse_options.sh

if [[ -z $wsj0mix_wav_dir ]]; then
  echo "$0: set --wsj0mix_wav_dir to your wsj0-mix folder (see the comments at the top of $0)" >&2
  exit 1
fi
found=0
for sr_string in 8 16; do
  for mode_option in min max; do
    in_dir=$wsj0mix_wav_dir/${n_src}speakers/wav${sr_string}k/$mode_option
    [[ -d $in_dir ]] || in_dir=$wsj0mix_wav_dir/wav${sr_string}k/$mode_option
    [[ -d $in_dir ]] || continue
    tmp_dumpdir=$out_dir/wav${sr_string}k/$mode_option
    echo "Generating json files in $tmp_dumpdir from $in_dir"
    mkdir -p $tmp_dumpdir
    $python_path local/preprocess_wsj0mix.py --in_dir $in_dir --n_src $n_src --out_dir $tmp_dumpdir
    found=$((found + 1))
  done
done
if [[ $found -eq 0 ]]; then
  echo "$0: no wav8k/ or wav16k/ folder under $wsj0mix_wav_dir (or $wsj0mix_wav_dir/${n_src}speakers)" >&2
  exit 1
fi
