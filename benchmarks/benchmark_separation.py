"""Speed and memory of separation on this machine (CPU).

Usage:

    python benchmarks/benchmark_separation.py            # the full figures (several minutes)
    python benchmarks/benchmark_separation.py --quick    # shorter inputs, same measurements (~1 min)

Prints:
1. offline real-time factor (RTF = processing time / audio duration) of the
   paper_best model (``conf/paper_best.yml``) on one thread and on all threads;
2. time per frame (TPF) of the causal paper model (``conf/paper_best_causal.yml``)
   in streaming mode (``local.streaming.StreamingSeparator``) on one thread,
   for chunks of 1, 8 and 32 encoder hops, with the algorithmic latency of each
   (the paper: 0.4 ms per 2 ms frame on one i7-5820K core);
3. peak memory (max RSS of a fresh process) of chunked separation
   (``local.separate.separate_array``) of a 10-minute input, and of a shorter
   one, to show that it does not grow with the length.

Weights are random (speed does not depend on them); ``--model`` benchmarks an
export folder instead of paper_best. Timings are medians of ``--repeats`` runs.
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def build(conf_path: str, model_dir: str | None = None):
    import torch

    if model_dir:
        from local.separate import load_separator

        return load_separator(model_dir)
    from local.config import load_config
    from local.model import make_model

    torch.manual_seed(0)
    return make_model(load_config(REPO / conf_path)).eval()


def offline_rtf(model, seconds: float, threads: int, repeats: int) -> float:
    import torch

    torch.set_num_threads(threads)
    x = torch.randn(1, int(seconds * model.sample_rate))
    times = []
    with torch.inference_mode():
        model(x[:, : int(model.sample_rate)])  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / seconds


def streaming_tpf(model, chunk_hops: int, seconds: float, repeats: int) -> tuple[float, float]:
    """(median time per frame in seconds, algorithmic latency in seconds), on one thread."""
    import torch

    from local.streaming import StreamingSeparator

    torch.set_num_threads(1)
    sep = StreamingSeparator(model)
    chunk = chunk_hops * sep.stride
    n_chunks = max(1, int(seconds * model.sample_rate) // chunk)
    x = torch.randn(1, (n_chunks + 1) * chunk)
    sep.process(x[:, :chunk])  # fills the first window: no frame yet at one hop
    per_frame = []
    for _ in range(repeats):
        sep.reset()
        sep.process(x[:, :chunk])
        t0 = time.perf_counter()
        for i in range(1, n_chunks + 1):
            sep.process(x[:, i * chunk:(i + 1) * chunk])
        per_frame.append((time.perf_counter() - t0) / (n_chunks * chunk_hops))
    return statistics.median(per_frame), sep.algorithmic_latency(chunk_hops)


def memory_child(args) -> None:
    """Run in a fresh process: separate ``--minutes`` of noise, print max RSS in MiB as JSON."""
    import numpy as np
    import torch

    from local.separate import separate_array

    torch.set_num_threads(args.threads)
    model = build(args.conf, args.model)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = int(model.sample_rate)
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(args.minutes * 60 * rate))).astype(np.float32)
    t0 = time.perf_counter()
    separate_array(model, audio, rate, window_s=args.window)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "model_loaded_mib": base, "seconds": elapsed}))


def peak_memory(minutes: float, window: float, args) -> dict:
    cmd = [sys.executable, __file__, "--_memory-child", "--minutes", str(minutes), "--window", str(window),
           "--conf", args.conf, "--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short inputs and one repeat (a smoke run)")
    p.add_argument("--conf", default="conf/paper_best.yml", help="offline model config")
    p.add_argument("--causal-conf", default="conf/paper_best_causal.yml", help="streaming model config")
    p.add_argument("--model", default=None, help="export folder to benchmark instead of --conf (random weights)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="'all threads' for the memory run")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the memory-test input")
    p.add_argument("--window", type=float, default=30.0, help="chunk window of the memory test, seconds")
    p.add_argument("--_memory-child", dest="memory_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return 0

    import torch

    repeats = args.repeats or (1 if args.quick else 3)
    offline_s = 4.0 if args.quick else 10.0
    stream_s = 0.5 if args.quick else 4.0
    minutes = 1.0 if args.quick else args.minutes
    window = 10.0 if args.quick else args.window
    all_threads = os.cpu_count() or 1
    print(f"torch {torch.__version__}, {all_threads} CPU threads, {'quick' if args.quick else 'full'} run")

    model = build(args.conf, args.model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n1. offline RTF, {args.model or args.conf} ({n_params / 1e6:.2f} M parameters), "
          f"{offline_s:g} s input, median of {repeats}")
    for threads in sorted({1, all_threads}):
        rtf = offline_rtf(model, offline_s, threads, repeats)
        print(f"   {threads:2d} thread(s): RTF {rtf:.3f}  ({1 / rtf:.1f}x real time)")

    causal = build(args.causal_conf)
    hop_ms = 1000 * causal.encoder.stride / causal.sample_rate
    frame_ms = 1000 * causal.encoder.filterbank.kernel_size / causal.sample_rate
    print(f"\n2. streaming TPF, {args.causal_conf}, 1 thread, {stream_s:g} s of audio per run, median of {repeats} "
          f"(hop {hop_ms:g} ms, frame {frame_ms:g} ms; paper: 0.4 ms per frame on one core)")
    for hops in (1, 8, 32):
        tpf, latency = streaming_tpf(causal, hops, stream_s, repeats)
        print(f"   chunk {hops:2d} hop(s) = {hops * hop_ms:4g} ms: TPF {1000 * tpf:.3f} ms, "
              f"algorithmic latency {1000 * latency:g} ms, real time: {'yes' if tpf < hop_ms / 1000 else 'no'}")

    print(f"\n3. peak memory (max RSS of a fresh process, {args.threads} threads), chunked with --window {window:g} s")
    for length in sorted({minutes / 4, minutes}):
        mem = peak_memory(length, window, args)
        print(f"   {length:g} min input: peak {mem['peak_mib']:.0f} MiB (model loaded: "
              f"{mem['model_loaded_mib']:.0f} MiB), RTF {mem['seconds'] / (60 * length):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
