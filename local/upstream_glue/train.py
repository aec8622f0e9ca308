"""Train Conv-TasNet (or one of its encoder/decoder variants): this recipe's ``train.py``.

    python train.py --exp_dir exp/<tag> --corpus_dir data/2speakers [--lr 5e-4 --who_is_pinv encoder ...]

As in asteroid's other recipes, every second-level key of ``local/conf.yml`` is a
flag whose default is the value in that file (``--causal true --norm_type cgLN``,
``--devices 4``, ``--who_is_pinv none``). ``--corpus_dir`` holds
``wav8k/min/{tr,cv,tt}/{mix,s1,s2}.json`` (stage 0 of ``run.sh`` writes them).
The training is ``local.train``, a verbatim copy of the Conv-TasNet recipe's own
module; its other options (``--force``, ``--no-progress-bar``) pass through.
Writes ``exp_dir/{conf.yml, checkpoints/, best_k_models.json, best_model.pth}``.
"""
import argparse
import sys
from pathlib import Path

import yaml

from local.train import main as train_main

CONF = Path(__file__).resolve().parent / "local" / "conf.yml"
NULLS = ("none", "null", "~", "")


def recipe_args(argv=None) -> list:
    """asteroid's flags (``--exp_dir``, ``--corpus_dir``, one per conf.yml key) -> ``local.train``'s."""
    with open(CONF) as f:
        conf = yaml.safe_load(f)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--exp_dir", required=True, help="experiment folder, e.g. exp/<tag>")
    parser.add_argument("--corpus_dir", required=True, help="folder of wav<sr>k/<mode>/<split>/*.json")
    for section, values in conf.items():
        group = parser.add_argument_group(section)
        for key, value in values.items():
            group.add_argument(f"--{key}", dest=f"{section}.{key}", metavar="VALUE", help=f"[{value}]")
    args, rest = parser.parse_known_args(argv)
    out = ["--conf", str(CONF), "--data-dir", args.corpus_dir, "--exp-dir", args.exp_dir]
    for dotted, value in vars(args).items():
        if "." in dotted and value is not None:  # YAML values, as in local/conf.yml; "none" is null
            out += ["--set", f"{dotted}={'null' if value.lower() in NULLS else value}"]
    return out + rest


if __name__ == "__main__":
    sys.exit(train_main(recipe_args()))
