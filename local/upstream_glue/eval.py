"""Evaluate the trained model on the test set and make its publishable package: this recipe's ``eval.py``.

    python eval.py --exp_dir exp/<tag> --corpus_dir data/2speakers [--n_save_ex 10] [--nj 4] [--pesq]

The evaluation is ``local.evaluate`` and the package ``local.export``, verbatim
copies of the Conv-TasNet recipe's own modules; their other options pass through
to ``local.evaluate``. Writes ``exp_dir/eval/{metrics.csv, metrics.json, table.md,
examples/ex_<i>/}`` (metrics computed on the 16-bit files written there), the
same under asteroid's names (``final_metrics.json``, ``all_metrics.csv``) and
``exp_dir/publish_dir/`` with ``model.pth`` and ``README.md`` for ``asteroid-upload``:
the model is named ``ConvTasNet``, so that ``BaseModel.from_pretrained`` loads it with
asteroid alone, and carries asteroid's ``dataset`` and ``licenses`` fields (``--dataset``).
"""
import argparse
import shutil
import sys
from pathlib import Path

from local.evaluate import main as evaluate_main
from local.export import main as export_main
from local.publish import as_asteroid_export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--exp_dir", required=True, help="experiment folder written by train.py")
    parser.add_argument("--corpus_dir", required=True, help="folder of wav<sr>k/<mode>/<split>/*.json")
    parser.add_argument("--n_save_ex", type=int, default=None,
                        help="utterances saved as wav, -1 for all [conf.yml's n_examples]")
    parser.add_argument("--dataset", default="wsj0-2mix",
                        help="corpus named in publish_dir (model card, licence notice) [%(default)s]")
    args, rest = parser.parse_known_args(argv)
    exp_dir = Path(args.exp_dir)
    if args.n_save_ex is not None:
        rest += ["--n-examples", str(args.n_save_ex if args.n_save_ex >= 0 else sys.maxsize)]
    status = (evaluate_main(["--exp-dir", str(exp_dir), "--data-dir", args.corpus_dir, *rest])
              or export_main(["--exp-dir", str(exp_dir), "--out-dir", str(exp_dir / "publish_dir"),
                           "--dataset", args.dataset]))
    if status:
        return status
    as_asteroid_export(exp_dir / "publish_dir", args.dataset)
    shutil.copyfile(exp_dir / "eval" / "metrics.json", exp_dir / "final_metrics.json")
    shutil.copyfile(exp_dir / "eval" / "metrics.csv", exp_dir / "all_metrics.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
