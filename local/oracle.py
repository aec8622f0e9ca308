"""Ideal time-frequency masks: the baseline that Conv-TasNet claims to surpass.

Usage (what ``./run_ablation.sh`` runs after training):

    python -m local.oracle --data-dir data/demo --conf conf/demo.yml --out-dir exp/demo/oracle \
        [--kinds ibm irm wfm] [--max-utts 0] [--force]

Each mask is computed from the reference sources and applied to the STFT of
the mixture (32 ms Hann window, 8 ms hop, the mixture's phase), as in the
paper's Table IV. For source i, with S_j the STFT of source j:

    IBM_i = 1 where |S_i| is the largest of the |S_j|, else 0   (ties: the first source)
    IRM_i = |S_i| / sum_j |S_j|
    WFM_i = |S_i|^2 / sum_j |S_j|^2                            (both 1/C where all S_j are 0)

The data settings (sample rate, min/max, n_src, test split) and the metrics come
from ``--conf``; the numbers are computed by the same code as ``local.evaluate``
and written in the same format, one folder per mask:

    <out-dir>/<kind>/eval/metrics.csv    one row per utterance
    <out-dir>/<kind>/eval/metrics.json   means, SI-SNRi / SDRi
    <out-dir>/<kind>/eval/table.md

A mask whose results are up to date (same test list) is skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

log = logging.getLogger("local.oracle")

KINDS = ("ibm", "irm", "wfm")
#: STFT window and hop in seconds (paper: 32 ms Hann window, 8 ms hop).
WINDOW_S, HOP_S = 0.032, 0.008


def stft_params(sample_rate: int) -> tuple[int, int]:
    """(window length, hop) in samples: 256 and 64 at 8 kHz."""
    return int(round(WINDOW_S * sample_rate)), int(round(HOP_S * sample_rate))


def stft(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(..., time) -> complex (..., freq, frames), Hann window, centred frames."""
    win, hop = stft_params(sample_rate)
    shape = x.shape
    spec = torch.stft(x.reshape(-1, shape[-1]), n_fft=win, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, dtype=x.dtype, device=x.device),
                      center=True, return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, sample_rate: int, length: int) -> torch.Tensor:
    """Inverse of :func:`stft` (weighted overlap-add), cut to ``length`` samples."""
    win, hop = stft_params(sample_rate)
    shape = spec.shape
    x = torch.istft(spec.reshape(-1, *shape[-2:]), n_fft=win, hop_length=hop, win_length=win,
                    window=torch.hann_window(win, dtype=spec.real.dtype, device=spec.device),
                    center=True, length=length)
    return x.reshape(*shape[:-2], length)


def ideal_masks(source_mags: torch.Tensor, kind: str) -> torch.Tensor:
    """Masks from source magnitudes ``(n_src, freq, frames)``; same shape, values in [0, 1]."""
    kind = kind.lower()
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}: choose one of {KINDS}")
    n_src = source_mags.shape[0]
    if kind == "ibm":
        winner = source_mags.argmax(dim=0)  # first source on ties
        return torch.stack([(winner == k).to(source_mags.dtype) for k in range(n_src)])
    power = source_mags if kind == "irm" else source_mags**2
    total = power.sum(dim=0, keepdim=True)
    silent = total == 0
    return torch.where(silent, torch.full_like(power, 1.0 / n_src), power / torch.where(silent, 1.0, total))


def oracle_separate(mix, sources, fs: int, kind: str) -> torch.Tensor:
    """Apply an ideal mask to the mixture: ``(time,)`` + ``(n_src, time)`` -> ``(n_src, time)``.

    Accepts numpy arrays or tensors; the estimate has the mixture's length and dtype
    (float64 for numpy input).
    """
    mix = torch.as_tensor(mix)
    sources = torch.as_tensor(sources, dtype=mix.dtype)
    if mix.dim() != 1 or sources.dim() != 2 or sources.shape[-1] != mix.shape[-1]:
        raise ValueError(f"expected mix (time,) and sources (n_src, time), got {tuple(mix.shape)} "
                         f"and {tuple(sources.shape)}")
    masks = ideal_masks(stft(sources, fs).abs(), kind)
    return istft(masks * stft(mix, fs), fs, length=mix.shape[-1])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="corpus folder, e.g. data/demo")
    p.add_argument("--conf", required=True, help="config whose data and evaluation sections to use")
    p.add_argument("--out-dir", required=True, help="output folder, e.g. exp/demo/oracle")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="masks to evaluate")
    p.add_argument("--test-set", default=None, help="split to evaluate (default: data.test_set of the config)")
    p.add_argument("--max-utts", type=int, default=0, help="evaluate only the first N utterances (0: all)")
    p.add_argument("--force", action="store_true", help="evaluate again even if results are up to date")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from tqdm import tqdm

    from local.config import ConfigError, load_config
    from local.data import MixtureDataset, split_dir
    from local.evaluate import format_table, summarise, utterance_metrics, write_csv_atomic
    from local.stage_state import atomic_write_text, is_done, mark_done, same_settings

    try:
        conf = load_config(args.conf)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    dc, ec = conf["data"], conf["evaluation"]
    test_set = args.test_set or dc["test_set"]
    test_dir = split_dir(args.data_dir, dc, test_set)
    if not (test_dir / "mix.json").is_file():
        raise SystemExit(f"error: {test_dir / 'mix.json'} not found: prepare the {test_set!r} split first")
    metrics_list = ["si_sdr"] + (["sdr"] if ec["compute_sdr"] else []) + (["stoi"] if ec["compute_stoi"] else [])
    inputs = [test_dir / "mix.json"]
    win, hop = stft_params(dc["sample_rate"])
    settings = {"window": win, "hop": hop, "metrics": metrics_list, "max_utts": args.max_utts}

    dataset = None
    tables = []
    for kind in args.kinds:
        out_dir = Path(args.out_dir) / kind / "eval"
        marker = out_dir / ".done"
        if not args.force and is_done(marker, inputs) and same_settings(marker, settings):
            log.info("%s: up to date in %s (use --force to redo)", kind.upper(), out_dir)
            tables.append((out_dir / "table.md").read_text())
            continue
        if dataset is None:
            dataset = MixtureDataset(test_dir, dc["n_src"], dc["sample_rate"], segment=None, return_name=True)
        n_utts = len(dataset) if args.max_utts <= 0 else min(args.max_utts, len(dataset))
        rows = []
        for idx in tqdm(range(n_utts), desc=f"oracle {kind.upper()}", unit="utt"):
            mix, sources, name = dataset[idx]
            est = oracle_separate(mix.double(), sources.double(), dc["sample_rate"], kind)
            rows.append({"utt": name, **utterance_metrics(mix.numpy()[None], sources.numpy(),
                                                          est.float().numpy(), dc["sample_rate"], metrics_list)})
        summary = summarise(rows, metrics_list)
        summary.update(test_set=str(test_dir), mask=kind.upper(), stft_window=win, stft_hop=hop)
        write_csv_atomic(out_dir / "metrics.csv", rows)
        atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2))
        table = (f"oracle {kind.upper()} (STFT {win}/{hop} samples, mixture phase) on {test_set} "
                 f"({len(rows)} utterances)\n\n" + format_table(summary, metrics_list))
        atomic_write_text(out_dir / "table.md", table + "\n")
        mark_done(marker, inputs, settings=settings)
        tables.append(table + "\n")
    print("\n".join(tables), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
