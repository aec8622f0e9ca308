"""Training and validation SI-SNR per epoch of one experiment, as a PNG.

Usage (``local.train`` writes it at the end of training; ``local.export`` copies it):

    python -m local.curves exp/demo/demo [--out exp/demo/demo/training_curves.png] \
        [--reference docs/demo_training_curves.csv]

Reads ``<exp-dir>/logs/metrics.csv`` (Lightning's CSVLogger: ``loss_epoch`` and
``val_loss`` are the negative SI-SNR of the training and validation crops, in
dB) and plots SI-SNR = -loss per epoch, higher is better, so that a run can be
compared with a reference run at a glance (kaituoxu/Conv-TasNet #8).

Written next to the PNG: ``training_curves.csv`` (``epoch,train_si_snr,val_si_snr``)
with the plotted numbers. That table is also what ``--reference`` reads: another
run's ``training_curves.csv`` (e.g. the demo model's, ``docs/demo_training_curves.csv``,
or one from an export folder), drawn in grey underneath; one format for both.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger("local.curves")
PNG_NAME = "training_curves.png"
CSV_NAME = "training_curves.csv"
#: Columns of CSV_NAME, as written by _write_table and read by read_curves_table; key -> column.
TABLE_COLUMNS = {"train": "train_si_snr", "val": "val_si_snr"}


def si_snr_per_epoch(metrics_csv) -> dict:
    """``{"train": {epoch: si_snr}, "val": {epoch: si_snr}}`` (dB, epochs from 1) of a CSVLogger file."""
    from local.figures import read_lightning_csv

    curves = read_lightning_csv(metrics_csv)
    return {key: {epoch + 1: -loss for epoch, loss in sorted(values.items()) if np.isfinite(loss)}
            for key, values in curves.items()}


def read_curves_table(path) -> dict:
    """``{"train": {epoch: si_snr}, "val": {epoch: si_snr}}`` of a ``training_curves.csv`` (empty cells skipped).

    Raises ``ValueError`` (one line) when the file has none of the table's
    columns, e.g. a Lightning ``logs/metrics.csv`` given as the reference.
    """
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if "epoch" not in columns or not columns & set(TABLE_COLUMNS.values()):
            raise ValueError(f"{path}: not a {CSV_NAME} (expected the columns epoch,"
                             f"{','.join(TABLE_COLUMNS.values())}, as local.curves writes next to its PNG)")
        out = {key: {} for key in TABLE_COLUMNS}
        for rec in reader:
            for key, column in TABLE_COLUMNS.items():
                if rec.get(column) not in (None, "") and rec.get("epoch") not in (None, ""):
                    out[key][int(rec["epoch"])] = float(rec[column])
    return out


def plot_si_snr_curves(metrics_csv, out_png, title: Optional[str] = None, reference=None,
                       reference_label: str = "reference") -> Path:
    """PNG of training (solid) and validation (dashed) SI-SNR per epoch; returns its path.

    ``reference``: another run's ``training_curves.csv`` (:func:`read_curves_table`).
    Raises ``ValueError`` when the log holds no epoch value at all, or the
    reference is not such a table.
    """
    from matplotlib.ticker import MaxNLocator

    from local.figures import CURVES_SIZE, _figure, _save

    curves = si_snr_per_epoch(metrics_csv)
    if not curves["train"] and not curves["val"]:
        raise ValueError(f"{metrics_csv}: no per-epoch loss_epoch or val_loss value to plot")
    fig = _figure(CURVES_SIZE)
    ax = fig.subplots()
    if reference is not None:
        ref = read_curves_table(reference)
        for key, style in (("train", "-"), ("val", "--")):
            if ref[key]:
                epochs, values = zip(*sorted(ref[key].items()))
                ax.plot(epochs, values, style, color="0.6", linewidth=1.5,
                        label=f"{reference_label} ({'training' if key == 'train' else 'validation'})")
    for key, style, color in (("train", "-", "C0"), ("val", "--", "C1")):
        if curves[key]:
            epochs, values = zip(*sorted(curves[key].items()))
            ax.plot(epochs, values, style, color=color, marker=".",
                    label="this run (" + ("training" if key == "train" else "validation") + ")")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("SI-SNR (dB), higher is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    best = max(curves["val"].items(), key=lambda kv: kv[1]) if curves["val"] else None
    ax.set_title(title or ("training (solid) and validation (dashed) SI-SNR per epoch"
                           + (f"; best validation {best[1]:.2f} dB at epoch {best[0]}" if best else "")))
    out = _save(fig, out_png)
    _write_table(curves, out.with_name(CSV_NAME))
    return out


def _write_table(curves: dict, path: Path) -> None:
    from local.stage_state import atomic_write_text

    epochs = sorted(set(curves["train"]) | set(curves["val"]))
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [",".join(["epoch", *TABLE_COLUMNS.values()])]
    lines += [f"{e},{fmt(curves['train'].get(e))},{fmt(curves['val'].get(e))}" for e in epochs]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_training_curves(exp_dir, reference=None) -> Path:
    """``<exp-dir>/training_curves.png`` (and ``.csv``) from ``<exp-dir>/logs/metrics.csv``."""
    exp_dir = Path(exp_dir)
    log_csv = exp_dir / "logs" / "metrics.csv"
    if not log_csv.is_file():
        raise FileNotFoundError(f"{log_csv} not found: no training log to plot")
    return plot_si_snr_curves(log_csv, exp_dir / PNG_NAME, reference=reference)


def plot_after_training(exp_dir) -> Optional[Path]:
    """:func:`write_training_curves`, but a failure is a warning: a figure never fails a training run."""
    try:
        out = write_training_curves(exp_dir)
    except Exception as err:  # noqa: BLE001 - matplotlib missing, empty log, full disk ...
        log.warning("could not plot the training curves of %s: %s", exp_dir, err)
        return None
    log.info("training curves: %s", out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir", help="experiment folder (holds logs/metrics.csv)")
    p.add_argument("--out", default=None, help=f"PNG to write (default: <exp-dir>/{PNG_NAME})")
    p.add_argument("--reference", default=None,
                   help=f"another run's {CSV_NAME} (e.g. docs/demo_training_curves.csv), drawn in grey")
    args = p.parse_args(argv)
    exp_dir = Path(args.exp_dir)
    log_csv = exp_dir / "logs" / "metrics.csv"
    if not log_csv.is_file():
        raise SystemExit(f"error: {log_csv} not found: no training log to plot")
    if args.reference is not None and not Path(args.reference).is_file():
        raise SystemExit(f"error: --reference {args.reference} not found: pass another run's {CSV_NAME}")
    try:
        out = plot_si_snr_curves(log_csv, args.out or exp_dir / PNG_NAME, reference=args.reference)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
