"""Benchmark the wsj0-mix mixing step: mixtures per second with 1 and N worker processes.

Builds a synthetic WSJ0-like tree (16 kHz 16-bit wav utterances whose durations follow WSJ0's
si_tr_s: mean 7.6 s, s.d. 2.6 s, clipped to 1.5..20 s), a MERL-format mix list over it, and times
:func:`local.mixing.create_mixtures` (read, resample, P.56, mix, write) for each ``--nj``.
Prints mixtures/s, seconds of mixture audio made per second, and the estimated wall time for the
28,000 mixtures of wsj0-2mix (20000 + 5000 + 3000) with the same rates and modes.  Source
conversion (sph2pipe) is not included: it is I/O bound and done once per utterance.

    .venv/bin/python egs/wsj0-2mix/benchmark_mixing.py --n-sources 300 --n-mixtures 200 --nj 1 4
    .venv/bin/python egs/wsj0-2mix/benchmark_mixing.py --sample-rates 8000 16000 --modes min max

Every worker runs with one BLAS/OpenMP thread (set before numpy is imported).
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local.metadata import split_path  # noqa: E402
from local.mixing import MixEntry, create_mixtures  # noqa: E402

__all__ = ["FULL_MIXTURES", "make_synthetic_tree", "make_mix_entries", "run_benchmark", "main"]

#: wsj0-2mix (and wsj0-3mix): 20000 tr + 5000 cv + 3000 tt.
FULL_MIXTURES = 28000
FS = 16000
DUR_MEAN_S, DUR_SD_S, DUR_MIN_S, DUR_MAX_S = 7.6, 2.6, 1.5, 20.0


def _utterance(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f0 = rng.uniform(90, 220)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t), 0, None) ** 1.5
    x = env * (0.3 * voiced + 0.2 * rng.standard_normal(n))
    margin = np.zeros(int(0.3 * FS))
    x = np.concatenate([margin, x, margin]) + 1e-4 * rng.standard_normal(n + 2 * margin.size)
    return x / np.max(np.abs(x)) * rng.uniform(0.1, 0.8)


def make_synthetic_tree(root: Path, n_sources: int, seed: int = 0) -> List[str]:
    """Write ``n_sources`` utterances as ``root/wsj0/si_tr_s/<spk>/<utt>.wav``; returns their list paths."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_sources):
        spk = f"{i // 20:03x}"
        rel = f"wsj0/si_tr_s/{spk}/{spk}c{i % 20:04d}.wav"
        dur = float(np.clip(rng.normal(DUR_MEAN_S, DUR_SD_S), DUR_MIN_S, DUR_MAX_S))
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), _utterance(rng, dur), FS, subtype="PCM_16")
        paths.append(rel)
    return paths


def make_mix_entries(paths: Sequence[str], n_mixtures: int, n_src: int = 2, seed: int = 0) -> List[MixEntry]:
    """Random distinct mixtures of ``n_src`` different utterances, MERL-style SNRs (0..2.5 dB, then -snr)."""
    rng = np.random.default_rng(seed + 1)
    out, seen = [], set()
    while len(out) < n_mixtures:
        idx = tuple(int(i) for i in rng.choice(len(paths), size=n_src, replace=False))
        if idx in seen:
            continue
        seen.add(idx)
        snr = f"{rng.uniform(0, 2.5):.5g}"
        snrs = [snr, f"-{snr}"] + ["0"] * (n_src - 2)
        out.append(MixEntry(tuple((paths[i], s) for i, s in zip(idx, snrs))))
    return out


def run_benchmark(
    workdir: Path, n_sources: int, n_mixtures: int, njs: Sequence[int], sample_rates=(8000,), modes=("min",),
    n_src: int = 2, seed: int = 0, log=print,
) -> Dict:
    """Build the synthetic tree once, then time ``create_mixtures`` for each ``nj``."""
    import soundfile as sf

    workdir = Path(workdir)
    src_root = workdir / "sources"
    t0 = time.perf_counter()
    paths = make_synthetic_tree(src_root, n_sources, seed)
    entries = make_mix_entries(paths, n_mixtures, n_src, seed)
    log(f"synthetic tree: {n_sources} utterances, {n_mixtures} mixtures of {n_src} "
        f"({time.perf_counter() - t0:.1f} s to build)")
    results = []
    for nj in njs:
        out = workdir / f"out_nj{nj}"
        if out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        create_mixtures(entries, src_root, out, "tr", sample_rates=tuple(sample_rates), modes=tuple(modes),
                        nj=nj, progress=False, p56_pad_zeros=True)
        dt = time.perf_counter() - t0
        rate = sorted(sample_rates)[0]
        mix_dir = split_path(out, rate, modes[0], "tr") / "mix"
        audio_s = sum(sf.info(str(p)).frames for p in mix_dir.glob("*.wav")) / rate
        res = {
            "nj": nj,
            "seconds": round(dt, 3),
            "mixtures_per_s": round(n_mixtures / dt, 3),
            "audio_s_per_s": round(audio_s / dt, 2),
            "estimated_full_hours": round(FULL_MIXTURES / (n_mixtures / dt) / 3600, 2),
        }
        results.append(res)
        log(f"nj={nj}: {n_mixtures} mixtures in {dt:.2f} s = {res['mixtures_per_s']:.2f} mixtures/s "
            f"({res['audio_s_per_s']:.1f} s of {modes[0]} mixture audio per s); estimated wall time for "
            f"{FULL_MIXTURES} mixtures: {res['estimated_full_hours']:.2f} h")
        shutil.rmtree(out)
    return {
        "n_sources": n_sources, "n_mixtures": n_mixtures, "n_src": n_src, "sample_rates": list(sample_rates),
        "modes": list(modes), "cpu_count": os.cpu_count(), "results": results,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n-sources", type=int, default=300, help="synthetic utterances")
    p.add_argument("--n-mixtures", type=int, default=200, help="mixtures timed per run")
    p.add_argument("--nj", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                   help="worker counts to time")
    p.add_argument("--n-src", type=int, default=2, choices=(2, 3))
    p.add_argument("--sample-rates", type=int, nargs="+", default=[8000])
    p.add_argument("--modes", nargs="+", default=["min"])
    p.add_argument("--workdir", help="where to build the tree [default: a temporary folder, removed]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args(argv)
    if args.n_mixtures < 1 or args.n_sources < args.n_src:
        p.error("need --n-mixtures >= 1 and --n-sources >= --n-src")
    tmp = None
    workdir = Path(args.workdir) if args.workdir else Path(tmp := tempfile.mkdtemp(prefix="wsj0mix-bench-"))
    try:
        res = run_benchmark(workdir, args.n_sources, args.n_mixtures, args.nj, args.sample_rates, args.modes,
                            args.n_src, args.seed)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
