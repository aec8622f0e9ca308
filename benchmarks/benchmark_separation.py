"""Speed, memory and exactness of every separation path, each measured in fresh processes.

Usage:

    python benchmarks/benchmark_separation.py [--out table.md]   # the full table (~30 minutes here)
    python benchmarks/benchmark_separation.py --quick            # small models and inputs (CI: seconds)
        [--conf conf/paper_best.yml] [--causal-conf conf/paper_best_causal.yml] [--rounds 3]
        [--device cpu|cuda] [--threads 1]

One markdown table (printed, and written to ``--out``), one row per path:

- ``asteroid ConvTasNet``: stock ``asteroid.models.ConvTasNet`` with the recipe model's weights;
- ``eager``: the training-time model (``local.model.ConvTasNetVariant``), as ``local.separate
  --backend eager`` runs it;
- ``fast``: :func:`local.inference.prepare_for_inference` (the default of ``local.separate``);
- ``TorchScript model.ts`` and ``ONNX Runtime model.onnx``: the export files (``local.export``);
- opt-in reduced precision (``fast bf16``, ``eager int8``): never the default; the
  difference column gives their output SNR against float32 instead.

Columns: offline real-time factor (processing time / audio duration, the minimum over
``--rounds`` fresh processes; paths alternate within a round) on 10 s and 60 s inputs,
the speed-up over stock asteroid, the peak memory of the fresh process (``ru_maxrss``:
interpreter, torch, model and one separation of that input), the largest output difference
from the training-time model (same input), and for the causal twin (``--causal-conf``) the
streaming time per frame (``local.streaming.StreamingSeparator``) at 1, 8 and 32 encoder hops
per call (the stream cut into chunks before the clock starts, as a live source hands each buffer
over, and the garbage collector off while timing, as ``timeit`` does) with its largest
difference from offline causal processing (engines: ``eager``,
``script`` = TorchScript, the default, ``onnx`` = ``model_stream.onnx``, and ``native`` = the
C step of ``local.native_step``, CPU only; its opt-in ``native-fp16``, ``native-int12`` and
``native-int8`` store the 1x1 convolutions' weights in half precision, as 12-bit or as 8-bit
integers with a scale per row (the encoder and decoder stay float32), and their difference column
gives the output SNR against offline float32 as well).
Weights are random (speed does not depend on them); ``--threads 1`` is one core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PATHS = ("stock", "eager", "fast", "torchscript", "onnx", "fast-bf16", "eager-int8", "native", "native-fp16",
         "native-int12", "native-int8")
LABELS = {"stock": "asteroid ConvTasNet (stock)", "eager": "eager (training-time model)",
          "fast": "fast (local.inference, default)", "torchscript": "TorchScript model.ts",
          "onnx": "ONNX Runtime model.onnx", "fast-bf16": "fast bf16 (opt-in)", "eager-int8": "eager int8 (opt-in)",
          "native": "C step (local.native_step, streaming only)",
          "native-fp16": "C step, fp16 weights (opt-in)", "native-int12": "C step, int12 weights (opt-in)",
          "native-int8": "C step, int8 weights (opt-in)"}
STREAM_ENGINE = {"eager": "eager", "torchscript": "script", "onnx": "onnx", "native": "native",
                 "native-fp16": "native-fp16", "native-int12": "native-int12", "native-int8": "native-int8"}
NATIVE = ("native", "native-fp16", "native-int12", "native-int8")  # the C step: CPU only
STREAM_ONLY = NATIVE  # no offline path of their own: their offline cells stay "-"
REDUCED = ("fast-bf16", "eager-int8", "native-fp16", "native-int12", "native-int8")  # reported as SNR against float32
HOPS = (1, 8, 32)


# ------------------------------------------------------------------ set-up (parent)
def make_exports(conf_path: str, folder: Path, causal: bool) -> None:
    """Random-weight package + the export files of ``conf_path`` into ``folder``."""
    import torch

    from local.config import load_config
    from local.export import write_safetensors_package, write_torchscript
    from local.model import make_model, serialize_model
    from local.onnx_export import offline_onnx_bytes, stream_onnx_bytes

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = make_model(load_config(REPO / conf_path)).eval()
    package = serialize_model(model)
    write_safetensors_package(package, folder / "model.safetensors")
    if causal:
        (folder / "model_stream.onnx").write_bytes(stream_onnx_bytes(model))
    else:
        write_torchscript(package, folder / "model.ts")
        (folder / "model.onnx").write_bytes(offline_onnx_bytes(model))


def build_path(path: str, folder: Path, device: str):
    """The callable of one path, on ``device``."""
    from local.separate import load_separator

    eager = load_separator(folder, device="cpu", backend="eager")
    if path == "stock":
        from asteroid.models import ConvTasNet

        from local.model import serialize_model

        package = serialize_model(eager)
        stock = ConvTasNet(**package["model_args"]).eval()
        stock.load_state_dict(package["state_dict"])
        return stock.to(device)
    if path == "eager":
        return eager.to(device)
    if path == "fast":
        return load_separator(folder, device=device, backend="fast")
    if path in ("torchscript", "onnx"):
        return load_separator(folder, device=device, backend=path)
    from local.inference import reduced_precision

    if device != "cpu":
        raise SystemExit(f"{path} is a CPU option")
    low, _ = reduced_precision(eager, "bf16" if path == "fast-bf16" else "int8")
    return low


def _noise(seconds: float, rate: int, seed: int = 1):
    import torch

    return 0.1 * torch.randn(1, int(seconds * rate), generator=torch.Generator().manual_seed(seed))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------ children (fresh processes)
def offline_child(args) -> dict:
    """Each of ``--path`` in turn (one, except in quick mode), the given input lengths: best time of
    ``--repeats`` runs, the peak RSS of the process so far, the outputs saved for the comparison."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    rate = int(json.loads((folder / "model.json").read_text())["model_args"]["sample_rate"])
    results = {}
    for path in args.path:
        model = build_path(path, folder, args.device)
        result = {}
        with torch.inference_mode():
            for _ in range(2):  # warm-up: allocator, kernels, onnxruntime's and TorchScript's first runs
                model(_noise(0.5, rate).to(args.device))
            _sync(args.device)
            for seconds in args.seconds:
                x = _noise(seconds, rate).to(args.device)
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = model(x)
                    _sync(args.device)
                    best = min(best, time.perf_counter() - t0)
                if args.save:
                    np.save(Path(args.save) / f"{path}_{seconds:g}.npy", out.float().cpu().numpy())
                result[f"{seconds:g}"] = best / seconds
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.device.startswith("cuda"):
            result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        results[path] = result
        del model
    return results


def stream_child(args) -> dict:
    """Each of ``--engine``: time per frame at each of ``--hops``, and the largest difference from offline."""
    import torch

    from local.inference import output_snr
    from local.separate import load_separator
    from local.streaming import StreamingSeparator, time_stream

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    model = load_separator(folder, device="cpu", backend="eager")
    rate = int(model.sample_rate)
    x = _noise(args.stream_seconds, rate)
    with torch.inference_mode():
        offline = model(x)[0]
    results = {}
    for engine in args.engine:
        source = str(folder / "model_stream.onnx") if engine == "onnx" else model
        sep = StreamingSeparator(source, device=args.device, engine=engine)
        result, max_diff, snr = {}, 0.0, float("inf")
        for hops in args.hops:
            best, online = time_stream(sep, x[0], hops, args.repeats)
            max_diff = max(max_diff, (online - offline).abs().max().item())
            if engine in REDUCED:
                snr = min(snr, output_snr(offline, online))
            result[str(hops)] = best * 1000
        result["max_diff"] = max_diff
        if engine in REDUCED:
            result["snr_db"] = snr
        if engine == "script":
            result["floor_ms"] = matvec_floor(model, args.device) * 1000
        results[engine] = result
    return results


def matvec_floor(model, device: str) -> float:
    """Seconds per frame of the causal model's 1x1 convolutions alone at one frame per call (as matrix-
    vector products: every weight is read once per frame, so this is the memory-bandwidth floor of
    one-hop streaming on this machine)."""
    import torch

    weights = []
    for layer in model.masker.TCN:
        weights.append(layer.shared_block[0].weight[:, :, 0])
        out = [layer.res_conv.weight[:, :, 0]] + ([layer.skip_conv.weight[:, :, 0]] if model.masker.skip_chan else [])
        weights.append(torch.cat(out, 0))
    weights = [w.detach().to(device).contiguous() for w in weights]
    bn = model.masker.bn_chan
    x = torch.randn(1, bn, device=device)

    def run():
        r = x
        for i in range(0, len(weights), 2):
            r = torch.nn.functional.linear(torch.nn.functional.linear(r, weights[i]), weights[i + 1])[:, :bn]
        return r

    with torch.inference_mode():
        for _ in range(20):
            run()
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(50):
                run()
            _sync(device)
            best = min(best, (time.perf_counter() - t0) / 50)
    return best


def run_child(kind: str, args, **options) -> dict:
    cmd = [sys.executable, __file__, f"--_{kind}-child", "--threads", str(args.threads), "--device", args.device,
           "--repeats", str(options.pop("repeats", 1))]
    for key, value in options.items():
        if isinstance(value, (list, tuple)):
            cmd += [f"--{key.replace('_', '-')}", *map(str, value)]
        elif value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    names = options.get("path") or options.get("engine")
    if res.returncode != 0:
        error = {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
        return {name: error for name in names}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ table
def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def make_table(args, offline: dict, stream: dict, diffs: dict, header: str) -> str:
    import statistics

    lengths = [f"{s:g}" for s in args.seconds]
    cols = ([f"RTF {s} s" for s in lengths] + [f"x stock ({lengths[0]} s)"] + [f"peak MiB {s} s" for s in lengths]
            + ["max abs diff vs training-time model"] + [f"stream ms/frame {h} hop{'s' * (h > 1)}" for h in args.hops]
            + ["stream max abs diff"])
    lines = [header, "", "| path | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    stock_rtf = min((r[lengths[0]] for r in offline.get(("stock", lengths[0]), []) if lengths[0] in r), default=None)
    for path in args.paths:
        cells = []
        rtfs = {}
        for s in lengths:
            runs = [r for r in offline.get((path, s), []) if s in r]
            rtfs[s] = min((r[s] for r in runs), default=None)
            cells.append(_fmt(rtfs[s], ".3f", "failed" if offline.get((path, s)) else "-"))
        speed = stock_rtf / rtfs[lengths[0]] if stock_rtf and rtfs[lengths[0]] else None
        cells.append(_fmt(speed, ".2f"))
        for s in lengths:
            peaks = [r["peak_mib"] for r in offline.get((path, s), []) if "peak_mib" in r]
            cells.append(_fmt(statistics.median(peaks) if peaks else None, ".0f"))
        cells.append(diffs.get(path, "-"))
        engine = STREAM_ENGINE.get(path)
        runs = stream.get(engine, [])
        for h in args.hops:
            values = [r[str(h)] for r in runs if str(h) in r]
            cells.append(_fmt(min(values) if values else None, ".3f", "failed" if runs else "-"))
        snrs = [r["snr_db"] for r in runs if "snr_db" in r]
        diff = [r["max_diff"] for r in runs if "max_diff" in r]
        max_diff = _fmt(max(diff) if diff else None, ".1e")
        cells.append(f"SNR {min(snrs):.1f} dB (max abs diff {max_diff})" if snrs else max_diff)
        lines.append(f"| {LABELS[path]} | " + " | ".join(cells) + " |")
    floors = [r["floor_ms"] for r in stream.get("script", []) if "floor_ms" in r]
    if floors:
        lines += ["", f"One-hop floor: the causal model's 1x1 convolutions alone, as matrix-vector products at one "
                      f"frame per call, take {min(floors):.3f} ms per frame here (each weight is read once per frame)."]
    errors = sorted({r["error"] for rs in (*offline.values(), *stream.values()) for r in rs if "error" in r})
    lines += [""] + [f"error: {e}" for e in errors]
    return "\n".join(lines).rstrip() + "\n"


def output_diffs(save: Path, paths, seconds: float) -> dict:
    """Largest |output - training-time model output|, or the SNR (dB) of reduced precision."""
    import numpy as np
    import torch

    from local.inference import output_snr

    ref_path = save / f"eager_{seconds:g}.npy"
    if not ref_path.is_file():
        return {}
    ref = np.load(ref_path)
    out = {}
    for path in paths:
        file = save / f"{path}_{seconds:g}.npy"
        if not file.is_file():
            continue
        est = np.load(file)
        if path in REDUCED:
            out[path] = f"SNR {output_snr(torch.from_numpy(ref), torch.from_numpy(est)):.1f} dB"
        else:
            out[path] = f"{np.abs(est - ref).max():.1e}"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small models, short inputs, one round (CI)")
    p.add_argument("--conf", default=None, help="offline model config [conf/paper_best.yml; quick: conf/demo.yml]")
    p.add_argument("--causal-conf", default=None, help="streaming model config [conf/paper_best_causal.yml]")
    p.add_argument("--rounds", type=int, default=None, help="fresh processes per measurement [3; quick: 1]")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="cuda when torch sees a GPU, else cpu")
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    p.add_argument("--out", default=None, help="also write the table to this file")
    # child options
    p.add_argument("--_offline-child", dest="offline_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_stream-child", dest="stream_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--path", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--engine", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, nargs="+", default=None, help=argparse.SUPPRESS)
    p.add_argument("--hops", type=int, nargs="+", default=list(HOPS), help=argparse.SUPPRESS)
    p.add_argument("--stream-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device is None:
        from local.inference import default_device

        args.device = default_device()
    if args.offline_child or args.stream_child:
        print(json.dumps(offline_child(args) if args.offline_child else stream_child(args)))
        return 0

    import torch

    quick = args.quick
    args.conf = args.conf or ("conf/demo.yml" if quick else "conf/paper_best.yml")
    args.causal_conf = args.causal_conf or ("tests/conf/micro.yml" if quick else "conf/paper_best_causal.yml")
    rounds = args.rounds or (1 if quick else 3)
    args.seconds = args.seconds or ([1.0, 2.0] if quick else [10.0, 60.0])
    stream_seconds = args.stream_seconds or (0.3 if quick else 4.0)
    if "stock" not in args.paths or "eager" not in args.paths:
        args.paths = ["stock", "eager"] + [q for q in args.paths if q not in ("stock", "eager")]
    if args.device != "cpu":  # the C step runs on the CPU only
        args.paths = [q for q in args.paths if q not in NATIVE]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-sep-") as tmp:
        tmp = Path(tmp)
        make_exports(args.conf, tmp / "offline", causal=False)
        causal_conf = _causal_variant(args.causal_conf, tmp)
        make_exports(causal_conf, tmp / "causal", causal=True)
        save = tmp / "outputs"
        save.mkdir()
        offline: dict = {}
        stream: dict = {}
        engines = sorted({STREAM_ENGINE[q] for q in args.paths if q in STREAM_ENGINE})
        offline_paths = [q for q in args.paths if q not in STREAM_ONLY]
        for r in range(rounds):
            order = offline_paths if r % 2 == 0 else list(reversed(offline_paths))  # alternate, and alternate the order
            # full: one fresh process per path and input length (a clean peak memory); quick: one for all
            groups = [(order, args.seconds)] if quick else [([q], [s]) for q in order for s in args.seconds]
            for paths, lengths in groups:
                res = run_child("offline", args, path=paths, folder=tmp / "offline", seconds=lengths,
                                save=save if r == 0 else None, repeats=2)
                for q in paths:
                    for s in lengths:
                        offline.setdefault((q, f"{s:g}"), []).append(res[q])
            for group in ([engines] if quick else [[e] for e in engines]):
                res = run_child("stream", args, engine=group, folder=tmp / "causal", hops=args.hops,
                                stream_seconds=stream_seconds, repeats=1 if quick else 2)
                for e in group:
                    stream.setdefault(e, []).append(res[e])
        diffs = output_diffs(save, args.paths, args.seconds[0])
    from local.compile_cache import cpu_model

    header = (f"Separation on {cpu_model()}, {args.threads} thread(s), device {args.device}, "
              f"torch {torch.__version__}; "
              f"offline: {args.conf}, streaming: {args.causal_conf} ({stream_seconds:g} s streams); "
              f"min of {rounds} fresh process(es) per cell"
              f"{' (quick: one process for all paths, so peak MiB is not per path)' if quick else ''}; "
              f"{time.time() - started:.0f} s")
    table = make_table(args, offline, stream, diffs, header)
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)
    return 0


def _causal_variant(conf_path: str, tmp: Path) -> str:
    """``conf_path`` as given when it is causal, else its causal twin (cgLN) as a temporary config."""
    import yaml

    from local.config import load_config

    conf = load_config(REPO / conf_path)
    if conf["masknet"]["causal"]:
        return conf_path
    conf["masknet"].update(causal=True, norm_type="cgLN")
    path = tmp / "causal.yml"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
