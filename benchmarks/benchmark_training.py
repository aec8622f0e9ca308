"""Training throughput and peak memory: the recipe's model vs asteroid's stock ConvTasNet.

Both models are built with the same hyperparameters (from ``--conf``, the paper's best
configuration by default) and trained with the same step on the same random batches:
forward, PIT negative SI-SNR, backward, gradient clipping at the config's value, Adam.
Prints seconds of audio trained per second of wall time and peak memory for each, and
the ratio recipe / stock (throughput above 1.0 means the recipe's model trains faster;
memory above 1.0 means it needs more).

Usage:

    python benchmarks/benchmark_training.py                   # paper_best, config batch/segment
    python benchmarks/benchmark_training.py --quick           # tiny batch, few steps (CPU smoke run)
    python benchmarks/benchmark_training.py --device cuda --precision bf16-mixed --batch-size 8

Method: every measurement runs in a fresh Python process (so CPU peak memory, read as the
process's peak resident set size above its size just before the model is built, belongs to
one model only; on CUDA it is ``torch.cuda.max_memory_allocated``). The two models alternate
(recipe, stock, recipe, stock ...) for ``--repeats`` rounds and the median is reported, so
drifts in machine load hit both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("recipe", "stock")
LABELS = {"recipe": "recipe ConvTasNetVariant", "stock": "asteroid ConvTasNet (stock)"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", default=str(REPO / "conf" / "paper_best.yml"))
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's data.batch_size")
    p.add_argument("--segment", type=float, default=None, help="seconds; default: the config's data.segment")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=None, help="alternating rounds, median reported [3; 1 with --quick]")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="32-true", choices=("32-true", "16-mixed", "bf16-mixed"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile both models' forward as training.compile does (local.system.compile_forward; "
                        "a compile failure is an error here, never a silent eager fallback)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which models to measure")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 1, 0.5 s segments, 2 steps after 1 warm-up, 1 round unless --repeats")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    return p


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(which: str, conf: dict):
    from local.model import make_model

    if which == "recipe":
        return make_model(conf)
    from asteroid.models import ConvTasNet

    fb, mn = conf["filterbank"], conf["masknet"]
    if fb["who_is_pinv"] is not None:
        raise SystemExit("error: stock ConvTasNet has no who_is_pinv; benchmark a config without it")
    return ConvTasNet(
        n_src=conf["data"]["n_src"], sample_rate=conf["data"]["sample_rate"],
        n_filters=fb["n_filters"], kernel_size=fb["kernel_size"], stride=fb["stride"],
        encoder_activation=None if fb["encoder_activation"] == "linear" else fb["encoder_activation"],
        bn_chan=mn["bn_chan"], hid_chan=mn["hid_chan"], skip_chan=mn["skip_chan"],
        conv_kernel_size=mn["conv_kernel_size"], n_blocks=mn["n_blocks"], n_repeats=mn["n_repeats"],
        norm_type=mn["norm_type"], mask_act=mn["mask_act"], causal=mn["causal"],
    )


def measure(which: str, args) -> dict:
    """One measurement in this process: warm-up, then timed training steps."""
    import torch
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

    from local.config import load_config

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    conf = load_config(args.conf)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    rate, n_src = conf["data"]["sample_rate"], conf["data"]["n_src"]
    n = int(round(args.segment * rate))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, n, generator=gen), torch.randn(args.batch_size, n_src, n, generator=gen))
               for _ in range(2)]
    batches = [(m.to(device), s.to(device)) for m, s in batches]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mib()
    torch.manual_seed(0)
    model = build(which, conf).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=conf["optim"]["lr"])
    forward = model
    if args.compile:
        from local.system import compile_forward

        forward = compile_forward(model, fallback=False)
        if forward is None:
            raise SystemExit("error: --compile needs a C++ compiler (g++ or clang++) for torch.compile")
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "16-mixed" else None
    clip = conf["training"]["gradient_clip_val"]

    def step(i: int) -> None:
        mix, src = batches[i % 2]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_func(forward(mix), src)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    for i in range(args.warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {
        "model": which,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "audio_seconds_per_second": args.steps * args.batch_size * args.segment / elapsed,
        "seconds_per_step": elapsed / args.steps,
        "peak_memory_mib": peak,
    }


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.quick:
        args.batch_size, args.segment, args.steps, args.warmup = 1, 0.5, 2, 1
        args.repeats = args.repeats or 1
    args.repeats = args.repeats or 3
    if args.batch_size is None or args.segment is None:
        from local.config import load_config

        data = load_config(args.conf)["data"]
        args.batch_size = args.batch_size or data["batch_size"]
        args.segment = args.segment or data["segment"]
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return 0

    passthrough = ["--conf", args.conf, "--batch-size", str(args.batch_size), "--segment", str(args.segment),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
                   "--precision", args.precision, "--threads", str(args.threads)] + (["--compile"] if args.compile else [])
    models = [m for m in MODELS if m in args.models]
    runs: dict[str, list[dict]] = {m: [] for m in models}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for _ in range(args.repeats):
        for which in models:
            res = subprocess.run([sys.executable, __file__, *passthrough, "--child", which], env=env,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"error: measuring {which} failed:\n{res.stderr[-3000:]}")
            runs[which].append(json.loads(res.stdout.strip().splitlines()[-1]))

    summary = {}
    for which in models:
        summary[which] = {
            "parameters": runs[which][0]["parameters"],
            "audio_seconds_per_second": statistics.median(r["audio_seconds_per_second"] for r in runs[which]),
            "peak_memory_mib": statistics.median(r["peak_memory_mib"] for r in runs[which]),
            "runs": runs[which],
        }
    ratio = None
    if len(models) == 2:
        r, s = summary["recipe"], summary["stock"]
        ratio = {"throughput": r["audio_seconds_per_second"] / s["audio_seconds_per_second"],
                 "peak_memory": r["peak_memory_mib"] / s["peak_memory_mib"] if s["peak_memory_mib"] > 0 else None}

    import torch

    threads = args.threads or torch.get_num_threads()
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
             else f"cpu ({threads} threads, {os.cpu_count()} cores visible)")
    mem_kind = "peak allocated" if args.device.startswith("cuda") else "peak RSS increase"
    print(f"config: {args.conf}")
    print(f"device: {where}; precision {args.precision}{', compiled' if args.compile else ''}; batch {args.batch_size} x {args.segment:g} s; "
          f"{args.steps} timed steps after {args.warmup} warm-up; median of {args.repeats} alternating rounds")
    print(f"{'model':<30} {'params':>9} {'audio s/s':>10} {'s/step':>8} {mem_kind + ' MiB':>24}")
    for which in models:
        row = summary[which]
        per_step = statistics.median(x["seconds_per_step"] for x in row["runs"])
        print(f"{LABELS[which]:<30} {row['parameters'] / 1e6:>8.2f}M {row['audio_seconds_per_second']:>10.2f} "
              f"{per_step:>8.3f} {row['peak_memory_mib']:>24.1f}")
    if ratio is not None:
        mem = f"{ratio['peak_memory']:.2f}" if ratio["peak_memory"] is not None else "n/a"
        print(f"ratio recipe / stock: throughput {ratio['throughput']:.2f}x, peak memory {mem}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "device": where, "results": summary,
                                               "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
