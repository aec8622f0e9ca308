"""Figures of the ablation study (PNG, matplotlib's Agg canvas; no display needed).

Usage (``local.report`` calls these itself when their inputs exist):

    python -m local.figures basis  exp/demo/linear_sigmoid/best_model.pth out/basis.png
    python -m local.figures curves out/curves.png exp/demo/linear_sigmoid exp/demo/relu_sigmoid ...

- :func:`plot_basis_functions`: the encoder and decoder basis functions sorted by
  UPGMA (average-linkage hierarchical clustering on Euclidean distance, leaf
  order, as in the paper's Figure 2), each beside the magnitude of its FFT.
- :func:`plot_training_curves`: training and validation loss of several
  experiments on one plot, from their Lightning CSV logs.
- :func:`plot_seed_curves`: training and validation SI-SNR per epoch of every
  (row, seed) run of the ablation, one colour per row, the row's mean over seeds bold.
- :func:`plot_ablation_bars`: SI-SNRi / SDRi of each row of the ablation table
  (with its 95% interval when known) with the paper's values marked.
- :func:`plot_seed_scatter`: each seed's SI-SNRi per row as a dot, the row's mean and
  two-level interval, and beside it the paper's value for that row.

Every figure has a fixed size in pixels (``*_SIZE`` below, at ``DPI``), so a
report's images line up and tests can check them.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

DPI = 100
BASIS_SIZE = (1000, 800)  # width, height in pixels
CURVES_SIZE = (900, 500)
BARS_SIZE = (1000, 500)
SEEDS_SIZE = (1000, 500)
SEED_CURVES_SIZE = (1200, 500)


def _figure(size_px):
    from matplotlib.figure import Figure

    # A bare Figure draws with the Agg canvas and leaves pyplot's global state alone.
    return Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI, layout="constrained")


def _save(fig, out_png) -> Path:
    from local.stage_state import atomic_file

    out = Path(out_png)
    with atomic_file(out) as fh:
        fig.savefig(fh, dpi=DPI, format="png")
    return out


# ---------------------------------------------------------------------------------------
# (a) basis functions
# ---------------------------------------------------------------------------------------
def upgma_order(basis: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage (UPGMA) clustering of the rows, Euclidean distance."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    basis = np.asarray(basis, dtype=np.float64)
    if len(basis) < 2:
        return np.arange(len(basis))
    return leaves_list(linkage(basis, method="average", metric="euclidean"))


def fft_magnitudes(basis: np.ndarray, n_fft: int | None = None) -> np.ndarray:
    """|FFT| of each row, zero-padded to ``n_fft`` (default: 4x the length, at least 256)."""
    n_fft = n_fft or max(256, 2 ** math.ceil(math.log2(4 * basis.shape[-1])))
    return np.abs(np.fft.rfft(basis, n=n_fft, axis=-1))


def basis_functions(model) -> dict:
    """``{"encoder": (N, L), "decoder": (N, L)}`` as the model applies them (pinv included)."""
    import torch

    with torch.no_grad():
        enc = model.encoder.get_filters().detach().cpu().numpy()
        dec = model.decoder.get_filters().detach().cpu().numpy()
    return {"encoder": enc.reshape(enc.shape[0], -1), "decoder": dec.reshape(dec.shape[0], -1)}


def _load_model(model_or_path):
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    import torch

    from local.model import load_model

    package = torch.load(model_or_path, map_location="cpu", weights_only=True)
    return load_model(package)


def plot_basis_functions(model_or_path, out_png, title: str | None = None) -> Path:
    """Encoder (top) and decoder (bottom) bases, UPGMA-sorted, and their FFT magnitudes.

    ``model_or_path``: a :class:`local.model.ConvTasNetVariant` or a ``best_model.pth``.
    Each basis is sorted by its own clustering; row k of a basis panel and row k of
    the FFT panel beside it are the same basis function.
    """
    model = _load_model(model_or_path)
    fs = float(model.sample_rate)
    bases = basis_functions(model)
    pinv = getattr(model, "who_is_pinv", None)
    fig = _figure(BASIS_SIZE)
    axes = fig.subplots(2, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    for row, name in enumerate(("encoder", "decoder")):
        basis = bases[name]
        order = upgma_order(basis)
        sorted_basis = basis[order]
        n, length = sorted_basis.shape
        label = name + (" (pinv)" if pinv == name else "")
        limit = float(np.abs(sorted_basis).max()) or 1.0
        ax = axes[row, 0]
        im = ax.imshow(sorted_basis, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                       vmin=-limit, vmax=limit, extent=(0, 1000 * length / fs, n - 0.5, -0.5))
        ax.set_title(f"{label}: {n} basis functions, UPGMA order", fontsize="medium")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("basis function (sorted)")
        fig.colorbar(im, ax=ax, shrink=0.8)
        mags = fft_magnitudes(sorted_basis)
        ax = axes[row, 1]
        im = ax.imshow(mags, aspect="auto", interpolation="nearest", cmap="magma",
                       extent=(0, fs / 2000, n - 0.5, -0.5))
        ax.set_title(f"{label}: |FFT| of each (same order)", fontsize="medium")
        ax.set_xlabel("frequency (kHz)")
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


# ---------------------------------------------------------------------------------------
# (b) training curves
# ---------------------------------------------------------------------------------------
def read_lightning_csv(path) -> dict:
    """Per-epoch ``{"train": {epoch: loss_epoch}, "val": {epoch: val_loss}}`` of a CSVLogger file.

    Lightning writes step rows and epoch rows into one file; empty cells are
    skipped, and an epoch logged twice (a resumed run) keeps its last value.
    """
    out = {"train": {}, "val": {}}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            epoch = rec.get("epoch")
            if not epoch:
                continue
            for key, column in (("train", "loss_epoch"), ("val", "val_loss")):
                value = rec.get(column)
                if value not in (None, ""):
                    out[key][int(float(epoch))] = float(value)
    return out


def plot_training_curves(logs: Mapping[str, str | Path], out_png, title: str | None = None) -> Path:
    """Training (solid) and validation (dashed) loss per epoch of each experiment.

    ``logs``: ``{experiment name: path to logs/metrics.csv}``. The loss is the
    negative SI-SNR (dB) of the training / validation crops, so lower is better.
    """
    fig = _figure(CURVES_SIZE)
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(logs))]
    for color, (name, path) in zip(colors, logs.items()):
        curves = read_lightning_csv(path)
        for key, style in (("train", "-"), ("val", "--")):
            points = sorted(curves[key].items())
            if points:
                epochs, values = zip(*points)
                ax.plot(np.array(epochs) + 1, values, style, color=color, marker=".",
                        label=f"{name} ({'training' if key == 'train' else 'validation'})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss: negative SI-SNR (dB), lower is better")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncols=2)
    ax.set_title(title or "training (solid) and validation (dashed) loss")
    return _save(fig, out_png)


def plot_seed_curves(runs: Mapping[str, Mapping[int, str | Path]], out_png, title: str | None = None) -> Path:
    """Training (left) and validation (right) SI-SNR per epoch of every (row, seed) run.

    ``runs``: ``{row name: {seed: path to logs/metrics.csv}}``. SI-SNR = -loss (dB),
    higher is better, epochs counted from 1 (as :mod:`local.curves`). One colour per
    row: each seed a thin line, the mean over the row's seeds (at epochs every seed
    logged) a thick one, so the spread between training runs is visible beside the
    gaps between rows.
    """
    from matplotlib.ticker import MaxNLocator

    from local.curves import si_snr_per_epoch

    fig = _figure(SEED_CURVES_SIZE)
    axes = fig.subplots(1, 2, sharex=True)
    for i, (name, seeds) in enumerate(runs.items()):
        color = f"C{i % 10}"
        curves = {seed: si_snr_per_epoch(path) for seed, path in sorted(seeds.items())}
        for ax, key in zip(axes, ("train", "val")):
            per_seed = [c[key] for c in curves.values() if c[key]]
            for values in per_seed:
                epochs, v = zip(*sorted(values.items()))
                ax.plot(epochs, v, "-", color=color, linewidth=0.8, alpha=0.45)
            if per_seed:
                common = sorted(set.intersection(*(set(c) for c in per_seed)))
                if common:
                    mean = [float(np.mean([c[e] for c in per_seed])) for e in common]
                    ax.plot(common, mean, "-", color=color, linewidth=2.2, marker=".",
                            label=f"{name} ({len(per_seed)} seed{'s' if len(per_seed) != 1 else ''})")
    for ax, what in zip(axes, ("training", "validation")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} SI-SNR (dB), higher is better")
        ax.set_title(f"{what}: each seed thin, mean over seeds bold", fontsize="medium")
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


# ---------------------------------------------------------------------------------------
# (c) the ablation table as bars
# ---------------------------------------------------------------------------------------
def plot_ablation_bars(rows: Sequence[Mapping], out_png, title: str | None = None) -> Path:
    """Bars of our SI-SNRi and SDRi per row, the paper's values as black markers.

    ``rows``: dicts with ``name``, ``si_snri``, ``sdri``, ``paper_si_snri``,
    ``paper_sdri`` (numbers or ``None``) and optionally ``kind`` (``"oracle"``
    rows are hatched) and ``si_snri_ci`` / ``sdri_ci`` (``[low, high]``, drawn as
    error bars). Rows without results keep their slot, labelled "not run".
    """
    fig = _figure(BARS_SIZE)
    ax = fig.subplots()
    x = np.arange(len(rows))
    width = 0.38
    series = (("si_snri", "paper_si_snri", "SI-SNRi", -width / 2, "C0"),
              ("sdri", "paper_sdri", "SDRi", width / 2, "C1"))
    labelled = set()
    for i, row in enumerate(rows):
        oracle = row.get("kind") == "oracle"
        for key, paper_key, label, offset, color in series:
            value, paper = row.get(key), row.get(paper_key)
            if value is not None:
                bar_label = f"ours: {label}" if label not in labelled else None
                labelled.add(label)
                ci = row.get(key + "_ci")
                yerr = [[value - ci[0]], [ci[1] - value]] if ci else None
                ax.bar(i + offset, value, width, color=color, hatch="//" if oracle else None,
                       edgecolor="white" if oracle else None, label=bar_label, yerr=yerr,
                       error_kw={"ecolor": "0.2", "capsize": 3, "linewidth": 1})
            if paper is not None:
                marker_label = f"paper: {label}" if "paper " + label not in labelled else None
                labelled.add("paper " + label)
                ax.plot([i + offset], [paper], marker="D" if label == "SI-SNRi" else "s", color="black",
                        markersize=5, linestyle="none", label=marker_label)
        if row.get("si_snri") is None and row.get("sdri") is None:
            ax.text(i, 0.02, "not run", rotation=90, ha="center", va="bottom", fontsize="small",
                    transform=ax.get_xaxis_transform(), color="0.4")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(x, [str(r["name"]) for r in rows], rotation=30, ha="right")
    ax.set_ylabel("improvement over the mixture (dB)")
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncols=2)
    ax.set_title(title or "ablation: ours (bars, 95% intervals; hatched = ideal masks) vs the paper (black markers)")
    return _save(fig, out_png)


def plot_seed_scatter(rows: Sequence[Mapping], out_png, title: str | None = None) -> Path:
    """Per row: each seed's mean SI-SNRi (dots), the mean over seeds and its 95% interval
    (seeds x utterances), and in a second panel the paper's value beside our mean.

    ``rows``: dicts with ``name``, ``si_snri``, ``si_snri_ci`` (or None),
    ``si_snri_seed_values`` (one per seed), ``paper_si_snri`` and optionally ``kind``
    (``"oracle"`` rows are left out: they have no seeds). Two panels, because the
    paper's wsj0-2mix numbers and a scaled-down study can be dB apart while the seeds
    of one row are tenths apart: on one axis the spread would not show.
    """
    rows = [r for r in rows if r.get("kind") != "oracle"]
    fig = _figure(SEEDS_SIZE)
    axes = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [2.2, 1]})
    y = np.arange(len(rows))[::-1]
    ax = axes[0]
    labelled = set()

    def once(label):
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for yi, row in zip(y, rows):
        values = list(row.get("si_snri_seed_values") or [])
        if values:
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.plot(values, yi + jitter, "o", color="C0", markersize=6, alpha=0.8, label=once("each seed"))
        ci = row.get("si_snri_ci")
        if ci:
            ax.plot(ci, [yi, yi], "-", color="0.2", linewidth=2.5, solid_capstyle="butt",
                    label=once("95% interval (seeds x utterances)"))
        if row.get("si_snri") is not None:
            ax.plot([row["si_snri"]], [yi], "D", color="C3", markersize=7, label=once("mean over seeds"))
        else:
            ax.text(0.02, yi, "not run", transform=ax.get_yaxis_transform(), va="center", color="0.4")
    ax.set_yticks(y, [str(r["name"]) for r in rows])
    ax.set_xlabel("SI-SNRi (dB), ours")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("ours: every seed, mean and interval", fontsize="medium")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    ax = axes[1]
    for yi, row in zip(y, rows):
        if row.get("paper_si_snri") is not None:
            ax.plot([row["paper_si_snri"]], [yi], "D", color="black", markersize=6, label=once("paper"))
        if row.get("si_snri") is not None:
            ax.plot([row["si_snri"]], [yi], "D", color="C3", markersize=6, markerfacecolor="none",
                    label=once("ours (mean)"))
    ax.set_xlabel("SI-SNRi (dB)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("beside the paper (wsj0-2mix)", fontsize="medium")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("basis", help="basis functions of a best_model.pth")
    b.add_argument("model")
    b.add_argument("out")
    c = sub.add_parser("curves", help="training curves of experiment folders")
    c.add_argument("out")
    c.add_argument("exp_dirs", nargs="+")
    args = p.parse_args(argv)
    if args.what == "basis":
        print(plot_basis_functions(args.model, args.out, title=str(args.model)))
    else:
        logs = {Path(d).name: Path(d) / "logs" / "metrics.csv" for d in args.exp_dirs}
        missing = [str(v) for v in logs.values() if not v.is_file()]
        if missing:
            raise SystemExit(f"error: no training log: {', '.join(missing)}")
        print(plot_training_curves(logs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
