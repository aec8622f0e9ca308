"""Time to make a training batch with dynamic mixing: source files read each time vs kept in memory.

Usage:

    python benchmarks/benchmark_data.py                          # conf/demo.yml on data/demo
    python benchmarks/benchmark_data.py --conf conf/demo.yml --data-dir data/demo --batches 60

The demo trains with ``data.num_workers: 0``, so the training process makes each batch
itself, on one core, between two compiled steps: this time adds to every step. Both
datasets (``data.cache_sources`` false and true) are built from the config, the cached one
is first filled by drawing mixtures until every source file has been read once (what the
first epochs of a run do), then the two alternate in rounds of ``--batches`` batches and
the median round is printed, so a drift in machine load hits both alike. Also checks that
both make the same batches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", default="conf/demo.yml")
    p.add_argument("--data-dir", default="data/demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--batches", type=int, default=30, help="batches per timed round")
    p.add_argument("--repeats", type=int, default=5, help="rounds per dataset; the median is printed")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    from local.config import ConfigError, load_config
    from local.data import DynamicMixingDataset, split_dir

    torch.set_num_threads(1)  # what the training process leaves the data: its own thread
    try:
        conf = load_config(args.conf, args.overrides)
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    c = conf["data"]
    if not c["dynamic_mixing"]:
        raise SystemExit(f"error: {args.conf}: data.dynamic_mixing is false; this benchmark times dynamic mixing")
    split = split_dir(args.data_dir, c, c["train_set"])
    if not (split / "mix.json").is_file():
        raise SystemExit(f"error: {split / 'mix.json'} not found: run ./run.sh --stage 0 --stop-stage 0 first")
    sets = {cached: DynamicMixingDataset(split, c["n_src"], c["sample_rate"], c["segment"], c["min_segment"],
                                         c["dm_snr_range"], epoch_size=10**9, speed_range=c["dm_speed_range"],
                                         cache_sources=cached)
            for cached in (False, True)}
    cached = sets[True]
    start, key = time.perf_counter(), 0
    while len(cached._cache) < len(cached.sources) and key < 50 * len(cached.sources):
        cached[key]
        key += 1
    fill_s = time.perf_counter() - start
    size_mb = sum(a.nbytes for a in cached._cache.values()) / 1e6
    batch = c["batch_size"]
    for k in range(key, key + batch):  # the same mixtures either way
        assert all(torch.equal(a, b) for a, b in zip(sets[False][k], cached[k])), k
    rounds: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.repeats):
        for is_cached, ds in sets.items():
            first = key + r * args.batches * batch
            t0 = time.perf_counter()
            for k in range(first, first + args.batches * batch):
                ds[k]
            rounds[is_cached].append((time.perf_counter() - t0) / args.batches * 1000)
    plain_ms, cached_ms = (statistics.median(rounds[x]) for x in (False, True))
    print(f"{args.conf} on {split}: batches of {batch} x {c['segment']} s, speed perturbation "
          f"{c['dm_speed_range']}, one thread")
    print(f"cache filled in {fill_s:.1f} s ({key} mixtures drawn): {len(cached._cache)} files, {size_mb:.0f} MB")
    print("| sources | ms per batch |")
    print("|---|---:|")
    print(f"| read from the files | {plain_ms:.1f} |")
    print(f"| kept in memory (data.cache_sources) | {cached_ms:.1f} |")
    print(f"speed-up {plain_ms / cached_ms:.2f}x, {plain_ms - cached_ms:.1f} ms saved per training step; same batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
