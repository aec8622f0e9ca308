"""Separate wav/flac files with an exported model.

Usage:

    python -m local.separate --model exp/demo/export meeting.wav [more.wav ...] --out-dir separated/

For each input ``name.wav`` writes ``<out-dir>/name_s1.wav``, ``name_s2.wav`` ...
at the input's sample rate. Multichannel input is averaged to mono; an input
at another rate than the model's is resampled (torchaudio) to the model's rate
and the estimates back to the input's rate.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("local.separate")
AUDIO_SUFFIXES = (".wav", ".flac")


def load_separator(model_dir_or_file: str | Path):
    """The model of an export folder (or a ``model.pth`` / ``best_model.pth`` file), in eval mode."""
    import torch

    from local.model import load_model

    path = Path(model_dir_or_file)
    if path.is_dir():
        path = path / "model.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass an export folder or a model .pth file")
    package = torch.load(path, map_location="cpu", weights_only=True)
    model = load_model(package)
    model.eval()
    return model


def read_input(path: Path, min_samples: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from None
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    mono = audio.mean(axis=1)
    if mono.shape[0] < min_samples:
        raise ValueError(f"{path}: {mono.shape[0]} samples is shorter than one encoder window ({min_samples})")
    return mono, rate


def separate_array(model, audio: np.ndarray, rate: int) -> np.ndarray:
    """(time,) at any rate -> (n_src, time) at the same rate."""
    import torch
    import torchaudio.functional as AF

    model_rate = int(model.sample_rate)
    wav = torch.from_numpy(audio)
    if rate != model_rate:
        wav = AF.resample(wav, rate, model_rate)
    with torch.inference_mode():
        est = model(wav[None])[0]
    if rate != model_rate:
        est = AF.resample(est, model_rate, rate)
    est = est[..., : audio.shape[0]]
    if est.shape[-1] < audio.shape[0]:
        est = torch.nn.functional.pad(est, (0, audio.shape[0] - est.shape[-1]))
    return est.numpy()


def expand_inputs(items: list[str]) -> list[tuple[Path, str]]:
    """Input files with the output stem of each.

    A file found in a folder keeps its path below that folder in its name
    (``sub/a.wav`` -> ``sub_a``) so that equal file names in different
    sub-folders never overwrite each other; two inputs that would still write
    the same outputs are an error.
    """
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path}: folder has no .wav or .flac file")
            files.extend((p, "_".join(p.relative_to(path).with_suffix("").parts)) for p in found)
        else:
            files.append((path, path.stem))
    seen = {}
    for path, stem in files:
        if stem in seen:
            raise ValueError(f"{seen[stem]} and {path} would both write {stem}_s1.wav ...: "
                             "rename one or separate them in two calls")
        seen[stem] = path
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export folder or model .pth")
    p.add_argument("inputs", nargs="+", help="wav/flac files or folders")
    p.add_argument("--out-dir", required=True, help="folder for the separated files")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from tqdm import tqdm

    from local.audio_io import write_wav_atomic
    from local.evaluate import peak_limit

    try:
        model = load_separator(args.model)
        files = expand_inputs(args.inputs)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    out_dir = Path(args.out_dir)
    min_samples = model.encoder.filterbank.kernel_size
    failed = []
    for path, stem in tqdm(files, desc="separate", unit="file", disable=len(files) < 2):
        try:
            audio, rate = read_input(path, min_samples)
        except (FileNotFoundError, ValueError) as err:
            log.error("%s", err)
            failed.append(path)
            continue
        if rate != int(model.sample_rate):
            log.info("%s: %d Hz input, model runs at %d Hz: resampling", path, rate, int(model.sample_rate))
        estimates = peak_limit(*separate_array(model, audio, rate))
        for k, est in enumerate(estimates):
            write_wav_atomic(out_dir / f"{stem}_s{k + 1}.wav", est, rate)
    if failed:
        raise SystemExit(f"error: {len(failed)} of {len(files)} inputs could not be separated: "
                         + ", ".join(map(str, failed)))
    print(f"separated {len(files)} file(s) into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
