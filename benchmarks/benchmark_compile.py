"""Training-step time of a config's model, eager vs ``torch.compile`` (``training.compile``).

Usage:

    python benchmarks/benchmark_compile.py                              # conf/demo.yml, torch's threads
    python benchmarks/benchmark_compile.py --threads 1 --set data.batch_size=8
    python benchmarks/benchmark_compile.py --conf conf/paper_best.yml --set data.segment=1.0
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/benchmark_compile.py --profile 12

A step is what training does: forward, PIT negative SI-SNR, backward and an Adam
update, on random input of the config's batch size and segment length. Prints
the time of the first compiled step (the compilation), milliseconds per step
(median of --repeats rounds) and the speed-up, and checks that the compiled
model computes the same loss as the eager one. ``--profile K`` then prints where the time of
the eager and of the compiled step goes (torch.profiler, the K operators of largest self CPU
time): the way to see which kernels an ISA (``ATEN_CPU_CAPABILITY=avx2``) makes slow.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_ms  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", default="conf/demo.yml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the median is printed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also print the K operators of largest self CPU time of each step (0: no profile)")
    return p


def make_step(model, forward, loss_func, mix, sources):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        optimizer.zero_grad()
        loss = loss_func(forward(mix), sources)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    global torch
    import torch
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

    from local.config import load_config
    from local.model import make_model
    from local.system import compile_forward

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    conf = load_config(args.conf, args.overrides)
    torch.manual_seed(0)
    eager = make_model(conf)
    compiled_model = copy.deepcopy(eager)
    forward = compile_forward(compiled_model)
    if forward is None:
        raise SystemExit("error: torch.compile is not usable here (no C++ compiler); nothing to compare")
    batch, seg = conf["data"]["batch_size"], int(conf["data"]["segment"] * conf["data"]["sample_rate"])
    mix = torch.randn(batch, seg)
    sources = torch.randn(batch, conf["data"]["n_src"], seg)
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")

    with torch.no_grad():
        ref = float(loss_func(eager(mix), sources))
    start = time.perf_counter()
    got = float(loss_func(forward(mix), sources).detach())
    first = time.perf_counter() - start
    print(f"{args.conf} {' '.join(args.overrides)}: {eager.n_parameters() / 1e6:.2f}M parameters, "
          f"batch {batch} x {conf['data']['segment']} s, {torch.get_num_threads()} thread(s)")
    print(f"first compiled forward (compilation): {first:.1f} s; loss eager {ref:.6f}, compiled {got:.6f}")
    if abs(ref - got) > 1e-3 * max(1.0, abs(ref)):
        raise SystemExit("error: the compiled model does not compute the eager model's loss")
    t_eager = median_ms(make_step(eager, eager, loss_func, mix, sources), args.steps, args.repeats)
    t_comp = median_ms(make_step(compiled_model, forward, loss_func, mix, sources), args.steps, args.repeats)
    print(f"{'':10s} {'ms/step':>9s} {'steps/s':>8s}")
    print(f"{'eager':10s} {t_eager:9.1f} {1000 / t_eager:8.2f}")
    print(f"{'compiled':10s} {t_comp:9.1f} {1000 / t_comp:8.2f}")
    print(f"speed-up: {t_eager / t_comp:.2f}x")
    if args.profile:
        for name, step in (("eager", make_step(eager, eager, loss_func, mix, sources)),
                           ("compiled", make_step(compiled_model, forward, loss_func, mix, sources))):
            print_profile(name, step, args.steps, args.profile)
    return 0


def print_profile(name: str, step, steps: int, top: int) -> None:
    """The ``top`` operators of largest self CPU time over ``steps`` steps, in ms per step."""
    from torch.profiler import ProfilerActivity, profile

    step()  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) / 1000 / steps
    print(f"\nprofile of the {name} step: {total:.1f} ms of operator self time per step; largest:")
    for e in rows[:top]:
        ms = e.self_cpu_time_total / 1000 / steps
        print(f"  {ms:8.2f} ms {100 * ms / total:5.1f}%  {e.count // steps:4d} calls  {e.key}")


if __name__ == "__main__":
    sys.exit(main())
