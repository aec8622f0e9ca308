"""Separation metrics that equal the reference implementations, computed fast.

Every metric has the semantics asteroid's ``get_metrics`` gives it (through
``pb_bss_eval``), so our tables compare with published numbers:

- ``si_sdr``: SI-SNR / SI-SDR, zero-mean, ``eps=1e-8`` as in ``pb_bss_eval``.
- ``sdr``, ``sir``, ``sar``: BSS Eval v3 (``mir_eval.separation.bss_eval_sources``,
  512-tap time-invariant distortion filter, no permutation search). SDR alone
  needs only each reference's own Toeplitz system: fast_bss_eval's formula, with
  the correlations from one short FFT and a Levinson solve (O(taps^2)). SIR and
  SAR need the block system over all references: ``fast_bss_eval`` (torch
  backend, float64). Estimates and mixture share one system, so the input
  metrics come almost for free. Ratios are capped at ``BSS_CEILING_DB``.
- ``stoi``: ``pystoi.stoi`` (classic STOI), re-written vectorised: the
  reference's resampling, silent-frame mask and spectrum are computed once and
  reused for the mixture and the estimate. Same arithmetic as pystoi.
- ``pesq``: ``pesq.pesq``, narrow-band at 8 kHz, wide-band at 16 kHz.

``input_<metric>`` is the mixture scored against each reference, as asteroid
computes it. ``mir_eval`` is the reference in the tests, never used here.

Usage::

    from local.metrics import compute_metrics
    values = compute_metrics(mix, sources, estimate, 8000, ["si_sdr", "sdr", "stoi"])
    # {"input_si_sdr": array([..., ...]), "si_sdr": array(...), ...}, one value per source
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

import numpy as np

ALL_METRICS = ("si_sdr", "sdr", "sir", "sar", "stoi", "pesq")
#: BSS Eval distortion filter length (mir_eval's bss_eval_sources default).
FILTER_LENGTH = 512
#: Ceiling of BSS Eval ratios (dB): float64 resolves a coherence of 1 - 1e-16 at most, so a
#: signal exactly in the span of the references (a mixture that is the exact sum of its
#: sources has an infinite SAR) gets this value; mir_eval returns rounding noise there.
BSS_CEILING_DB = 160.0
#: pb_bss_eval's SI-SDR regulariser.
SI_SDR_EPS = 1e-8


class MetricInputError(ValueError):
    """The signals of an utterance cannot be scored (shape, length, silence, NaN)."""


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------
def as_signals(mix, sources, estimate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 ``(time,)``, ``(n_src, time)``, ``(n_src, time)``; a clear error on shape or length."""
    mix = np.asarray(mix, dtype=np.float64)
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if mix.ndim == 2 and mix.shape[0] == 1:
        mix = mix[0]
    if mix.ndim != 1 or sources.ndim != 2 or estimate.ndim != 2:
        raise MetricInputError(f"expected mix (time,), sources and estimate (n_src, time); got "
                               f"{mix.shape}, {sources.shape}, {estimate.shape}")
    if sources.shape[0] != estimate.shape[0]:
        raise MetricInputError(f"{estimate.shape[0]} estimates for {sources.shape[0]} references")
    lengths = {"mixture": mix.shape[-1], "references": sources.shape[-1], "estimates": estimate.shape[-1]}
    if len(set(lengths.values())) != 1:
        raise MetricInputError("length mismatch: " + ", ".join(f"{k} {v}" for k, v in lengths.items())
                               + " samples")
    if mix.shape[-1] == 0:
        raise MetricInputError("empty signals (0 samples)")
    return mix, sources, estimate


def input_problems(mix, sources, estimate) -> list[str]:
    """Why an utterance cannot be scored: [] when it can.

    Silent or non-finite references, non-finite or silent estimates: mir_eval
    refuses them (and any ratio would be meaningless), so the caller flags the row.
    """
    problems = []
    if not np.all(np.isfinite(mix)):
        problems.append("non-finite mixture")
    for kind, sigs in (("reference", sources), ("estimate", estimate)):
        for k, s in enumerate(sigs):
            if not np.all(np.isfinite(s)):
                problems.append(f"non-finite {kind} s{k + 1}")
            elif not np.any(s):
                problems.append(f"silent {kind} s{k + 1}")
    return problems


# ---------------------------------------------------------------------------------------
# The metrics: ref (n_ref, time), ests (n_est, time)
# ---------------------------------------------------------------------------------------
def si_sdr(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """SI-SDR in dB of ``est`` against ``ref`` (same shape), pb_bss_eval's formula."""
    est = est - est.mean(-1, keepdims=True)
    ref = ref - ref.mean(-1, keepdims=True)
    scale = np.sum(ref * est, -1, keepdims=True) / (np.sum(ref**2, -1, keepdims=True) + SI_SDR_EPS)
    proj = scale * ref
    ratio = np.sum(proj**2, -1) / (np.sum((est - proj) ** 2, -1) + SI_SDR_EPS)
    return 10 * np.log10(ratio + SI_SDR_EPS)


def _correlations(ref: np.ndarray, ests: np.ndarray, n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Lags ``0..n_lags-1`` of each reference's autocorrelation ``(n_ref, n_lags)`` and of
    ``xcorr[i, l, j] = sum_t ref_i[t] est_j[t + l]`` ``(n_ref, n_lags, n_est)``.

    One FFT of length >= time + n_lags - 1 (no circular wrap-around on those lags): the
    same numbers as mir_eval's zero-padded projection, half the FFT size of a full correlation.
    """
    from scipy import fft

    n_fft = fft.next_fast_len(ref.shape[-1] + n_lags - 1, real=True)
    R = fft.rfft(ref, n=n_fft, axis=-1)
    E = fft.rfft(ests, n=n_fft, axis=-1)
    acf = fft.irfft(R.real**2 + R.imag**2, n=n_fft, axis=-1)[:, :n_lags]
    xcorr = fft.irfft(R.conj()[:, None, :] * E[None, :, :], n=n_fft, axis=-1)[..., :n_lags]
    return acf, xcorr.transpose(0, 2, 1)


def bss_eval_sdr(ref: np.ndarray, ests: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """BSS Eval SDR of estimate ``j`` against reference ``i`` for each ``(i, j)`` in ``pairs``.

    SDR needs only the projection of the estimate on the 512 shifts of its own
    reference: a symmetric Toeplitz system per reference, solved by Levinson
    recursion (``scipy.linalg.solve_toeplitz``, O(taps^2)) for all its estimates at once.
    Same formula as fast_bss_eval's ``sdr`` (and mir_eval's ``bss_eval_sources``).
    """
    from scipy.linalg import solve_toeplitz

    # unit-norm signals, as fast_bss_eval does: the system is well scaled whatever the level
    ref = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
    ests = ests / np.linalg.norm(ests, axis=-1, keepdims=True)
    acf, xcorr = _correlations(ref, ests, FILTER_LENGTH)
    out = np.empty(len(pairs))
    for i in sorted({i for i, _ in pairs}):
        cols = [j for ii, j in pairs if ii == i]
        b = xcorr[i][:, cols]
        sol = solve_toeplitz(acf[i], b, check_finite=False)
        coh = np.clip(np.sum(b * sol, axis=0), 0.0, 1.0)  # squared cosine with the subspace
        with np.errstate(divide="ignore"):
            sdr = 10 * np.log10(coh / (1 - coh))
        for j, v in zip(cols, sdr):
            out[pairs.index((i, j))] = v
    return np.minimum(out, BSS_CEILING_DB)


def bss_eval_pairwise(ref: np.ndarray, ests: np.ndarray, sir_sar: bool = True) -> dict:
    """BSS Eval v3 of every estimate against every reference.

    Returns ``{"sdr": (n_ref, n_est)[, "sir": ..., "sar": ...]}``: entry ``[i, j]`` is what
    ``mir_eval.separation.bss_eval_sources`` reports for estimate ``j`` when it is matched
    with reference ``i`` (interference measured against all references). SIR and SAR
    need the projection on all references (a block-Toeplitz system): fast_bss_eval.
    """
    if not sir_sar:
        pairs = [(i, j) for i in range(ref.shape[0]) for j in range(ests.shape[0])]
        return {"sdr": bss_eval_sdr(ref, ests, pairs).reshape(ref.shape[0], ests.shape[0])}
    import torch
    from fast_bss_eval.torch.metrics import _base_metrics_bss_eval, square_cosine_metrics

    r, e = torch.from_numpy(np.ascontiguousarray(ref)), torch.from_numpy(np.ascontiguousarray(ests))
    with torch.no_grad():
        coh_sdr, coh_sar = square_cosine_metrics(r, e, filter_length=FILTER_LENGTH, pairwise=True)
        neg = _base_metrics_bss_eval(coh_sdr, coh_sar)
    return {k: np.minimum(-v.numpy(), BSS_CEILING_DB) for k, v in zip(("sdr", "sir", "sar"), neg)}


@functools.lru_cache(maxsize=None)
def _resample_window(p: int, q: int) -> np.ndarray:
    _, utils = _pystoi()
    h = utils._resample_window_oct(p, q)
    return h / np.sum(h)


def resample_oct(x: np.ndarray, p: int, q: int) -> np.ndarray:
    """pystoi's ``utils.resample_oct`` along the last axis, its filter designed once."""
    from scipy.signal import resample_poly

    return resample_poly(x, p, q, window=_resample_window(p, q), axis=-1)


def _pystoi():
    """pystoi's ``stoi`` module (its constants) and ``utils``; the package attribute is the function."""
    import importlib

    return importlib.import_module("pystoi.stoi"), importlib.import_module("pystoi.utils")


def _stoi_frames(x: np.ndarray, framelen: int, hop: int) -> np.ndarray:
    """pystoi's framing ``[x[i:i+framelen] for i in range(0, len(x) - framelen, hop)]``, batched."""
    n = len(range(0, x.shape[-1] - framelen, hop))
    if n == 0:
        return np.zeros(x.shape[:-1] + (0, framelen))
    view = np.lib.stride_tricks.sliding_window_view(x, framelen, axis=-1)
    return view[..., : (n - 1) * hop + 1 : hop, :]


def _overlap_add_half(frames: np.ndarray, hop: int) -> np.ndarray:
    """pystoi's ``_overlap_and_add`` for frames of 2 * hop samples, batched over leading axes."""
    n = frames.shape[-2]
    out = np.zeros(frames.shape[:-2] + ((n + 1) * hop,))
    out[..., : n * hop] += frames[..., :hop].reshape(frames.shape[:-2] + (-1,))
    out[..., hop:] += frames[..., hop:].reshape(frames.shape[:-2] + (-1,))
    return out


def stoi_batch(x: np.ndarray, ys: np.ndarray, fs: int, x_resampled: bool = False,
               ys_resampled: bool = False) -> np.ndarray:
    """``pystoi.stoi(x, y, fs)`` for one clean ``x`` and several ``ys`` ``(n, time)`` at once."""
    ys = np.atleast_2d(ys)
    stoi_mod, utils = _pystoi()
    fs_s, n_frame, n_seg = stoi_mod.FS, stoi_mod.N_FRAME, stoi_mod.N
    if fs != fs_s:
        if not x_resampled:
            x = resample_oct(x, fs_s, fs)
        if not ys_resampled:
            ys = resample_oct(ys, fs_s, fs)
    hop = n_frame // 2
    w = np.hanning(n_frame + 2)[1:-1]
    x_frames = _stoi_frames(x, n_frame, hop) * w
    if x_frames.shape[0] == 0:
        raise MetricInputError(f"too short for STOI ({x.shape[-1]} samples at {fs_s} Hz)")
    y_frames = _stoi_frames(ys, n_frame, hop) * w
    energies = 20 * np.log10(np.linalg.norm(x_frames, axis=-1) + utils.EPS)
    mask = (np.max(energies) - stoi_mod.DYN_RANGE - energies) < 0
    x_sil = _overlap_add_half(x_frames[mask], hop)
    y_sil = _overlap_add_half(y_frames[:, mask], hop)
    # pystoi's stft: overlap=2, frames range(0, len - n_frame, hop), zero-padded FFT
    x_spec = np.fft.rfft(_stoi_frames(x_sil, n_frame, hop) * w, n=stoi_mod.NFFT, axis=-1)
    y_spec = np.fft.rfft(_stoi_frames(y_sil, n_frame, hop) * w, n=stoi_mod.NFFT, axis=-1)
    if x_spec.shape[-2] < n_seg:
        return np.full(ys.shape[0], 1e-5)  # pystoi's value (it warns) for too short speech
    obm = stoi_mod.OBM
    x_tob = np.sqrt(np.einsum("bf,tf->bt", obm, np.abs(x_spec) ** 2))  # (bands, frames)
    y_tob = np.sqrt(np.einsum("bf,ntf->nbt", obm, np.abs(y_spec) ** 2))
    # segments of N frames: (n_segments, bands, N)
    x_seg = np.lib.stride_tricks.sliding_window_view(x_tob, n_seg, axis=-1).transpose(1, 0, 2)
    y_seg = np.lib.stride_tricks.sliding_window_view(y_tob, n_seg, axis=-1).transpose(0, 2, 1, 3)
    norm = np.linalg.norm(x_seg, axis=-1, keepdims=True) / (np.linalg.norm(y_seg, axis=-1, keepdims=True)
                                                           + utils.EPS)
    clip_value = 10 ** (-stoi_mod.BETA / 20)
    y_primes = np.minimum(y_seg * norm, x_seg * (1 + clip_value))
    y_primes = y_primes - y_primes.mean(-1, keepdims=True)
    x_seg = x_seg - x_seg.mean(-1, keepdims=True)
    y_primes = y_primes / (np.linalg.norm(y_primes, axis=-1, keepdims=True) + utils.EPS)
    x_seg = x_seg / (np.linalg.norm(x_seg, axis=-1, keepdims=True) + utils.EPS)
    n_j, n_m = x_seg.shape[0], x_seg.shape[1]
    return np.sum(y_primes * x_seg, axis=(1, 2, 3)) / (n_j * n_m)


def pesq_mode(sample_rate: int) -> str:
    """pb_bss_eval's choice: narrow-band at 8 kHz, wide-band at 16 kHz."""
    modes = {8000: "nb", 16000: "wb"}
    if sample_rate not in modes:
        raise MetricInputError(f"PESQ needs 8 or 16 kHz audio, not {sample_rate} Hz")
    return modes[sample_rate]


def pesq_score(ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> float:
    import pesq

    try:
        return float(pesq.pesq(sample_rate, ref, deg, pesq_mode(sample_rate)))
    except pesq.PesqError as err:
        raise MetricInputError(f"PESQ failed: {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------------------------------
# One utterance
# ---------------------------------------------------------------------------------------
def compute_metrics(mix, sources, estimate, sample_rate: int, metrics_list: Iterable[str]) -> dict:
    """Input and output metrics of one utterance, one value per source.

    ``estimate`` must already be matched to ``sources`` (PIT order). Returns
    ``{"input_<m>": (n_src,), "<m>": (n_src,)}`` for every ``m`` in ``metrics_list``, the
    values of asteroid's ``get_metrics(..., average=False, compute_permutation=False)``.
    Raises :class:`MetricInputError` for a length/shape mismatch or an utterance that
    cannot be scored (silent reference, NaN/inf anywhere, silent estimate).
    """
    metrics_list = list(metrics_list)
    unknown = sorted(set(metrics_list) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {ALL_METRICS}")
    mix, sources, estimate = as_signals(mix, sources, estimate)
    problems = input_problems(mix, sources, estimate)
    if problems:
        raise MetricInputError("; ".join(problems))
    n_src = sources.shape[0]
    out: dict = {}
    if "si_sdr" in metrics_list:
        out["input_si_sdr"] = si_sdr(sources, np.broadcast_to(mix, sources.shape))
        out["si_sdr"] = si_sdr(sources, estimate)
    bss = [m for m in ("sdr", "sir", "sar") if m in metrics_list]
    if bss:
        # estimates and the mixture in one system: columns 0..n_src-1 estimates, n_src the mixture
        ests = np.concatenate([estimate, mix[None]])
        if set(bss) == {"sdr"}:  # only the pairs we report: (k, estimate k) and (k, mixture)
            pairs = [(k, k) for k in range(n_src)] + [(k, n_src) for k in range(n_src)]
            sdr = bss_eval_sdr(sources, ests, pairs)
            out["input_sdr"], out["sdr"] = sdr[n_src:], sdr[:n_src]
        else:
            res = bss_eval_pairwise(sources, ests, sir_sar=True)
            diag = np.arange(n_src)
            for m in bss:
                out["input_" + m] = res[m][:, n_src].copy()
                out[m] = res[m][diag, diag].copy()
    if "stoi" in metrics_list:
        stoi_mod, _ = _pystoi()
        sigs = np.concatenate([sources, estimate, mix[None]])
        if sample_rate != stoi_mod.FS:  # every signal resampled once, the mixture shared
            sigs = resample_oct(sigs, stoi_mod.FS, sample_rate)
        vals = np.array([stoi_batch(sigs[k], sigs[[n_src + k, 2 * n_src]], sample_rate,
                                    x_resampled=True, ys_resampled=True) for k in range(n_src)])
        out["input_stoi"], out["stoi"] = vals[:, 1], vals[:, 0]
    if "pesq" in metrics_list:
        out["input_pesq"] = np.array([pesq_score(sources[k], mix, sample_rate) for k in range(n_src)])
        out["pesq"] = np.array([pesq_score(sources[k], estimate[k], sample_rate) for k in range(n_src)])
    for key, val in out.items():
        if not np.all(np.isfinite(val)):
            raise MetricInputError(f"{key} is not finite: {val.tolist()}")
    return out


def average(values: dict) -> dict:
    """Per-source arrays -> their means as floats (asteroid's ``average=True``)."""
    return {k: float(np.mean(v)) for k, v in values.items()}


def metric_order(metrics_list: Sequence[str]) -> list[str]:
    """The CSV column order: for each metric, ``input_<m>`` then ``<m>``."""
    return [c for m in metrics_list for c in ("input_" + m, m)]
