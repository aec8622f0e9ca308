"""Forward+backward time of asteroid's PReLU, gLN and depthwise conv layers vs local.fast_ops' versions.

Usage:

    python benchmarks/benchmark_tcn_ops.py                 # demo shape: batch 8, 128 channels, 2 s at 4 ms hop
    python benchmarks/benchmark_tcn_ops.py --threads 1 --batch-size 4

Prints milliseconds per forward+backward call (median of --repeats rounds) and the
speed-up. The whole-step effect on a model is measured by
``benchmarks/benchmark_training.py --conf conf/demo.yml`` (recipe model vs stock asteroid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_ms  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--frames", type=int, default=499)
    p.add_argument("--calls", type=int, default=30, help="timed calls per round")
    p.add_argument("--repeats", type=int, default=5, help="rounds; the median is printed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def time_layer(layer, x, calls: int, repeats: int) -> float:
    grad = torch.ones_like(x)
    return median_ms(lambda: layer(x).backward(grad), calls, repeats)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    global torch
    import torch
    from asteroid.masknn.norms import GlobLN

    from local.fast_ops import FastDepthwiseConv1d, FastGlobLN, FastPReLU

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.batch_size, args.channels, args.frames, requires_grad=True)
    c = args.channels
    depthwise = dict(kernel_size=3, padding=8, dilation=8, groups=c)  # a TCN block's dilated conv (d=8)
    dw_ref = torch.nn.Conv1d(c, c, **depthwise)
    dw_fast = FastDepthwiseConv1d(c, c, **depthwise)
    dw_fast.load_state_dict(dw_ref.state_dict())
    pairs = [("PReLU", torch.nn.PReLU(), FastPReLU()),
             ("gLN", GlobLN(c), FastGlobLN(c)),
             ("dwconv", dw_ref, dw_fast)]
    print(f"input {tuple(x.shape)}, {torch.get_num_threads()} thread(s), forward+backward per call")
    print(f"{'layer':8s} {'asteroid/torch ms':>18s} {'fast ms':>9s} {'speed-up':>9s}")
    for name, ref, fast in pairs:
        t_ref = time_layer(ref, x, args.calls, args.repeats)
        t_fast = time_layer(fast, x, args.calls, args.repeats)
        print(f"{name:8s} {t_ref:18.3f} {t_fast:9.3f} {t_ref / t_fast:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
