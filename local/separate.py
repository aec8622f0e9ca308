"""Separate wav/flac files with an exported model.

Usage:

    python -m local.separate --model exp/demo/export meeting.wav [more.wav | folder ...] --out-dir separated/
        [--channels downmix|each] [--window 30] [--no-progress-bar]

For each input ``name.wav`` writes ``<out-dir>/name_s1.wav``, ``name_s2.wav`` ...
(16-bit PCM) at the input's sample rate; a file found inside a folder is named
after its path below that folder (``folder/sub/a.flac`` -> ``sub_a_s1.wav``).

- Any sample rate: the input is resampled (torchaudio) to the model's rate and
  the estimates back to the input's rate.
- Multichannel input: ``--channels downmix`` (default) separates the channel
  average; ``--channels each`` separates every channel and writes one
  multichannel file per speaker, with the speakers of every channel put in the
  order of the first channel's.
- Long input: a recording longer than ``--window`` seconds is separated in
  windows of that length, each seen with the model's receptive field of
  context on both sides, stitched in a consistent speaker order (see
  :func:`chunked_separate`); the model's memory does not grow with the length.
- A file that cannot be read, is empty or shorter than one encoder window is
  reported by name and skipped (exit status 1 at the end); outputs are written
  atomically, and all outputs of an input or none of them.
- Output level: the estimates get the least-squares gains that make them best
  sum to the input (each channel's, with ``--channels each``), then a peak
  limit only where a sample would exceed 16-bit full scale, with a warning
  (:mod:`local.output_level`); SI-SNR training leaves their scale free.

The model is read from an export folder (``model.safetensors`` +
``model.json``, no pickle; else ``model.pth`` with ``torch.load(weights_only=True)``),
or from a ``.safetensors`` / ``.pth`` file. A Lightning ``.ckpt``, a pickle
holding anything but tensors, a damaged file and an unwritable ``--out-dir``
are refused with one line before anything is separated.

Device and backend:

- ``--device`` (default ``cuda`` when torch sees a GPU, else ``cpu``): the model and every
  tensor it sees are on that device; audio files are read and written on the CPU.
- ``--backend auto`` (default): the recipe's fast inference path
  (:func:`local.inference.prepare_for_inference`: the same function as the trained model,
  folded, about 2x faster than stock asteroid on one CPU thread) for a weights package; ``model.ts`` runs as
  TorchScript and ``model.onnx`` through onnxruntime (no torch model code). ``--backend``
  ``eager`` (the training-time model as it is), ``fast``, ``torchscript`` or ``onnx`` chooses
  explicitly (with an export folder: the file of that backend in it).
- ``--precision int8|bf16`` (opt-in, CPU): a reduced-precision copy
  (:func:`local.inference.reduced_precision`); its output SNR against float32 on the first
  input is logged. The default is float32.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger("local.separate")
AUDIO_SUFFIXES = (".wav", ".flac")
DEFAULT_WINDOW_S = 30.0
CHANNEL_MODES = ("downmix", "each")


# ------------------------------------------------------------------ model
class ModelFileError(ValueError):
    """A model file that cannot be used; the message is one line naming the file and what to do."""


#: What to pass instead of a file that is not a model package.
MODEL_HINT = "pass an export folder (exp/<tag>/export, from ./run.sh --stage 3) or an experiment's best_model.pth"
#: What to do about a damaged export file (callers with other files pass their own).
REEXPORT = "copy it again, or export the model again (./run.sh --stage 3 --stop-stage 3 --force)"
PACKAGE_KEYS = ("model_name", "model_args", "state_dict")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _is_lightning_checkpoint(path: Path) -> bool:
    """A Lightning training checkpoint, by its name or by the key Lightning writes into its pickle.

    The pickle is searched as bytes, never unpickled: a checkpoint renamed to
    ``.pth`` is recognised without running anything in it.
    """
    if path.suffix == ".ckpt":
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            pickles = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
            return any(b"pytorch-lightning_version" in zf.read(n) for n in pickles)
    except (zipfile.BadZipFile, OSError, RuntimeError):  # not a (readable) torch archive: torch.load says more
        return False


def _lightning_error(path: Path) -> ModelFileError:
    return ModelFileError(f"{path} is a Lightning training checkpoint, not a model package: {MODEL_HINT}")


def _load_pth(path: Path, remedy: str) -> dict:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            # torch's own text suggests weights_only=False, i.e. running the file's code: never do that
            raise ModelFileError(f"{path} is not a safe model file (it holds Python objects other than tensors, "
                                 f"so it is not an export of this recipe): not loaded; {MODEL_HINT}") from None
        raise ModelFileError(f"{path} is truncated or corrupt ({_first_line(err)}): {remedy}") from None
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError ... for a damaged file
        raise ModelFileError(f"{path} is truncated or corrupt ({_first_line(err)}): {remedy}") from None


def read_package(path: str | Path, remedy: str = REEXPORT) -> dict:
    """asteroid's ``serialize`` dict from a model ``.pth`` or ``.safetensors`` (+ its ``.json``).

    Nothing read here can run code: safetensors and JSON hold data only, and a
    ``.pth`` is read with ``torch.load(weights_only=True)``. Raises
    :class:`ModelFileError` for a Lightning checkpoint, a pickle holding other
    objects than tensors and plain values, a truncated or corrupt file (with
    ``remedy`` as what to do) and a file that holds no model package.
    """
    path = Path(path)
    if _is_lightning_checkpoint(path):
        raise _lightning_error(path)
    package = read_safetensors_package(path, remedy) if path.suffix == ".safetensors" else _load_pth(path, remedy)
    if isinstance(package, dict) and "pytorch-lightning_version" in package:
        raise _lightning_error(path)
    if not isinstance(package, dict) or any(k not in package for k in PACKAGE_KEYS):
        raise ModelFileError(f"{path} holds no model package ({', '.join(PACKAGE_KEYS)}): {MODEL_HINT}")
    return package


def build_model(package: dict, path: str | Path):
    """The model of a package read by :func:`read_package`, in eval mode; ``path`` names it in errors."""
    from local.model import load_model

    try:
        model = load_model(package)
    except Exception as err:  # noqa: BLE001 - wrong arguments or weights: KeyError, TypeError, RuntimeError ...
        raise ModelFileError(f"{path}: the model cannot be rebuilt from it ({_first_line(err)}): "
                             f"{MODEL_HINT}") from None
    model.eval()
    return model


#: ``--backend`` choices: auto (by file: .ts TorchScript, .onnx onnxruntime, else fast), eager, fast, torchscript, onnx
BACKENDS = ("auto", "eager", "fast", "torchscript", "onnx")
#: the file of an export folder that each backend reads
BACKEND_FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def load_separator(model_dir_or_file: str | Path, device=None, backend: str | None = None):
    """The model of an export folder or model file, in eval mode, on ``device``.

    ``device``: default ``"cpu"`` (the CLI's ``--device`` defaults to ``cuda`` when available); every
    export runs on any device torch runs on (onnxruntime: the providers it has).
    ``backend`` (see :data:`BACKENDS`): ``None`` is the file's own kind (``.ts`` TorchScript,
    ``.onnx`` onnxruntime, a weights package the eager model); ``auto`` is the same with the
    fast path for weights packages.

    A weights package (``model.safetensors`` + ``model.json``, or ``model.pth``) never runs code
    when read (see :func:`read_package`); ``model.ts`` is a TorchScript program and is only
    loaded when asked for (a ``.ts`` path or ``backend="torchscript"``). Raises
    ``FileNotFoundError`` and :class:`ModelFileError`, both one line.
    """
    from local.inference import prepare_for_inference, resolve_device

    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {BACKENDS}")
    path = Path(model_dir_or_file)
    if path.is_dir():
        if backend in BACKEND_FILES:
            path = path / BACKEND_FILES[backend]
        elif (path / "model.safetensors").is_file():
            path = path / "model.safetensors"
        else:
            path = path / "model.pth"
    kind = {".ts": "torchscript", ".onnx": "onnx"}.get(path.suffix)
    if backend in BACKEND_FILES and kind != backend:
        raise ModelFileError(f"{path}: --backend {backend} needs a {BACKEND_FILES[backend]} file or an export folder")
    if kind is not None and backend in ("eager", "fast"):
        raise ModelFileError(f"{path} is a {kind} export: --backend {backend} needs model.safetensors or model.pth")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass an export folder or a model .safetensors/.pth/.ts/.onnx file")
    dev = resolve_device(device or "cpu")
    if kind == "torchscript":
        return TorchScriptSeparator(path, dev)
    if kind == "onnx":
        from local.onnx_export import OnnxSeparator

        try:
            return OnnxSeparator(path, str(dev))
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own errors for a damaged file
            if isinstance(err, ValueError) and "--device" in str(err):
                raise
            raise ModelFileError(f"{path} is truncated or corrupt ({_first_line(err)}): {REEXPORT}") from None
    package = read_package(path)
    model = build_model(package, path)
    separator = model.to(dev) if backend in (None, "eager") else prepare_for_inference(model, dev)
    separator.trained_on = package.get("infos", {}).get("dataset")
    return separator


class TorchScriptSeparator:
    """``model.ts`` (a TorchScript :class:`local.inference.FastConvTasNet`) on a device, with its geometry."""

    is_prepared = True

    def __init__(self, path: str | Path, device="cpu"):
        import torch

        self.path = Path(path)
        extra = {"geometry.json": "", "infos.json": ""}
        try:
            self.module = torch.jit.load(str(path), map_location=torch.device(device), _extra_files=extra).eval()
        except Exception as err:  # noqa: BLE001 - torch raises RuntimeError for a damaged archive
            raise ModelFileError(f"{path} is truncated or corrupt ({_first_line(err)}): {REEXPORT}") from None
        if not extra["geometry.json"]:
            raise ModelFileError(f"{path} has no geometry.json: not a model.ts of this recipe ({REEXPORT})")
        self.geometry = json.loads(extra["geometry.json"])
        self.sample_rate = float(self.geometry["sample_rate"])
        self.trained_on = json.loads(extra["infos.json"] or "{}").get("dataset")
        self.device = torch.device(device)

    def __call__(self, wav):
        return self.module(wav)

    def to(self, device):
        import torch

        self.module.to(torch.device(device))
        self.device = torch.device(device)
        return self

    def eval(self):
        return self


def read_safetensors_package(weights: Path, remedy: str = REEXPORT) -> dict:
    """asteroid's ``serialize`` dict from ``model.safetensors`` and the ``model.json`` beside it."""
    from safetensors.torch import load_file

    config_path = weights.with_suffix(".json")
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: it holds the model arguments of {weights.name}")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{config_path} is truncated or corrupt ({_first_line(err)}): {remedy}") from None
    if not isinstance(config, dict) or any(k not in config for k in ("model_name", "model_args")):
        raise ModelFileError(f"{config_path} holds no model_name and model_args: {remedy}")
    try:
        state_dict = load_file(str(weights), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError for a damaged file
        raise ModelFileError(f"{weights} is truncated or corrupt ({_first_line(err)}): {remedy}") from None
    return {"model_name": config["model_name"], "model_args": config["model_args"],
            "state_dict": state_dict, "infos": config.get("infos", {})}


def model_context(model) -> tuple[int, int]:
    """Samples of context (left, right) a chunk needs so that its kept part equals the unchunked output.

    The TCN sees ``(P - 1) * 2**x`` frames per block (all on the left when
    causal, split evenly when not); one more encoder window on each side
    covers the framing. Multiples of the hop, so chunks keep the frame grid.
    """
    from local.inference import model_geometry

    geo = model_geometry(model)
    stride, kernel = int(geo["stride"]), int(geo["kernel_size"])
    spans = [(geo["conv_kernel_size"] - 1) * 2**x for x in range(geo["n_blocks"])] * geo["n_repeats"]
    if geo["causal"]:
        left, right = sum(spans), 0
    else:  # asteroid pads span // 2 frames on each side
        left, right = sum(s // 2 for s in spans), sum(s - s // 2 for s in spans)
    windows = -(-kernel // stride)  # encoder windows in hops, rounded up
    return (left + windows) * stride, (right + 2 * windows) * stride


# -------------------------------------------------------------- separation
def model_device(model):
    """The device a model (or an export wrapper) runs on."""
    import torch

    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _run_model(model, wav):
    """(time,) CPU tensor -> (n_src, time) float32 CPU tensor, computed on the model's device."""
    import torch

    with torch.inference_mode():
        return model(wav[None].to(model_device(model)))[0].float().cpu()


def best_permutation(reference, estimate) -> tuple[int, ...]:
    """Order of ``estimate``'s sources (n_src, time) that best correlates with ``reference``'s."""
    ref = reference - reference.mean(-1, keepdim=True)
    est = estimate - estimate.mean(-1, keepdim=True)
    corr = ref @ est.T  # (n_src, n_src): ref i vs est j
    n_src = corr.shape[0]
    return max(itertools.permutations(range(n_src)),
               key=lambda perm: float(sum(corr[i, j] for i, j in enumerate(perm))))


def chunked_separate(model, wav, window: int, context: tuple[int, int] | None = None, fade: int | None = None):
    """(time,) tensor at the model's rate -> (n_src, time), ``window`` samples of it at a time.

    Like asteroid's ``LambdaOverlapAdd`` (segment, separate, reorder each
    segment's sources by correlation with the previous one over their overlap,
    overlap-add), with two differences that make it exact where it can be:
    each window is separated together with ``context`` samples on either side
    (default :func:`model_context`, the receptive field) that are then thrown
    away, and windows start on the encoder's frame grid. So for every model
    whose output at a frame depends on its receptive field only (norm ``cLN``
    or ``BN``, causal or not) the result equals the unchunked output up to
    float round-off (``tests/test_separate.py``: 1e-4). With ``gLN`` or
    ``cgLN`` (statistics over the whole input so far) the windows see other
    statistics, which is the approximation every chunked separator makes;
    the ``fade`` samples (default 10 ms) before each window border are
    cross-faded so that no step is audible. Peak memory is that of one window
    plus context, whatever the length.
    """
    import torch

    from local.inference import model_geometry

    geo = model_geometry(model)
    total = wav.shape[-1]
    stride = int(geo["stride"])
    ctx_left, ctx_right = context if context is not None else model_context(model)
    window = max(stride, window // stride * stride)
    fade = int(round(0.01 * float(geo["sample_rate"]))) if fade is None else fade
    if total <= window + ctx_left + ctx_right + fade:
        return _run_model(model, wav)
    fade = max(0, min(fade, window)) // stride * stride
    ctx_left += fade  # the cross-faded samples need their full context too
    out = None
    for start in range(0, total, window):
        end = min(start + window, total)
        seg_start, seg_end = max(0, start - ctx_left), min(total, end + ctx_right)
        est = _run_model(model, wav[seg_start:seg_end])
        if out is None:
            out = est.new_zeros(est.shape[0], total)
        else:
            overlap = min(ctx_left - fade, window, start - seg_start)
            prev = out[:, start - overlap:start]
            est = est[list(best_permutation(prev, est[:, start - overlap - seg_start:start - seg_start]))]
            if fade:
                ramp = torch.linspace(0.0, 1.0, fade + 2, dtype=est.dtype)[1:-1]
                cur = est[:, start - fade - seg_start:start - seg_start]
                out[:, start - fade:start] = out[:, start - fade:start] * (1 - ramp) + cur * ramp
        out[:, start:end] = est[:, start - seg_start:end - seg_start]
    return out


def separate_array(model, audio: np.ndarray, rate: int, window_s: float | None = DEFAULT_WINDOW_S) -> np.ndarray:
    """(time,) at any rate -> (n_src, time) at the same rate.

    ``window_s``: inputs longer than this many seconds (at the model's rate) are
    separated in chunks (:func:`chunked_separate`); ``None`` separates in one go.
    """
    import torch
    import torchaudio.functional as AF

    model_rate = int(model_rate_of(model))
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if rate != model_rate:
        wav = AF.resample(wav, rate, model_rate)
    if window_s is None:
        est = _run_model(model, wav)
    else:
        est = chunked_separate(model, wav, int(window_s * model_rate))
    if rate != model_rate:
        est = AF.resample(est, model_rate, rate)
    est = est[..., : audio.shape[0]]
    if est.shape[-1] < audio.shape[0]:
        est = torch.nn.functional.pad(est, (0, audio.shape[0] - est.shape[-1]))
    return est.numpy()


def separate_channels(model, audio: np.ndarray, rate: int, channels: str = "downmix",
                      window_s: float | None = DEFAULT_WINDOW_S) -> np.ndarray:
    """(time, n_channels) -> (n_src, time) for ``downmix``, (n_src, time, n_channels) for ``each``.

    With ``each``, the sources of every channel are put in the order of
    channel 0's (largest correlation), so ``s1`` is one speaker in all channels.
    """
    import torch

    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels={channels!r}: choose one of {CHANNEL_MODES}")
    if audio.ndim == 1:
        audio = audio[:, None]
    if channels == "downmix" or audio.shape[1] == 1:
        est = separate_array(model, audio.mean(axis=1), rate, window_s)
        return est if channels == "downmix" else est[..., None]
    per_channel = [separate_array(model, audio[:, c], rate, window_s) for c in range(audio.shape[1])]
    ordered = [per_channel[0]]
    for est in per_channel[1:]:
        perm = best_permutation(torch.from_numpy(per_channel[0]), torch.from_numpy(est))
        ordered.append(est[list(perm)])
    return np.stack(ordered, axis=-1)


# -------------------------------------------------------------- files
def read_input(path: Path, min_samples: int, channels: str = "downmix") -> tuple[np.ndarray, int]:
    """(time,) mono downmix (``channels="downmix"``) or (time, n_channels) and the file's rate.

    ``min_samples`` is counted at the file's rate. Errors name the file.
    """
    import soundfile as sf

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError (a RuntimeError) or TypeError
        raise ValueError(f"{path}: cannot read audio ({err})") from None
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    if audio.shape[0] < min_samples:
        raise ValueError(f"{path}: {audio.shape[0]} samples is shorter than one encoder window "
                         f"({min_samples} samples at {rate} Hz)")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{path}: the file holds NaN or infinite samples")
    return (audio.mean(axis=1) if channels == "downmix" else audio), rate


def model_rate_of(model) -> float:
    """The sample rate a model (or an export wrapper) runs at."""
    from local.inference import model_geometry

    return float(model_geometry(model)["sample_rate"])


def min_input_samples(model, rate: int) -> int:
    """Shortest input, at ``rate``, that still gives one encoder frame at the model's rate."""
    from local.inference import model_geometry

    geo = model_geometry(model)
    kernel, model_rate = int(geo["kernel_size"]), float(geo["sample_rate"])
    return int(np.ceil(kernel * rate / model_rate))


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
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path}: folder has no .wav or .flac file")
            files.extend((p, "_".join(p.relative_to(path).with_suffix("").parts)) for p in found)
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        else:
            files.append((path, path.stem))
    seen = {}
    for path, stem in files:
        if stem in seen:
            raise ValueError(f"{seen[stem]} and {path} would both write {stem}_s1.wav ...: "
                             "rename one or separate them in two calls")
        seen[stem] = path
    return files


def output_paths(out_dir: Path, stem: str, n_src: int) -> list[Path]:
    return [out_dir / f"{stem}_s{k + 1}.wav" for k in range(n_src)]


def write_outputs(paths: list[Path], estimates: np.ndarray, rate: int) -> None:
    """Write every speaker's file, or (on any error) none of them."""
    from local.audio_io import write_wav_atomic

    written = []
    try:
        for path, est in zip(paths, estimates):
            write_wav_atomic(path, est, rate)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def separate_file(model, path: Path, out_dir: Path, stem: str, channels: str = "downmix",
                  window_s: float | None = DEFAULT_WINDOW_S) -> list[Path]:
    """Separate one file into ``out_dir/<stem>_s<k>.wav``; returns the paths written."""
    from local.output_level import written_estimates

    audio, rate = read_input(path, 1, channels)
    if audio.shape[0] < min_input_samples(model, rate):
        raise ValueError(f"{path}: {audio.shape[0]} samples is shorter than one encoder window "
                         f"({min_input_samples(model, rate)} samples at {rate} Hz)")
    if rate != int(model_rate_of(model)):
        log.info("%s: %d Hz input, model runs at %d Hz: resampling", path, rate, int(model_rate_of(model)))
    # the recipe's one output-level rule (local.output_level): least-squares gains towards the
    # mixture, a peak limit only above full scale (with a warning), 16-bit values
    estimates = written_estimates(audio, separate_channels(model, audio, rate, channels, window_s), str(path))
    paths = output_paths(out_dir, stem, len(estimates))
    write_outputs(paths, estimates, rate)
    return paths


def check_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and write a probe file in it: an unusable folder fails before any separation.

    A real file (not ``os.access``) also catches read-only file systems and
    works for root, for whom the permission bits say nothing.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".write-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise SystemExit(f"error: --out-dir {out_dir}: cannot create or write files there ({reason}): "
                         "choose another folder or fix its permissions") from None


def say_what_the_model_is_for(model) -> None:
    """Warn, before separating, when the model was trained on the demo corpus (synthetic voices)."""
    from local.model_card import DEMO_MODEL_NOTICE, is_demo_model

    if is_demo_model({"dataset": getattr(model, "trained_on", None)}):
        log.warning("%s", DEMO_MODEL_NOTICE)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export folder, or model .safetensors/.pth")
    p.add_argument("inputs", nargs="+", help="wav/flac files or folders (searched recursively)")
    p.add_argument("--out-dir", required=True, help="folder for the separated files")
    p.add_argument("--channels", choices=CHANNEL_MODES, default="downmix",
                   help="multichannel input: separate the average (downmix) or each channel (each)")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW_S,
                   help="longer inputs are separated in windows of this many seconds (0: never chunk)")
    p.add_argument("--device", default=None,
                   help="where the model runs (default: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: the fast inference path for a weights package, TorchScript for model.ts, "
                        "onnxruntime for model.onnx; or eager / fast / torchscript / onnx")
    p.add_argument("--precision", choices=("fp32", "int8", "bf16"), default="fp32",
                   help="opt-in reduced precision on the CPU (int8 1x1 convolutions, or bfloat16); "
                        "its output SNR against float32 is logged")
    p.add_argument("--no-progress-bar", action="store_true")
    return p


def reduce_precision(model, precision: str, first_input: Path, window_s: float | None):
    """The ``--precision`` copy of a float32 torch model, with a log line of its SNR on ``first_input``."""
    import torch

    from local.inference import output_snr, reduced_precision

    low, _ = reduced_precision(model, precision)
    try:
        audio, rate = read_input(first_input, 1, "downmix")
    except (FileNotFoundError, ValueError):
        return low
    probe = audio[: int(10 * rate)]
    snr = output_snr(torch.from_numpy(separate_array(model, probe, rate, window_s)),
                     torch.from_numpy(separate_array(low, probe, rate, window_s)))
    log.info("--precision %s: output SNR against float32 %.1f dB on the first %.1f s of %s",
             precision, snr, len(probe) / rate, first_input)
    return low


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.window < 0:
        raise SystemExit("error: --window must be >= 0 seconds")

    from tqdm import tqdm

    from local.inference import default_device

    out_dir = Path(args.out_dir)
    try:
        files = expand_inputs(args.inputs)
        check_out_dir(out_dir)  # before the model is loaded and any input separated
        if args.precision == "fp32":
            model = load_separator(args.model, device=args.device or default_device(), backend=args.backend)
        else:  # reduced precision is made from the float32 weights, on the CPU
            if (args.device or "cpu") != "cpu":
                raise SystemExit("error: --precision int8/bf16 is a CPU option: use --device cpu")
            model = load_separator(args.model, device="cpu", backend="eager")
    except (FileNotFoundError, ValueError) as err:  # ModelFileError is a ValueError
        raise SystemExit(f"error: {err}")
    say_what_the_model_is_for(model)
    window_s = args.window or None
    if args.precision != "fp32":
        model = reduce_precision(model, args.precision, files[0][0], window_s)
    failed = []
    bar = tqdm(files, desc="separate", unit="file", disable=args.no_progress_bar or len(files) < 2)
    for path, stem in bar:
        try:
            separate_file(model, path, out_dir, stem, args.channels, window_s)
        except (FileNotFoundError, ValueError, OSError) as err:
            log.error("%s", err)
            failed.append(path)
    if failed:
        raise SystemExit(f"error: {len(failed)} of {len(files)} inputs could not be separated: "
                         + ", ".join(map(str, failed)))
    print(f"separated {len(files)} file(s) into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
