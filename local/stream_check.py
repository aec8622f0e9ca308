"""Which streaming engine suits *your* causal model: time per frame and output against offline, on your audio.

Usage:

    python -m local.stream_check --model exp/<corpus>/<tag>/export mix1.wav [more.wav | folder ...]
        [--engines script native native-fp16 native-int12 native-int8 onnx] [--hops 1]
        [--seconds 10] [--repeats 3] [--threads 1] [--tolerance 1e-4] [--out table.md]

Each file (downmixed, resampled to the model's rate, its first ``--seconds``, at its own level)
is separated offline by the float32 training-time model and streamed through every engine of
:class:`local.streaming.StreamingSeparator` at ``--hops`` encoder hops per call
(:func:`local.streaming.time_stream`: chunks cut ahead, the fastest of ``--repeats`` passes).
One markdown table, one row per engine: the median over files of the time per frame, the worst
file's SNR against offline float32, the largest sample difference, and whether it is within
``--tolerance``. The reduced-precision engines' rounding error grows with the level and
depends on the weights (on the benchmark's random weights fp16 is 72 dB; on two trained demo
models at full level 80-82 dB, with largest differences of 9.9e-05 and 1.1e-04: README), so
check a model on its own audio before deploying one.

Defaults: ``script`` and the C engines, and ``onnx`` when the export folder holds
``model_stream.onnx``. An engine that cannot run here (no C compiler, say) gets its reason in
its row. Exit status 1 when an engine named with ``--engines`` could not run or was outside
``--tolerance``, or when an input could not be used (named in one line each); a model that
cannot stream (not causal, gLN) is refused in one line before any audio is read.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

log = logging.getLogger("local.stream_check")

DEFAULT_ENGINES = ("script", "native", "native-fp16", "native-int12", "native-int8")


def get_parser() -> argparse.ArgumentParser:
    from local.streaming import ENGINES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export folder, or model .safetensors/.pth, of a causal model")
    p.add_argument("inputs", nargs="+", help="wav/flac files or folders (searched recursively)")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=None,
                   help="engines to check (default: script, the C engines, and onnx when the folder has "
                        "model_stream.onnx)")
    p.add_argument("--hops", type=int, default=1, help="encoder hops per call (1: the lowest latency)")
    p.add_argument("--seconds", type=float, default=10.0, help="the first this many seconds of each file")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per file and engine (the fastest counts)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: one core, as a device would give)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest sample difference counted as equal")
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    return p


def check_args(args) -> None:
    """Every option checked before the model is loaded: one line naming the option."""
    for name in ("hops", "repeats", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be at least 1, got {getattr(args, name)}")
    for name in ("seconds", "tolerance"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"error: --{name} must be positive, got {getattr(args, name)}")
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():  # before minutes of streaming
        raise SystemExit(f"error: --out {args.out}: its folder does not exist (create it, or write the table elsewhere)")


def engines_for(model_path: Path, asked) -> list[str]:
    if asked:
        return list(dict.fromkeys(asked))
    extra = ["onnx"] if (model_path / "model_stream.onnx").is_file() else []
    return list(DEFAULT_ENGINES) + extra


def read_signals(files, model, seconds: float, hops: int) -> tuple[list, list]:
    """The (time,) float32 tensor at the model's rate of each usable file, and the unusable files'
    error lines (unreadable, or too short for two calls of ``hops`` hops and one encoder window,
    what :func:`local.streaming.time_stream` needs)."""
    import torch
    import torchaudio.functional as AF

    from local.inference import model_geometry
    from local.separate import read_input

    geometry = model_geometry(model)
    model_rate = int(geometry["sample_rate"])
    need = max(2 * hops * int(geometry["stride"]), int(geometry["kernel_size"]))
    signals, errors = [], []
    for path, _ in files:
        try:
            audio, rate = read_input(path, 1, "downmix")
            wav = torch.from_numpy(audio[: int(seconds * rate)].copy())
            if rate != model_rate:
                wav = AF.resample(wav, rate, model_rate)
            if wav.shape[-1] < need:
                raise ValueError(f"{path}: too short to stream at {hops} hop(s) per call ({wav.shape[-1]} samples "
                                 f"at {model_rate} Hz, {need} needed)")
        except (FileNotFoundError, ValueError) as err:
            errors.append(str(err))
            continue
        signals.append(wav)
    return signals, errors


def check_engine(engine: str, model, model_path: Path, signals, offline, args) -> dict:
    """One engine on every signal: median ms per frame, worst SNR, largest difference."""
    from local.inference import output_snr
    from local.native_step import NativeBuildError
    from local.streaming import StreamingSeparator, time_stream

    source = model
    if engine == "onnx":
        source = model_path / "model_stream.onnx"
        if not source.is_file():
            return {"engine": engine, "error": f"no {source} (an export folder of a causal model has it: "
                                               "./run.sh --stage 3)"}
        source = str(source)
    try:
        separator = StreamingSeparator(source, device="cpu", engine=engine)
    except (NativeBuildError, ValueError, FileNotFoundError, ImportError) as err:
        return {"engine": engine, "error": str(err).splitlines()[0]}
    times, snr, diff = [], float("inf"), 0.0
    for signal, reference in zip(signals, offline):
        seconds, online = time_stream(separator, signal, args.hops, args.repeats)
        times.append(seconds)
        snr = min(snr, output_snr(reference, online))
        diff = max(diff, (online - reference).abs().max().item())
    return {"engine": engine, "ms": 1000 * statistics.median(times), "snr_db": snr, "max_diff": diff,
            "ok": diff <= args.tolerance}


def make_table(rows: list[dict], hops: int, tolerance: float) -> str:
    lines = [f"| engine | ms per frame at {hops} hop(s) per call | worst SNR vs offline float32 (dB) | "
             f"max abs diff | within {tolerance:g} |", "|---|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | - | - | - | cannot run here: {r['error']} |")
        else:
            snr = "inf" if r["snr_db"] == float("inf") else f"{r['snr_db']:.1f}"
            lines.append(f"| {r['engine']} | {r['ms']:.3f} | {snr} | {r['max_diff']:.1e} | "
                         f"{'yes' if r['ok'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    check_args(args)

    import torch

    from local.compile_cache import cpu_model
    from local.separate import expand_inputs, load_separator
    from local.streaming import check_streamable

    torch.set_num_threads(args.threads)
    model_path = Path(args.model)
    try:
        model = load_separator(model_path, device="cpu", backend="eager")
        check_streamable(model)
        files = expand_inputs(args.inputs)
    except (FileNotFoundError, ValueError) as err:  # ModelFileError is a ValueError
        raise SystemExit(f"error: {err}")
    signals, errors = read_signals(files, model, args.seconds, args.hops)
    for line in errors:
        log.error("%s", line)
    if not signals:
        raise SystemExit(f"error: none of the {len(files)} inputs could be used")
    with torch.inference_mode():
        offline = [model(signal[None])[0] for signal in signals]
    engines = engines_for(model_path, args.engines)
    rows = []
    for engine in engines:
        rows.append(check_engine(engine, model, model_path, signals, offline, args))
        log.info("%s done", engine)
    seconds = sum(s.shape[-1] for s in signals) / float(model.sample_rate)
    header = (f"Streaming check of {model_path} on {len(signals)} file(s) ({seconds:.1f} s), "
              f"{cpu_model()}, {args.threads} thread(s)")
    table = make_table(rows, args.hops, args.tolerance)
    print(header + "\n\n" + table)
    if args.out:
        from local.stage_state import atomic_write_text

        atomic_write_text(Path(args.out), header + "\n\n" + table + "\n")
    failed = [r["engine"] for r in rows if args.engines and ("error" in r or not r["ok"])]
    if failed:
        log.error("engine(s) not usable within %g here: %s", args.tolerance, ", ".join(failed))
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
