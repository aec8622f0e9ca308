"""The level of separated audio that the recipe writes: one documented rule.

SI-SNR (the training loss) ignores the scale of each estimate, so a model's raw
outputs come at arbitrary levels: written as they are, they clip or are far too
quiet (asteroid #311, #250). Every place that writes separated audio
(``local.separate``, the evaluation's ``examples/`` and ``worst/`` folders)
passes the estimates through :func:`written_estimates`, which applies:

1. **Least-squares gains.** The gains ``g_1 .. g_C`` (one per source) that
   make the estimates best sum to the mixture,
   ``argmin_g || mix - sum_k g_k est_k ||^2``, are applied. For a model whose
   estimates already sum to the mixture they are 1; for any model the written
   sum is the closest to the mixture that rescaling can make it. When the
   per-source gains are not unique (a silent estimate, two collinear
   estimates) one common gain is used instead, ``<mix, sum> / ||sum||^2`` (1
   when the sum is silent). A negative gain is kept: it only flips the
   polarity of an estimate whose sign the model got backwards (inaudible, and
   SI-SNR ignores it), and it is what brings the sum closest to the mixture.
   With multichannel estimates (``--channels each``) the gains are fitted per
   channel.
2. **Peak limit, only if needed.** If a sample would then exceed 16-bit full
   scale (``FULL_SCALE`` = 32767/32768), all estimates of the file are scaled
   down together so that the largest sample is exactly full scale, and a
   warning says by how many dB. Otherwise the level is left alone: nothing is
   normalised to a peak of 0.9 or similar.
3. **16-bit quantisation.** ``local.audio_io.quantize_pcm16`` (what the files
   hold). :func:`written_estimates` returns the quantised values as floats
   (``int16 / 32768``), so that what is scored is exactly what is written:
   ``local.evaluate`` computes its metrics on these arrays.

Written estimates therefore never clip, their relative levels are kept, and
their sum differs from the mixture by no more than the least-squares residual
plus half an LSB per source, unless the peak limit had to scale them down
(``tests/test_output_level.py``).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from local.audio_io import quantize_pcm16

__all__ = ["FULL_SCALE", "least_squares_gains", "rescale_to_mixture", "written_estimates"]

log = logging.getLogger("local.output_level")

#: Largest value a 16-bit PCM sample holds (as a float in [-1, 1)).
FULL_SCALE = 32767.0 / 32768.0


def _common_gain(mix: np.ndarray, est: np.ndarray) -> float:
    total = est.sum(0)
    energy = float(total @ total)
    gain = float(mix @ total) / energy if energy > 0 else 1.0
    return gain if np.isfinite(gain) and gain != 0 else 1.0


def least_squares_gains(mix: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Gains ``(n_src,)`` minimising ``|| mix - sum_k g_k estimates[k] ||^2`` (see the module docstring).

    ``mix``: ``(time,)``; ``estimates``: ``(n_src, time)``. Falls back to one
    common gain when the per-source solution is degenerate.
    """
    mix = np.asarray(mix, dtype=np.float64)
    est = np.asarray(estimates, dtype=np.float64)
    n_src = est.shape[0]
    if not np.all(np.isfinite(est)) or not np.all(np.isfinite(mix)):
        return np.ones(n_src)
    gram = est @ est.T
    norms = np.sqrt(np.diag(gram))
    if np.all(norms > 0):
        # normal equations on unit-norm estimates: their conditioning measures collinearity
        # only (not how loud each estimate is), so a quiet estimate keeps its own gain
        corr = gram / np.outer(norms, norms)
        sv = np.linalg.svd(corr, compute_uv=False)
        if sv[-1] > 1e-6 * sv[0]:
            gains = np.linalg.solve(corr, (est @ mix) / norms) / norms
            if np.all(np.isfinite(gains)) and np.all(gains != 0):
                return gains
    return np.full(n_src, _common_gain(mix, est))


def rescale_to_mixture(mix: np.ndarray, estimates: np.ndarray, name: Optional[str] = None) -> np.ndarray:
    """Steps 1 and 2 of the rule: least-squares gains, then a peak limit only above full scale.

    ``mix``: ``(time,)`` or ``(time, channels)``; ``estimates``: ``(n_src, time)``
    or ``(n_src, time, channels)``. Returns float64 estimates of the same shape.
    ``name`` (e.g. the input file) goes into the warning of the peak limit.
    Non-finite samples of the estimates become 0 first.
    """
    est = np.nan_to_num(np.asarray(estimates, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mix = np.nan_to_num(np.asarray(mix, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if est.ndim not in (2, 3) or mix.shape[0] != est.shape[1]:
        raise ValueError(f"estimates {est.shape} (n_src, time[, channels]) do not fit a mixture of shape "
                         f"{mix.shape} (time[, channels])")
    if est.ndim == 3:
        if mix.ndim != 2 or mix.shape[1] != est.shape[2]:
            raise ValueError(f"estimates {est.shape} need a (time, {est.shape[2]}) mixture, got {mix.shape}")
        out = np.stack([est[..., c] * least_squares_gains(mix[:, c], est[..., c])[:, None]
                        for c in range(est.shape[2])], axis=-1)
    else:
        if mix.ndim != 1:
            raise ValueError(f"estimates {est.shape} need a (time,) mixture, got {mix.shape}")
        out = est * least_squares_gains(mix, est)[:, None]
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > FULL_SCALE:
        factor = FULL_SCALE / peak
        log.warning("%sestimates would exceed full scale (peak %.3f after the least-squares gains): "
                    "all scaled down by %.1f dB so that none clips", f"{name}: " if name else "", peak,
                    -20 * np.log10(factor))
        out = out * factor
    return out


def written_estimates(mix: np.ndarray, estimates: np.ndarray, name: Optional[str] = None) -> np.ndarray:
    """The whole rule: :func:`rescale_to_mixture`, then 16-bit quantisation, as float64 ``int16 / 32768``.

    Writing the result with ``write_wav_atomic(..., subtype="PCM_16")`` stores
    exactly these values, and reading the file back returns them bit for bit.
    """
    return quantize_pcm16(rescale_to_mixture(mix, estimates, name)).astype(np.float64) / 32768.0
