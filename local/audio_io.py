"""Audio file helpers: strict reading and crash-safe (atomic) writing.

``write_wav_atomic`` quantises 16-bit PCM the way MATLAB's
``int16(round(2^15 * x))`` / old ``wavwrite`` did (scale 32768, round half
away from zero, saturate to [-32768, 32767]), which is how MERL's
``create_wav_2speakers.m`` wrote wsj0-mix.  Reading back with
:func:`read_audio` returns ``int16 / 32768`` exactly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import soundfile as sf

from local.stage_state import atomic_file

__all__ = ["read_audio", "write_wav_atomic", "quantize_pcm16"]

PathLike = Union[str, "os.PathLike[str]"]


def read_audio(path: PathLike) -> Tuple[np.ndarray, int]:
    """Read a mono audio file as float64 samples in [-1, 1] and its sample rate.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError``
    (naming the file) if it cannot be decoded, is empty or has more than one
    channel.
    """
    p = Path(path)
    if not p.is_file():
        if p.exists():
            raise ValueError(f"{p}: not a regular file")
        raise FileNotFoundError(f"audio file not found: {p}")
    try:
        data, sr = sf.read(str(p), dtype="float64", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError
        raise ValueError(f"cannot read audio file {p}: {err}") from err
    if data.shape[1] != 1:
        raise ValueError(f"{p}: expected a mono file, found {data.shape[1]} channels")
    if data.shape[0] == 0:
        raise ValueError(f"{p}: audio file is empty (0 samples)")
    return np.ascontiguousarray(data[:, 0]), int(sr)


def quantize_pcm16(samples: np.ndarray) -> np.ndarray:
    """MATLAB-style 16-bit quantisation: ``int16(round(32768 * x))``.

    Rounds half away from zero (MATLAB ``round``) and saturates like MATLAB's
    ``int16`` conversion.
    """
    x = np.asarray(samples, dtype=np.float64) * 32768.0
    q = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return np.clip(q, -32768, 32767).astype(np.int16)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    fmt = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF"}.get(ext)
    if fmt is None:
        fmt = ext.upper()
        if fmt not in sf.available_formats():
            raise ValueError(f"{path}: cannot infer an audio format from the extension {path.suffix!r}")
    return fmt


def write_wav_atomic(
    path: PathLike, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16"
) -> None:
    """Write an audio file so that a crash never leaves a truncated file behind.

    Parent folders are created; the data go to a hidden temporary file in the
    same folder, which is flushed, fsync'ed and then ``os.replace``'d onto
    ``path`` (:func:`local.stage_state.atomic_file`).  ``samples`` is 1-D (mono) or ``(frames, channels)``.  NaN/inf
    samples are refused with ``ValueError``.  For ``subtype="PCM_16"`` the
    samples are quantised with :func:`quantize_pcm16` (values outside
    [-1, 1) saturate); other subtypes are handed to libsndfile as float.
    """
    p = Path(path)
    x = np.asarray(samples)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"{p}: expected non-empty 1-D or (frames, channels) samples, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{p}: samples must be real numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        n_bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"{p}: refusing to write {n_bad} NaN/inf sample(s)")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{p}: sample rate must be a positive integer, got {sample_rate!r}")
    fmt = _format_for(p)
    subtype = subtype.upper()
    if subtype == "PCM_16" and np.issubdtype(x.dtype, np.floating):
        data = quantize_pcm16(x)
    elif np.issubdtype(x.dtype, np.integer) and x.dtype != np.int16 and x.dtype != np.int32:
        data = x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
    else:
        data = x

    with atomic_file(p) as fh:
        sf.write(fh, data, int(sample_rate), subtype=subtype, format=fmt)
