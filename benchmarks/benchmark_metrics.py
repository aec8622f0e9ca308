"""Benchmark the evaluation metrics: ``local.metrics`` against asteroid's ``get_metrics``.

Scores the same test utterances with both, one process and one thread each, and
prints utterances per second for both, the ratio, and the largest absolute
difference per metric (mixture and estimate). The estimates are the oracle IRM
of ``local.oracle`` (a realistic separation output that needs no trained model);
loading audio and separating are not timed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/benchmark_metrics.py --data-dir data/demo --n-utts 100
    .venv/bin/python benchmarks/benchmark_metrics.py --data-dir data/wsj0-2mix --metrics si_sdr sdr sir sar stoi

Exit status 1 when a metric differs from asteroid's by more than ``--tolerance``
(0.01 dB; 0.001 for STOI).
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data/demo", help="corpus folder (its test split is used)")
    p.add_argument("--test-set", default="tt")
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--mode", default="min")
    p.add_argument("--n-src", type=int, default=2)
    p.add_argument("--n-utts", type=int, default=100, help="first N utterances of the split")
    p.add_argument("--metrics", nargs="+", default=["si_sdr", "sdr", "stoi"],
                   help="metrics to compute (the evaluation stage's default: si_sdr sdr stoi)")
    p.add_argument("--tolerance", type=float, default=0.01, help="dB; STOI uses tolerance / 10")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p


def load_utterances(args) -> list[tuple]:
    """(name, mix, sources, estimate) as float32 numpy, as the evaluation stage sees them."""
    from local.data import MixtureDataset, split_dir
    from local.oracle import oracle_separate

    conf = {"sample_rate": args.sample_rate, "mode": args.mode}
    folder = split_dir(args.data_dir, conf, args.test_set)
    if not (folder / "mix.json").is_file():
        raise SystemExit(f"error: {folder / 'mix.json'} not found: prepare the corpus first")
    ds = MixtureDataset(folder, args.n_src, args.sample_rate, segment=None, return_name=True)
    out = []
    for i in range(min(args.n_utts, len(ds))):
        mix, sources, name = ds[i]
        est = oracle_separate(mix.double(), sources.double(), args.sample_rate, "irm").float()
        out.append((name, mix.numpy(), sources.numpy(), est.numpy()))
    return out


def run(args) -> dict:
    import torch
    from asteroid.metrics import get_metrics

    from local.metrics import compute_metrics

    torch.set_num_threads(1)
    utts = load_utterances(args)
    seconds = sum(u[1].shape[-1] for u in utts) / args.sample_rate
    # one warm-up utterance each (imports, FFT plans), not timed
    compute_metrics(utts[0][1], utts[0][2], utts[0][3], args.sample_rate, args.metrics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_metrics(utts[0][1][None], utts[0][2], utts[0][3], sample_rate=args.sample_rate,
                    metrics_list=args.metrics, average=False)
        t0 = time.perf_counter()
        ref = [get_metrics(mix[None], src, est, sample_rate=args.sample_rate, metrics_list=args.metrics,
                           average=False) for _, mix, src, est in utts]
        t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = [compute_metrics(mix, src, est, args.sample_rate, args.metrics) for _, mix, src, est in utts]
    t_ours = time.perf_counter() - t0
    diffs = {}
    for r, o in zip(ref, ours):
        for key in o:
            d = float(np.max(np.abs(np.ravel(r[key]) - o[key])))
            diffs[key] = max(diffs.get(key, 0.0), d)
    return {"n_utts": len(utts), "audio_seconds": seconds, "metrics": args.metrics,
            "asteroid_utt_per_s": len(utts) / t_ref, "ours_utt_per_s": len(utts) / t_ours,
            "ratio": t_ref / t_ours, "max_abs_diff": diffs}


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    res = run(args)
    print(f"{res['n_utts']} utterances ({res['audio_seconds']:.0f} s of mixture audio), metrics "
          f"{' '.join(res['metrics'])}, one process, one thread")
    print(f"| implementation | utterances/s |\n|---|---|\n"
          f"| asteroid get_metrics (mir_eval, pystoi) | {res['asteroid_utt_per_s']:.2f} |\n"
          f"| local.metrics (fast_bss_eval, vectorised STOI) | {res['ours_utt_per_s']:.2f} |\n"
          f"| ratio | {res['ratio']:.1f}x |")
    print("\n| metric | max abs difference |\n|---|---|")
    ok = True
    for key, d in res["max_abs_diff"].items():
        tol = args.tolerance / 10 if "stoi" in key else args.tolerance
        ok &= d <= tol
        print(f"| {key} | {d:.2e}{'' if d <= tol else '  (over tolerance)'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
