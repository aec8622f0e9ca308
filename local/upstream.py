"""Write this recipe as an asteroid recipe folder, ready for asteroid's ``egs/``.

Usage:

    python -m local.upstream --conf conf/paper_best.yml --out upstream/egs/wsj0-2mix/ConvTasNetVariants
    python -m local.upstream ... --link-utils   # utils/ as a symlink to ../../wham/ConvTasNet/utils,
                                                # like the other recipes inside asteroid's tree
    python -m local.upstream --convert-model exp/wsj0-2mix/paper_best/export/model.pth publish/model.pth
                                                # our export -> a model.pth that plain asteroid loads

The folder follows asteroid's ``egs/README.md`` and runs when dropped into an
asteroid source tree (it imports asteroid only, never this repository):

    run.sh                     stages 0 data (json), 1 train, 2 eval; options via utils/parse_options.sh
    local/conf.yml             hierarchical config; every second-level key is a train.py flag
    local/prepare_data.sh      asteroid's json metadata for an existing wsj0-2mix folder
    local/preprocess_wsj0mix.py  (asteroid's wsj0-mix script, as in egs/wsj0-mix/DeepClustering)
    train.py  eval.py  model.py  (make_model_and_optimizer, load_best_model, serialize_model)
    utils/parse_options.sh  utils/prepare_python_env.sh  README.md

and a run writes ``exp/<tag>/{conf.yml, best_k_models.json, best_model.pth, final_metrics.json,
all_metrics.csv, examples/, publish_dir/{model.pth, README.md}}``.

How this repository maps onto asteroid's layout:

    this repository                          asteroid recipe (generated)
    ---------------------------------------  ------------------------------------------------
    run.sh --stage 0 (egs/<corpus>/prepare)  run.sh stage 0: local/prepare_data.sh (json only;
                                             mixtures from MERL's scripts or our prepare.sh)
    conf/<experiment>.yml (7 sections)       local/conf.yml (filterbank, masknet, training,
                                             optim, data); mapped by ``upstream_conf()``
    local.train / local.system               train.py (asteroid System, Lightning Trainer)
    local.evaluate                           eval.py (asteroid.metrics.get_metrics)
    local.export (model.pth, README.md)      eval.py -> publish_dir/model.pth (save_publishable)
    local.model.ConvTasNetVariant            model.py: asteroid ConvTasNet + who_is_pinv kept
    exp/<corpus>/<tag>/                      exp/<tag>/
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import yaml

DEFAULT_OUT = "upstream/egs/wsj0-2mix/ConvTasNetVariants"

# Section -> (comment, [(key, comment)]): the order and comments of the generated conf.yml.
CONF_LAYOUT = [
    ("filterbank", "Filterbank config (asteroid_filterbanks.make_enc_dec, 'free' filterbank)", [
        ("n_filters", "N"),
        ("kernel_size", "L"),
        ("stride", "L/2"),
        ("encoder_activation", "linear | relu | sigmoid (paper Table III)"),
        ("who_is_pinv", "null | encoder | decoder: which side is the pseudo-inverse (paper's Pinv)"),
    ]),
    ("masknet", "Network config (asteroid.masknn.TDConvNet)", [
        ("n_blocks", "X"),
        ("n_repeats", "R"),
        ("bn_chan", "B"),
        ("hid_chan", "H"),
        ("skip_chan", "Sc"),
        ("conv_kernel_size", "P"),
        ("norm_type", "gLN (non-causal) | cLN (causal)"),
        ("mask_act", "sigmoid | softmax | relu (paper Table III)"),
        ("causal", None),
    ]),
    ("training", "Training config", [
        ("epochs", None),
        ("batch_size", None),
        ("num_workers", None),
        ("half_lr", "ReduceLROnPlateau on val_loss"),
        ("lr_factor", "... multiplies the lr by this"),
        ("lr_patience", "... after this many epochs without improvement"),
        ("early_stop", None),
        ("early_stop_patience", "epochs"),
        ("gradient_clip_val", None),
        ("save_top_k", "best checkpoints kept (best_k_models.json)"),
        ("seed", None),
    ]),
    ("optim", "Optim config (asteroid.engine.optimizers.make_optimizer)", [
        ("optimizer", None),
        ("lr", None),
        ("weight_decay", None),
    ]),
    ("data", "Data config (asteroid.data.Wsj0mixDataset)", [
        ("train_dir", None),
        ("valid_dir", None),
        ("n_src", None),
        ("sample_rate", None),
        ("mode", "min | max"),
        ("segment", "training crop, seconds; shorter utterances are dropped"),
    ]),
]

# Keys of our config that have a counterpart in the generated recipe (section.key).
MAPPED = {
    "filterbank.n_filters", "filterbank.kernel_size", "filterbank.stride", "filterbank.encoder_activation",
    "filterbank.who_is_pinv", *(f"masknet.{k}" for k, _ in CONF_LAYOUT[1][2]),
    "data.sample_rate", "data.mode", "data.n_src", "data.segment", "data.batch_size", "data.num_workers",
    "data.train_set", "data.valid_set", "data.test_set",
    "optim.optimizer", "optim.lr", "optim.weight_decay",
    "scheduler.name", "scheduler.factor", "scheduler.patience",
    "training.epochs", "training.early_stop_patience", "training.gradient_clip_val", "training.save_top_k",
    "training.seed", "evaluation.n_examples",
}


class UpstreamError(ValueError):
    """A config that the asteroid-layout recipe cannot express; the message says what."""


def upstream_conf(conf: dict) -> dict:
    """Our resolved config (``local.config.load_config``) -> asteroid's hierarchical conf.yml dict."""
    data, fb, mn = conf["data"], conf["filterbank"], conf["masknet"]
    optim, sched, train = conf["optim"], conf["scheduler"], conf["training"]
    problems = []
    if data["dynamic_mixing"]:
        problems.append("data.dynamic_mixing=true (the asteroid recipe trains on the fixed wsj0-2mix mixtures)")
    if sched["name"] not in ("plateau", "none"):
        problems.append(f"scheduler.name={sched['name']} (the asteroid recipe has ReduceLROnPlateau or none)")
    if data["segment"] is None:
        problems.append("data.segment=null (asteroid's Wsj0mixDataset needs a training crop to batch)")
    if problems:
        raise UpstreamError("this config has no asteroid-recipe equivalent: " + "; ".join(problems))
    json_dir = f"data/{data['n_src']}speakers/wav{data['sample_rate'] // 1000}k/{data['mode']}"
    return {
        "filterbank": {k: fb[k] for k, _ in CONF_LAYOUT[0][2]},
        "masknet": {k: mn[k] for k, _ in CONF_LAYOUT[1][2]},
        "training": {
            "epochs": train["epochs"],
            "batch_size": data["batch_size"],
            "num_workers": data["num_workers"],
            "half_lr": sched["name"] == "plateau",
            "lr_factor": sched["factor"],
            "lr_patience": sched["patience"],
            "early_stop": train["early_stop_patience"] > 0,
            "early_stop_patience": max(train["early_stop_patience"], 1),
            "gradient_clip_val": train["gradient_clip_val"],
            "save_top_k": train["save_top_k"],
            "seed": train["seed"],
        },
        "optim": {"optimizer": optim["optimizer"], "lr": optim["lr"], "weight_decay": optim["weight_decay"]},
        "data": {
            "train_dir": f"{json_dir}/{data['train_set']}",
            "valid_dir": f"{json_dir}/{data['valid_set']}",
            "n_src": data["n_src"],
            "sample_rate": data["sample_rate"],
            "mode": data["mode"],
            "segment": data["segment"],
        },
    }


def not_carried_over(conf: dict) -> list[str]:
    """Settings of ``conf`` that differ from our defaults and that the generated recipe drops."""
    from local.config import DEFAULTS

    out = []
    for section, values in conf.items():
        for key, value in values.items():
            if f"{section}.{key}" not in MAPPED and DEFAULTS.get(section, {}).get(key) != value:
                out.append(f"{section}.{key}={value!r}")
    return out


def _yaml_line(key: str, value) -> str:
    return yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False).strip()


def conf_yaml(conf: dict, source: str) -> str:
    """The generated ``local/conf.yml``: asteroid's layout, with the paper's symbols as comments."""
    up = upstream_conf(conf)
    lines = [f"# Generated from {source} by `python -m local.upstream` (Conv-TasNet recipe).",
             "# Every second-level key is a train.py flag: `python train.py --lr 5e-4 --who_is_pinv encoder`."]
    dropped = not_carried_over(conf)
    if dropped:
        lines.append("# Not carried over from the source config: " + ", ".join(dropped))
    for section, comment, keys in CONF_LAYOUT:
        lines.append(f"# {comment}")
        lines.append(f"{section}:")
        for key, key_comment in keys:
            line = "  " + _yaml_line(key, up[section][key])
            lines.append(f"{line:<28} # {key_comment}" if key_comment else line)
    return "\n".join(lines) + "\n"


def _fill(template: str, values: dict) -> str:
    for key, value in values.items():
        template = template.replace(f"@@{key}@@", str(value))
    assert "@@" not in template, template[template.index("@@") - 40:template.index("@@") + 40]
    return template


def recipe_files(conf: dict, source: str, recipe_name: str) -> dict[str, str]:
    """Relative path -> text of every file of the generated recipe (utils/ included)."""
    up = upstream_conf(conf)
    pinv = up["filterbank"]["who_is_pinv"]
    values = {
        "RECIPE": recipe_name,
        "SOURCE": source,
        "SAMPLE_RATE": up["data"]["sample_rate"],
        "MODE": up["data"]["mode"],
        "N_SRC": up["data"]["n_src"],
        "BATCH_SIZE": up["training"]["batch_size"],
        "NUM_WORKERS": up["training"]["num_workers"],
        "LR": up["optim"]["lr"],
        "EPOCHS": up["training"]["epochs"],
        "ENCODER_ACTIVATION": up["filterbank"]["encoder_activation"] or "linear",
        "WHO_IS_PINV": pinv if pinv else "none",
        "MASK_ACT": up["masknet"]["mask_act"],
        "N_SAVE_EX": conf["evaluation"]["n_examples"],
        "TEST_SET": conf["data"]["test_set"],
    }
    return {
        "run.sh": _fill(RUN_SH, values),
        "local/conf.yml": conf_yaml(conf, source),
        "local/prepare_data.sh": _fill(PREPARE_DATA_SH, values),
        "local/preprocess_wsj0mix.py": PREPROCESS_WSJ0MIX_PY,
        "train.py": _fill(TRAIN_PY, values),
        "eval.py": _fill(EVAL_PY, values),
        "model.py": MODEL_PY,
        "README.md": _fill(README_MD, values),
        "utils/parse_options.sh": PARSE_OPTIONS_SH,
        "utils/prepare_python_env.sh": PREPARE_PYTHON_ENV_SH,
    }


EXECUTABLE = {"run.sh", "local/prepare_data.sh", "utils/parse_options.sh", "utils/prepare_python_env.sh"}
UTILS_LINK = "../../wham/ConvTasNet/utils"  # where the other recipes' utils/ symlinks point


def write_recipe(conf: dict, out: str | os.PathLike, source: str = "a config", recipe_name: Optional[str] = None,
                 link_utils: bool = False, force: bool = False) -> list[Path]:
    """Write the asteroid-layout recipe folder ``out``; returns the files written.

    An existing folder is replaced only if it holds nothing but generated files
    (no ``data/``, ``exp/`` or ``logs/`` from a run), or with ``force``. The new
    folder is built next to it and swapped in, so a failure leaves the old one.
    """
    out = Path(out)
    recipe_name = recipe_name or f"{out.parent.name}/{out.name}"
    files = recipe_files(conf, source, recipe_name)
    if out.exists() and not force:
        ours = set(files) | {"utils", "local"}
        foreign = [str(p.relative_to(out)) for p in out.rglob("*")
                   if str(p.relative_to(out)) not in ours and "__pycache__" not in p.parts]
        if foreign:
            raise UpstreamError(f"{out} holds files this command did not write ({', '.join(sorted(foreign)[:5])}"
                                f"{', ...' if len(foreign) > 5 else ''}): pass --force to replace the folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    for rel, text in files.items():
        if link_utils and rel.startswith("utils/"):
            continue
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel in EXECUTABLE:
            path.chmod(0o755)
        written.append(out / rel)
    if link_utils:
        (tmp / "utils").symlink_to(UTILS_LINK)
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return written


def asteroid_package(package: dict) -> dict:
    """Our ``serialize`` package (model ``ConvTasNetVariant``) -> one that plain asteroid loads.

    asteroid's ``ConvTasNet`` accepts every argument of ours (``who_is_pinv`` goes
    to ``make_enc_dec``), so naming the model ``ConvTasNet`` is enough for
    ``asteroid.models.BaseModel.from_pretrained`` to rebuild it without this recipe
    installed. ``who_is_pinv`` stays in ``model_args``, so the variant survives
    whether or not asteroid takes the upstream patch.
    """
    out = dict(package)
    out["model_name"] = "ConvTasNet"
    args = dict(package["model_args"])
    args.setdefault("who_is_pinv", None)
    out["model_args"] = args
    infos = dict(package.get("infos", {}))
    infos["recipe_model_name"] = package["model_name"]
    out["infos"] = infos
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", default="conf/paper_best.yml", help="experiment config to translate")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"recipe folder to write [{DEFAULT_OUT}]")
    p.add_argument("--recipe-name", default=None,
                   help="name written to publish_dir/recipe_name.txt [<dataset>/<system> from --out]")
    p.add_argument("--link-utils", action="store_true",
                   help=f"make utils/ a symlink to {UTILS_LINK} (inside asteroid's tree) instead of copies")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds other files")
    p.add_argument("--convert-model", nargs=2, metavar=("IN", "OUT"), default=None,
                   help="instead: rewrite our model.pth IN as an asteroid ConvTasNet package OUT")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.convert_model:
        import torch

        src, dst = args.convert_model
        package = torch.load(src, map_location="cpu", weights_only=True)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        torch.save(asteroid_package(package), dst)
        print(f"{dst}: loads with asteroid.models.BaseModel.from_pretrained({dst!r})")
        return 0
    from local.config import ConfigError, load_config

    try:
        conf = load_config(args.conf)
        written = write_recipe(conf, args.out, source=args.conf, recipe_name=args.recipe_name,
                               link_utils=args.link_utils, force=args.force)
    except (ConfigError, UpstreamError) as err:
        raise SystemExit(f"error: {err}")
    print(f"wrote {len(written)} files to {args.out}:")
    for path in written:
        print(f"  {path}")
    print(f"try it: cd {args.out} && ./run.sh --help  (inside asteroid's tree: egs/<dataset>/<system>/)")
    return 0


# --------------------------------------------------------------------------------------------
# Templates of the generated files. @@NAME@@ is filled by recipe_files().
# --------------------------------------------------------------------------------------------

RUN_SH = r"""#!/bin/bash
# Conv-TasNet (Luo & Mesgarani, 2019) and its encoder/decoder variants on wsj0-2mix.
# Generated from @@SOURCE@@ by the Conv-TasNet recipe's `python -m local.upstream`.
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
sample_rate=@@SAMPLE_RATE@@
mode=@@MODE@@
n_src=@@N_SRC@@

# Training
batch_size=@@BATCH_SIZE@@
num_workers=@@NUM_WORKERS@@
lr=@@LR@@
epochs=@@EPOCHS@@
train_opts=""  # any other train.py flags (every second-level key of local/conf.yml), passed verbatim

# Architecture: the paper's Table III variants
encoder_activation=@@ENCODER_ACTIVATION@@  # linear, relu or sigmoid
who_is_pinv=@@WHO_IS_PINV@@  # none, encoder or decoder (pseudo-inverse side)
mask_act=@@MASK_ACT@@  # sigmoid, softmax or relu

# Evaluation
eval_use_gpu=1
n_save_ex=@@N_SAVE_EX@@  # audio examples saved (-1: all)

help_message="Usage: ./run.sh [--stage N] [--stop_stage M] [--wsj0mix_wav_dir DIR] [--tag NAME] [--id GPUS]
  [--<variable> VALUE] for any variable set above the '. utils/parse_options.sh' line of run.sh,
  e.g. --who_is_pinv encoder, --train_opts \"--n_blocks 6\" (any key of local/conf.yml).
Stages: 0 json metadata, 1 training, 2 evaluation. Outputs: exp/<tag>/ (see README.md)."

. utils/parse_options.sh

sr_string=$(($sample_rate/1000))
dumpdir=data/${n_src}speakers/wav${sr_string}k/$mode  # directory to put generated json files

train_dir=$dumpdir/tr
valid_dir=$dumpdir/cv
test_dir=$dumpdir/@@TEST_SET@@

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
  echo "@@RECIPE@@" > $expdir/publish_dir/recipe_name.txt
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
"""

PREPARE_DATA_SH = r"""#!/bin/bash
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
"""

PREPROCESS_WSJ0MIX_PY = r'''import argparse
import json
import os

import soundfile as sf


def preprocess_one_dir(in_dir, out_dir, out_filename):
    """Create .json file for one condition."""
    file_infos = []
    in_dir = os.path.abspath(in_dir)
    wav_list = os.listdir(in_dir)
    wav_list.sort()
    for wav_file in wav_list:
        if not wav_file.endswith(".wav"):
            continue
        wav_path = os.path.join(in_dir, wav_file)
        samples = sf.SoundFile(wav_path)
        file_infos.append((wav_path, len(samples)))
    if not os.path.exists(out_dir):
        os.makedirs(out_dir)
    with open(os.path.join(out_dir, out_filename + ".json"), "w") as f:
        json.dump(file_infos, f, indent=4)


def preprocess(inp_args):
    """Create .json files for all conditions."""
    speaker_list = ["mix"] + [f"s{n+1}" for n in range(inp_args.n_src)]
    for data_type in ["tr", "cv", "tt"]:
        for spk in speaker_list:
            preprocess_one_dir(
                os.path.join(inp_args.in_dir, data_type, spk),
                os.path.join(inp_args.out_dir, data_type),
                spk,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser("WSJ0-MIX data preprocessing")
    parser.add_argument(
        "--in_dir", type=str, default=None, help="Directory path of wsj0-mix including tr, cv and tt"
    )
    parser.add_argument("--n_src", type=int, default=2, help="Number of sources in wsj0-mix")
    parser.add_argument(
        "--out_dir", type=str, default=None, help="Directory path to put output files"
    )
    args = parser.parse_args()
    print(args)
    preprocess(args)
'''

MODEL_PY = r'''"""Conv-TasNet and the encoder/decoder variants of Luo & Mesgarani (2019), Table III.

The model is asteroid's own ``ConvTasNet``; the variants are its arguments:
``encoder_activation`` (linear, relu, sigmoid), ``who_is_pinv`` (None, "encoder",
"decoder": which side is the pseudo-inverse of the other's filterbank) and
``mask_act`` (sigmoid, softmax, relu).

``serialize_model`` is ``model.serialize()`` that also records ``who_is_pinv``:
asteroid <= 0.7.0 forgets it, and a Pinv model would come back from
``from_pretrained`` with two independent filterbanks.
"""
import json
import os

import torch
from asteroid.engine.optimizers import make_optimizer
from asteroid.models import ConvTasNet
from asteroid.utils.torch_utils import load_state_dict_in

NONE_STRINGS = ("", "none", "null")


def _none(value):
    """A null in conf.yml comes back from the command line as a string."""
    return None if value is None or str(value).lower() in NONE_STRINGS else value


def make_model_and_optimizer(conf):
    """Define the model and optimizer from a config dictionary (``local/conf.yml``'s layout).

    Args:
        conf: Dictionary containing the output of hierarchical argparse.

    Returns:
        model, optimizer.
    """
    filterbank = dict(conf["filterbank"])
    filterbank["who_is_pinv"] = _none(filterbank.get("who_is_pinv"))
    filterbank["encoder_activation"] = _none(filterbank.get("encoder_activation"))
    model = ConvTasNet(
        n_src=conf["data"]["n_src"],
        sample_rate=conf["data"]["sample_rate"],
        **filterbank,
        **conf["masknet"],
    )
    optimizer = make_optimizer(model.parameters(), **conf["optim"])
    return model, optimizer


def who_is_pinv(model):
    """Which of the model's encoder and decoder is the pseudo-inverse of the other (or None)."""
    if getattr(model.encoder, "is_pinv", False):
        return "encoder"
    if getattr(model.decoder, "is_pinv", False):
        return "decoder"
    return None


def serialize_model(model):
    """``model.serialize()``, keeping ``who_is_pinv``, loadable with ``weights_only=True``."""
    package = model.serialize()
    package["model_args"]["who_is_pinv"] = who_is_pinv(model)
    versions = package["infos"].get("software_versions", {})
    package["infos"]["software_versions"] = {k: str(v) for k, v in versions.items()}
    return package


def load_best_model(train_conf, exp_dir):
    """Load best model after training.

    Args:
        train_conf (dict): dictionary as expected by `make_model_and_optimizer`
        exp_dir(str): Experiment directory. Expects to find
            `'best_k_models.json'` or `checkpoints/` in it.

    Returns:
        nn.Module the best (or last) pretrained model according to the val_loss.
    """
    model, _ = make_model_and_optimizer(train_conf)
    best_model_path = None
    best_k_path = os.path.join(exp_dir, "best_k_models.json")
    if os.path.exists(best_k_path):
        with open(best_k_path, "r") as f:
            best_k = json.load(f)
        if best_k:
            best_model_path = min(best_k, key=best_k.get)
            if not os.path.exists(best_model_path):  # experiment folder moved since training
                best_model_path = os.path.join(exp_dir, "checkpoints", os.path.basename(best_model_path))
    if best_model_path is None:
        # Get last checkpoint
        ckpt_dir = os.path.join(exp_dir, "checkpoints")
        all_ckpt = [c for c in os.listdir(ckpt_dir) if c.endswith(".ckpt")]
        all_ckpt.sort(key=lambda c: os.path.getmtime(os.path.join(ckpt_dir, c)))
        best_model_path = os.path.join(ckpt_dir, all_ckpt[-1])
    # Our own Lightning checkpoint: it holds the training config, not only tensors.
    checkpoint = torch.load(best_model_path, map_location="cpu", weights_only=False)
    model = load_state_dict_in(checkpoint["state_dict"], model)
    model.eval()
    return model
'''

TRAIN_PY = r'''"""Train Conv-TasNet (or one of its encoder/decoder variants) on wsj0-2mix.

    python train.py --exp_dir exp/my_exp [--train_dir data/2speakers/wav8k/min/tr ...]

Every second-level key of ``local/conf.yml`` is a flag whose default is the
value in that file (e.g. ``--lr 5e-4 --who_is_pinv encoder --causal true``).
Writes into ``exp_dir``: ``conf.yml``, ``checkpoints/``, ``best_k_models.json``
and ``best_model.pth`` (asteroid's ``serialize`` format plus the dataset infos).
"""
import argparse
import importlib.util
import json
import os
from pprint import pprint

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

import asteroid
from asteroid.engine.system import System
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from asteroid.utils import parse_args_as_dict, prepare_parser_from_dict

from model import load_best_model, make_model_and_optimizer, serialize_model


def _wsj0mix_dataset():
    """asteroid's ``Wsj0mixDataset``, also where ``asteroid.data`` itself does not import.

    ``asteroid/data/__init__.py`` imports every dataset module, some with optional
    dependencies (librosa for AVSpeech); ``wsj0_mix.py`` needs none of them.
    """
    try:
        from asteroid.data.wsj0_mix import Wsj0mixDataset
    except ImportError:
        path = os.path.join(os.path.dirname(asteroid.__file__), "data", "wsj0_mix.py")
        spec = importlib.util.spec_from_file_location("asteroid_wsj0_mix", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        Wsj0mixDataset = module.Wsj0mixDataset
    return Wsj0mixDataset


Wsj0mixDataset = _wsj0mix_dataset()

HERE = os.path.dirname(os.path.abspath(__file__))

# Keys which are not in the conf.yml file can be added here.
# In the hierarchical dictionary created when parsing, the key `key` can be
# found at dic['main_args'][key]

# By default train.py will use all available GPUs. The `id` option in run.sh
# will limit the number of available GPUs for train.py .
parser = argparse.ArgumentParser()
parser.add_argument("--exp_dir", default="exp/tmp", help="Full path to save best validation model")


def main(conf):
    pl.seed_everything(conf["training"]["seed"], workers=True)
    data = conf["data"]
    train_set = Wsj0mixDataset(
        data["train_dir"], n_src=data["n_src"], sample_rate=data["sample_rate"], segment=data["segment"]
    )
    val_set = Wsj0mixDataset(
        data["valid_dir"], n_src=data["n_src"], sample_rate=data["sample_rate"], segment=data["segment"]
    )
    train_loader = DataLoader(
        train_set,
        shuffle=True,
        batch_size=conf["training"]["batch_size"],
        num_workers=conf["training"]["num_workers"],
        drop_last=True,
    )
    val_loader = DataLoader(
        val_set,
        shuffle=False,
        batch_size=conf["training"]["batch_size"],
        num_workers=conf["training"]["num_workers"],
        drop_last=True,
    )

    model, optimizer = make_model_and_optimizer(conf)
    scheduler = None
    if conf["training"]["half_lr"]:
        scheduler = ReduceLROnPlateau(
            optimizer=optimizer,
            factor=conf["training"]["lr_factor"],
            patience=conf["training"]["lr_patience"],
        )
    # Just after instantiating, save the args. Easy loading in the future.
    exp_dir = conf["main_args"]["exp_dir"]
    os.makedirs(exp_dir, exist_ok=True)
    conf_path = os.path.join(exp_dir, "conf.yml")
    with open(conf_path, "w") as outfile:
        yaml.safe_dump(conf, outfile)

    # Define Loss function.
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    system = System(
        model=model,
        loss_func=loss_func,
        optimizer=optimizer,
        train_loader=train_loader,
        val_loader=val_loader,
        scheduler=scheduler,
        config=conf,
    )

    # Define callbacks
    callbacks = []
    checkpoint_dir = os.path.join(exp_dir, "checkpoints/")
    checkpoint = ModelCheckpoint(
        checkpoint_dir,
        monitor="val_loss",
        mode="min",
        save_top_k=conf["training"]["save_top_k"],
        verbose=True,
    )
    callbacks.append(checkpoint)
    if conf["training"]["early_stop"]:
        callbacks.append(
            EarlyStopping(
                monitor="val_loss",
                mode="min",
                patience=conf["training"]["early_stop_patience"],
                verbose=True,
            )
        )

    n_gpus = torch.cuda.device_count()
    trainer = pl.Trainer(
        max_epochs=conf["training"]["epochs"],
        callbacks=callbacks,
        default_root_dir=exp_dir,
        accelerator="gpu" if n_gpus else "cpu",
        strategy="ddp" if n_gpus > 1 else "auto",
        devices="auto",
        gradient_clip_val=conf["training"]["gradient_clip_val"],
    )
    trainer.fit(system)
    if trainer.global_rank != 0:
        return

    best_k = {k: v.item() for k, v in checkpoint.best_k_models.items()}
    with open(os.path.join(exp_dir, "best_k_models.json"), "w") as f:
        json.dump(best_k, f, indent=0)

    best_model = load_best_model(conf, exp_dir)
    to_save = serialize_model(best_model)
    to_save.update(train_set.get_infos())
    torch.save(to_save, os.path.join(exp_dir, "best_model.pth"))


if __name__ == "__main__":
    # We start with opening the config file conf.yml as a dictionary from
    # which we can create parsers. Each top level key in the dictionary defined
    # by the YAML file creates a group in the parser.
    with open(os.path.join(HERE, "local", "conf.yml")) as f:
        def_conf = yaml.safe_load(f)
    parser = prepare_parser_from_dict(def_conf, parser=parser)
    # Arguments are then parsed into a hierarchical dictionary (instead of
    # flat, as returned by argparse) to facilitate calls to the different
    # asteroid methods (see in main).
    arg_dic, plain_args = parse_args_as_dict(parser, return_plain_args=True)
    pprint(arg_dic)
    main(arg_dic)
'''

EVAL_PY = r'''"""Evaluate the best model on the test set; save examples and the publishable model.

    python eval.py --exp_dir exp/my_exp --test_dir data/2speakers/wav8k/min/tt [--use_gpu 1]

Writes into ``exp_dir``: ``all_metrics.csv`` (one row per utterance),
``final_metrics.json`` (means and improvements over the mixture), ``examples/ex_<i>/``
and ``publish_dir/`` (``model.pth`` from asteroid's ``save_publishable`` and a
``README.md`` model card in asteroid's template).
"""
import argparse
import importlib.util
import json
import os
import random
from pprint import pprint

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml
from tqdm import tqdm

import asteroid
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from asteroid.metrics import get_metrics
from asteroid.models import ConvTasNet, save_publishable
from asteroid.utils import tensors_to_device

def _wsj0mix_dataset():
    """asteroid's ``Wsj0mixDataset``, also where ``asteroid.data`` itself does not import.

    ``asteroid/data/__init__.py`` imports every dataset module, some with optional
    dependencies (librosa for AVSpeech); ``wsj0_mix.py`` needs none of them.
    """
    try:
        from asteroid.data.wsj0_mix import Wsj0mixDataset
    except ImportError:
        path = os.path.join(os.path.dirname(asteroid.__file__), "data", "wsj0_mix.py")
        spec = importlib.util.spec_from_file_location("asteroid_wsj0_mix", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        Wsj0mixDataset = module.Wsj0mixDataset
    return Wsj0mixDataset


Wsj0mixDataset = _wsj0mix_dataset()


RECIPE = "@@RECIPE@@"

parser = argparse.ArgumentParser()
parser.add_argument(
    "--test_dir", type=str, required=True, help="Test directory including the json files"
)
parser.add_argument(
    "--use_gpu", type=int, default=0, help="Whether to use the GPU for model execution"
)
parser.add_argument("--exp_dir", default="exp/tmp", help="Experiment root")
parser.add_argument(
    "--n_save_ex", type=int, default=10, help="Number of audio examples to save, -1 means all"
)

compute_metrics = ["si_sdr", "sdr", "sir", "sar", "stoi"]


def main(conf, train_conf):
    model_path = os.path.join(conf["exp_dir"], "best_model.pth")
    model = ConvTasNet.from_pretrained(model_path)
    # Handle device placement
    if conf["use_gpu"] and torch.cuda.is_available():
        model.cuda()
    model.eval()
    model_device = next(model.parameters()).device
    sample_rate = train_conf["data"]["sample_rate"]
    test_set = Wsj0mixDataset(
        conf["test_dir"], n_src=train_conf["data"]["n_src"], sample_rate=sample_rate, segment=None
    )  # Uses all segment length
    # Used to reorder sources only
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")

    # Choose the indexes of sentences to save (the same ones on every run).
    ex_save_dir = os.path.join(conf["exp_dir"], "examples/")
    n_save = len(test_set) if conf["n_save_ex"] == -1 else min(conf["n_save_ex"], len(test_set))
    save_idx = set(random.Random(0).sample(range(len(test_set)), n_save))
    series_list = []
    with torch.no_grad():
        for idx in tqdm(range(len(test_set))):
            # Forward the network on the mixture.
            mix, sources = tensors_to_device(test_set[idx], device=model_device)
            est_sources = model(mix[None])
            loss, reordered_sources = loss_func(est_sources, sources[None], return_est=True)
            mix_np = mix[None].cpu().data.numpy()
            sources_np = sources.cpu().data.numpy()
            est_sources_np = reordered_sources.squeeze(0).cpu().data.numpy()
            utt_metrics = get_metrics(
                mix_np,
                sources_np,
                est_sources_np,
                sample_rate=sample_rate,
                metrics_list=compute_metrics,
            )
            utt_metrics = {k: float(v) for k, v in utt_metrics.items()}
            utt_metrics["mix_path"] = test_set.mix[idx][0]
            series_list.append(pd.Series(utt_metrics))

            # Save some examples in a folder. Wav files and metrics as text.
            if idx in save_idx:
                local_save_dir = os.path.join(ex_save_dir, "ex_{}/".format(idx))
                os.makedirs(local_save_dir, exist_ok=True)
                sf.write(local_save_dir + "mixture.wav", mix_np[0], sample_rate)
                # Loop over the sources and estimates
                for src_idx, src in enumerate(sources_np):
                    sf.write(local_save_dir + "s{}.wav".format(src_idx + 1), src, sample_rate)
                for src_idx, est_src in enumerate(est_sources_np):
                    est_src *= np.max(np.abs(mix_np)) / max(np.max(np.abs(est_src)), 1e-8)
                    sf.write(
                        local_save_dir + "s{}_estimate.wav".format(src_idx + 1),
                        est_src,
                        sample_rate,
                    )
                # Write local metrics to the example folder.
                with open(local_save_dir + "metrics.json", "w") as f:
                    json.dump(utt_metrics, f, indent=0)

    # Save all metrics to the experiment folder.
    all_metrics_df = pd.DataFrame(series_list)
    all_metrics_df.to_csv(os.path.join(conf["exp_dir"], "all_metrics.csv"))

    # Print and save summary metrics
    final_results = {}
    for metric_name in compute_metrics:
        input_metric_name = "input_" + metric_name
        ldf = all_metrics_df[metric_name] - all_metrics_df[input_metric_name]
        final_results[metric_name] = float(all_metrics_df[metric_name].mean())
        final_results[metric_name + "_imp"] = float(ldf.mean())
    print("Overall metrics :")
    pprint(final_results)
    with open(os.path.join(conf["exp_dir"], "final_metrics.json"), "w") as f:
        json.dump(final_results, f, indent=0)

    model_dict = torch.load(model_path, map_location="cpu", weights_only=True)
    publish_dir = os.path.join(conf["exp_dir"], "publish_dir")
    os.makedirs(publish_dir, exist_ok=True)
    publishable = save_publishable(
        publish_dir, model_dict, metrics=final_results, train_conf=train_conf, recipe=RECIPE
    )
    with open(os.path.join(publish_dir, "README.md"), "w") as f:
        f.write(model_card(publishable, train_conf, final_results))


def model_card(model_dict, train_conf, metrics):
    """asteroid's model_card_template.md, filled in."""
    dataset = model_dict.get("dataset", "wsj0-mix")
    task = model_dict.get("task", "sep_clean")
    name = f"ConvTasNet_{dataset}_{task}"
    data_notes = [
        f"[{lic['title']}]({lic['title_link']}) by [{lic['author']}]({lic['author_link']}), "
        f"used under [{lic['license']}]({lic['license_link']})"
        + (" (non-commercial use)" if lic.get("non_commercial") else "")
        for lic in model_dict.get("licenses", [])
    ]
    conf = {k: v for k, v in train_conf.items() if k not in ("main_args", "positional arguments")}
    return f"""---
tags:
- asteroid
- audio
- ConvTasNet
- audio-to-audio
datasets:
- {dataset}
- {task}
license: cc-by-sa-3.0
inference: false
---

## Description:
This model was trained using the {RECIPE} recipe in Asteroid.
It was trained on the `{task}` task of the {dataset} dataset.

## Training config:
```yaml
{yaml.safe_dump(conf, sort_keys=False).strip()}
```

## Results:
```yaml
{yaml.safe_dump(metrics, sort_keys=False).strip()}
```

## License notice:
This work "{name}" is a derivative of {" and ".join(data_notes) or "its training data"}.
"{name}" is licensed under
[Attribution-ShareAlike 3.0 Unported](https://creativecommons.org/licenses/by-sa/3.0/)
by its uploader.
"""


if __name__ == "__main__":
    args = parser.parse_args()
    arg_dic = dict(vars(args))

    # Load training config
    conf_path = os.path.join(args.exp_dir, "conf.yml")
    with open(conf_path) as f:
        train_conf = yaml.safe_load(f)
    main(arg_dic, train_conf)
'''

PARSE_OPTIONS_SH = r"""#!/bin/bash

# Copyright 2012  Johns Hopkins University (Author: Daniel Povey);
#                 Arnab Ghoshal, Karel Vesely

# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#  http://www.apache.org/licenses/LICENSE-2.0
#
# THIS CODE IS PROVIDED *AS IS* BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
# KIND, EITHER EXPRESS OR IMPLIED, INCLUDING WITHOUT LIMITATION ANY IMPLIED
# WARRANTIES OR CONDITIONS OF TITLE, FITNESS FOR A PARTICULAR PURPOSE,
# MERCHANTABLITY OR NON-INFRINGEMENT.
# See the Apache 2 License for the specific language governing permissions and
# limitations under the License.


# Parse command-line options.
# To be sourced by another script (as in ". parse_options.sh").
# Option format is: --option-name arg
# and shell variable "option_name" gets set to value "arg."
# The exception is --help, which takes no arguments, but prints the
# $help_message variable (if defined).


###
### The --config file options have lower priority to command line
### options, so we need to import them first...
###

# Now import all the configs specified by command-line, in left-to-right order
for ((argpos=1; argpos<$#; argpos++)); do
  if [ "${!argpos}" == "--config" ]; then
    argpos_plus1=$((argpos+1))
    config=${!argpos_plus1}
    [ ! -r $config ] && echo "$0: missing config '$config'" && exit 1
    . $config  # source the config file.
  fi
done


###
### Now we process the command line options
###
while true; do
  [ -z "${1:-}" ] && break;  # break if there are no arguments
  case "$1" in
    # If the enclosing script is called with --help option, print the help
    # message and exit.  Scripts should put help messages in $help_message
    --help|-h) if [ -z "$help_message" ]; then echo "No help found." 1>&2;
      else printf "$help_message\n" 1>&2 ; fi;
      exit 0 ;;
    --*=*) echo "$0: options to scripts must be of the form --name value, got '$1'"
      exit 1 ;;
    # If the first command-line argument begins with "--" (e.g. --foo-bar),
    # then work out the variable name as $name, which will equal "foo_bar".
    --*) name=`echo "$1" | sed s/^--// | sed s/-/_/g`;
      # Next we test whether the variable in question is undefned-- if so it's
      # an invalid option and we die.  Note: $0 evaluates to the name of the
      # enclosing script.
      # The test [ -z ${foo_bar+xxx} ] will return true if the variable foo_bar
      # is undefined.  We then have to wrap this test inside "eval" because
      # foo_bar is itself inside a variable ($name).
      eval '[ -z "${'$name'+xxx}" ]' && echo "$0: invalid option $1" 1>&2 && exit 1;

      oldval="`eval echo \\$$name`";
      # Work out whether we seem to be expecting a Boolean argument.
      if [ "$oldval" == "true" ] || [ "$oldval" == "false" ]; then
        was_bool=true;
      else
        was_bool=false;
      fi

      # Set the variable to the right value-- the escaped quotes make it work if
      # the option had spaces, like --cmd "queue.pl -sync y"
      eval $name=\"$2\";

      # Check that Boolean-valued arguments are really Boolean.
      if $was_bool && [[ "$2" != "true" && "$2" != "false" ]]; then
        echo "$0: expected \"true\" or \"false\": $1 $2" 1>&2
        exit 1;
      fi
      shift 2;
      ;;
  *) break;
  esac
done


# Check for an empty argument to the --cmd option, which can easily occur as a
# result of scripting errors.
[ ! -z "${cmd+xxx}" ] && [ -z "$cmd" ] && echo "$0: empty argument to --cmd option" 1>&2 && exit 1;


true; # so this script returns exit code 0.
"""

PREPARE_PYTHON_ENV_SH = r"""#!/bin/bash
# Usage ./utils/install_env.sh --install_dir A --asteroid_root B --pip_requires C
install_dir=~
asteroid_root=../../../../
pip_requires=../../../requirements.txt  # Expects a requirement.txt

. utils/parse_options.sh || exit 1

mkdir -p $install_dir
cd $install_dir
echo "Download and install latest version of miniconda3 into ${install_dir}"
wget https://repo.anaconda.com/miniconda/Miniconda3-latest-Linux-x86_64.sh

bash Miniconda3-latest-Linux-x86_64.sh -b -p miniconda3
pip_path=$PWD/miniconda3/bin/pip

rm Miniconda3-latest-Linux-x86_64.sh
cd -

if [[ ! -z ${pip_requires} ]]; then
	$pip_path install -r $pip_requires
fi
$pip_path install soundfile
$pip_path install -e $asteroid_root
#$pip_path install ${asteroid_root}/\[""evaluate""\]
echo -e "\nAsteroid has been installed in editable mode. Feel free to apply your changes !"
"""

README_MD = r"""### Conv-TasNet and its encoder/decoder variants on wsj0-2mix

Conv-TasNet [1] with the encoder, decoder and mask variants of the paper's
Table III, built from asteroid's own `ConvTasNet` (free filterbank +
`TDConvNet`). Generated from `@@SOURCE@@` of the Conv-TasNet plugin recipe by
`python -m local.upstream`; the layout is the one of [`egs/README.md`](../../README.md).

### Run it
```bash
# wsj0-2mix already made (MERL's scripts, WHAM's sep_clean or the plugin recipe):
./run.sh --wsj0mix_wav_dir /path/to/wsj0-mix --id 0
# a variant: the paper's "Pinv" row (decoder learned, encoder its pseudo-inverse)
./run.sh --stage 1 --who_is_pinv encoder --tag pinv
# any conf.yml key, e.g. a causal model
./run.sh --stage 1 --train_opts "--norm_type cLN --causal true" --tag causal
```
`run.sh` exposes the knobs people change (data, batch size, learning rate,
epochs, the three variant switches); every other setting is in `local/conf.yml`,
whose second-level keys are all `train.py` flags (`--train_opts`).
Stages: 0 json metadata (`local/prepare_data.sh`), 1 training, 2 evaluation.
`--stage N --stop_stage M` runs a slice. The experiment folder `exp/<tag>/`
is named after the options, so the same command lands in the same folder.

| variant flag | values | paper |
|---|---|---|
| `--encoder_activation` | `linear`, `relu`, `sigmoid` | encoder non-linearity |
| `--who_is_pinv` | `none`, `encoder`, `decoder` | "Pinv": one side is the pseudo-inverse of the other |
| `--mask_act` | `sigmoid`, `softmax`, `relu` | mask non-linearity |

### Outputs
`exp/<tag>/`: `conf.yml`, `checkpoints/`, `best_k_models.json`, `best_model.pth`
(asteroid `serialize` format, loads with `ConvTasNet.from_pretrained`),
`all_metrics.csv`, `final_metrics.json`, `examples/ex_<i>/`, and
`publish_dir/{model.pth, README.md}` ready for `asteroid-upload`.

`model.py` keeps `who_is_pinv` in `model_args`, so the Pinv variants come back
from `from_pretrained` as they were trained, with any asteroid version
(asteroid <= 0.7.0 itself drops the key when serializing).

### Results
The paper reports 15.3 dB SI-SNRi and 15.6 dB SDRi for its best configuration
(N=512, L=16, B=128, H=512, Sc=128, P=3, X=8, R=3, gLN, non-causal; the defaults
of `local/conf.yml` when generated from `conf/paper_best.yml`). Fill in this
recipe's numbers from `exp/<tag>/final_metrics.json`.

### References
[1] Yi Luo, Nima Mesgarani, "Conv-TasNet: Surpassing ideal time-frequency magnitude
masking for speech separation", IEEE/ACM TASLP 27(8), 2019. https://arxiv.org/abs/1809.07454
"""


if __name__ == "__main__":
    sys.exit(main())
