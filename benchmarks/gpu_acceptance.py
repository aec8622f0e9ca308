"""The GPU acceptance table: training throughput and evaluation speed of paper_best on one device.

Rows (each from ``benchmarks/benchmark_training.py`` in fresh processes, so peak memory
belongs to one model): stock asteroid ``ConvTasNet`` and the recipe's model in fp32,
the recipe in bf16-mixed (and stock beside it), the recipe compiled; then evaluation
speed: test-set-like mixtures separated one by one with the inference path of
``local.evaluate``, as utterances per second and real-time factor.

    python benchmarks/gpu_acceptance.py --device cuda --out exp/gpu_acceptance.md
    python benchmarks/gpu_acceptance.py --device cpu --quick      # the CPU dry run CI makes

``benchmarks/gpu_acceptance.sh`` wraps it with the environment set-up and the GPU tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, benchmark_training.py options); each row measures the models it names.
TRAINING_ROWS = [
    ("fp32", ["--precision", "32-true", "--models", "recipe", "stock"]),
    ("bf16-mixed", ["--precision", "bf16-mixed", "--models", "recipe", "stock"]),
    ("fp32, torch.compile", ["--precision", "32-true", "--compile", "--models", "recipe"]),
]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (the acceptance run) or cpu (a dry run)")
    p.add_argument("--conf", default=str(REPO / "conf" / "paper_best.yml"))
    p.add_argument("--quick", action="store_true", help="a dry run: tiny batches and few steps, no compile")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    p.add_argument("--eval-utts", type=int, default=40, help="mixtures separated for the evaluation speed")
    p.add_argument("--eval-seconds", type=float, default=6.0, help="length of each (wsj0-2mix tt: ~6 s)")
    p.add_argument("--out", default=str(REPO / "exp" / "gpu_acceptance.md"), help="the table is also written here")
    return p


def training_row(args, options: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(REPO / "benchmarks" / "benchmark_training.py"), "--conf", args.conf,
               "--device", args.device, "--repeats", "1", "--json", str(out), *options]
        cmd += ["--quick"] if args.quick else ["--steps", str(args.steps)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        if res.returncode != 0:
            return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(out.read_text())


def evaluation_speed(args) -> dict:
    """Separate ``eval_utts`` random mixtures one at a time, as local.evaluate does (inference mode)."""
    import torch

    from local.config import load_config
    from local.model import make_model

    conf = load_config(args.conf)
    device = torch.device(args.device)
    model = make_model(conf).to(device).eval()
    n_utts, seconds = (3, 1.0) if args.quick else (args.eval_utts, args.eval_seconds)
    n = int(seconds * conf["data"]["sample_rate"])
    gen = torch.Generator().manual_seed(0)
    mixtures = [torch.randn(1, n, generator=gen) for _ in range(n_utts)]
    with torch.inference_mode():
        model(mixtures[0].to(device))  # warm-up (cuDNN algorithm choice)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for mix in mixtures:
            model(mix.to(device)).cpu()  # estimates come back to the host, as in scoring
        elapsed = time.perf_counter() - start
    return {"utterances": n_utts, "seconds_each": seconds, "utterances_per_s": n_utts / elapsed,
            "real_time_factor": elapsed / (n_utts * seconds)}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"CPU {model} ({os.cpu_count()} cores)"


def format_table(device: str, conf_name: str, rows: list[tuple[str, dict]], evaluation: dict) -> str:
    ok = [(label, r) for label, r in rows if "error" not in r]
    stock_fp32 = next((r["results"]["stock"]["audio_seconds_per_second"] for label, r in ok
                       if label == "fp32" and "stock" in r["results"]), None)
    lines = [f"GPU acceptance on {device}: {conf_name}", "",
             "| training | model | audio s / s | s / step | peak memory (MiB) | vs stock fp32 |",
             "|---|---|---|---|---|---|"]
    for label, result in rows:
        if "error" in result:
            lines.append(f"| {label} | - | failed: {result['error']} | | | |")
            continue
        for which, r in result["results"].items():
            speed = r["audio_seconds_per_second"]
            ratio = f"{speed / stock_fp32:.2f}x" if stock_fp32 else "n/a"
            name = "recipe" if which == "recipe" else "asteroid ConvTasNet (stock)"
            per_step = min(x["seconds_per_step"] for x in r["runs"])
            lines.append(f"| {label} | {name} | {speed:.1f} | {per_step:.3f} | {r['peak_memory_mib']:.0f} | {ratio} |")
    lines += ["", "| evaluation (inference mode, one utterance at a time) | utterances / s | real-time factor |",
              "|---|---|---|",
              f"| {evaluation['utterances']} mixtures of {evaluation['seconds_each']:g} s | "
              f"{evaluation['utterances_per_s']:.1f} | {evaluation['real_time_factor']:.4f} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no GPU is visible; for a dry run use --device cpu --quick")
    rows = [(label, training_row(args, options)) for label, options in TRAINING_ROWS
            if not (args.quick and "--compile" in options)]
    table = format_table(device_name(args.device), Path(args.conf).name, rows, evaluation_speed(args))
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    failed = [label for label, r in rows if "error" in r]
    if failed:
        print(f"error: training rows failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
