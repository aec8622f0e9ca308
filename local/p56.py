"""Active speech level, ITU-T Recommendation P.56 method B (voicebox ``activlev``).

This is a Python re-implementation of ``activlev.m`` from Mike Brookes'
VOICEBOX toolbox, written from the published algorithm and the behaviour of
the MATLAB function; it is what MERL's ``create_wav_2speakers.m`` /
``create_wav_3speakers.m`` call as ``[s, lev] = activlev(s, 8000, 'n')``.

References
----------
* ITU-T Rec. P.56 (03/1993 and 12/2011), "Objective measurement of active
  speech level", method B.
* M. Brookes, VOICEBOX: ``activlev.m`` (rev. 2516, 2012; also rev. 9407, 2017)
  and ``maxfilt.m``.

Algorithm (what :func:`activlev` does, step by step)
----------------------------------------------------
1. Input filter.  A 5th-order high-pass filter, -0.25 dB at 200 Hz
   (Chebyshev type 2 by default, stop band < -50 dB), obtained by bilinear
   transformation of voicebox's s-plane zeros/poles and scaled to unit gain
   at Nyquist.  For ``fs >= 14 kHz`` a matching 5.5 kHz low-pass filter (unit
   DC gain) follows; below 14 kHz it is omitted (so at 8 kHz only the
   high-pass is used).
2. Envelope.  ``|filtered|`` is smoothed by two cascaded one-pole filters with
   time constant 0.03 s (``g = exp(-1/(0.03 fs))``, unit DC gain).
3. Histogram.  ``log2`` of the squared envelope is taken (``frexp``: a sample
   with ``2**(e-1) <= env**2 < 2**e`` gets exponent ``e``; zero gets ``-inf``)
   and a causal running maximum over ``ceil(0.2 fs) + 1`` samples applies the
   0.2 s hangover.  Exponents are binned in 20 bins of 3 dB below
   ``emax = max exponent + 1`` (bin ``j`` holds ``2**(emax-j-1) <= env**2``;
   the last bin also takes everything quieter) and cumulated, so ``kc[j]`` is
   the number of samples whose (hangover-held) envelope is above threshold
   ``c_j``.
4. Threshold search.  ``a_j = 10 log10(sum(filtered**2) / kc[j])`` is the
   active level that threshold ``c_j`` implies and
   ``m_j = a_j - c_j - 15.9 dB`` (the P.56 margin M).  The first ``j`` with
   ``m_j < 0 <= m_{j+1}`` is taken and the level in dB is interpolated
   linearly, ``a_j + f (a_{j+1} - a_j)`` with ``f = 1/(1 - m_{j+1}/m_j)``.
   If no such crossing exists, voicebox's fall-backs are used (last bin if
   ``m`` ends <= 0, else the first bin).
5. ``lev = 10**(dB/10)`` (power), activity factor ``af = ssq / (ns * lev)``;
   the normalised output (mode ``'n'``) is the *unfiltered* input divided by
   ``sqrt(lev)`` (unchanged if the input is all zero).

Known differences from voicebox
-------------------------------
* Filters are run as second-order sections (``scipy.signal.sosfilt``) built
  from the same zeros/poles/gain instead of MATLAB ``filter`` on the expanded
  polynomials; the two agree to floating-point rounding (~1e-12 relative).
* Only the options MERL's scripts need plus the filter selectors are
  supported: ``n``, ``N``, ``d``, ``l``, ``0``, ``h``, ``r``, ``4``, ``1``,
  ``2``, ``e``.  The A-weighting / 468 weighting options (``a``, ``i``), the
  chunked-processing state (``fso``), the VAD output and the plot are not
  implemented.
* Which voicebox revision MERL ran is not recorded.  This module follows
  rev. 2516 (2012), the one current when wsj0-mix was made; on test signals
  it agrees with that MATLAB code (run under GNU Octave) to ~1e-9 relative
  (see ``tests/test_p56.py::test_matches_voicebox_reference``).
* By default the signal is measured as is, like voicebox up to 2016.  voicebox from rev. 9407
  (Feb 2017) appends 0.35 s of zeros before measuring (so the hangover after
  the last word is always counted) unless option ``z`` is given, and uses a
  12.1 kHz instead of 14 kHz limit for dropping the low-pass filter;
  ``pad_zeros=True`` reproduces the zero padding.

Note that the measurement is *not* exactly scale invariant: the histogram
bins are fixed powers of two, so ``activlev(a*x)`` equals ``a**2 *
activlev(x)`` exactly only when ``a`` is a power of two; for other gains the
two differ by a small amount (typically < 0.01 dB) because envelope samples
move between bins.  Consequently re-measuring a normalised signal gives 1 only
approximately.
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import sosfilt, zpk2sos

__all__ = [
    "MARGIN_DB",
    "TIME_CONSTANT_S",
    "HANGOVER_S",
    "N_BINS",
    "activlev",
    "active_level",
    "normalize_active_level",
]

#: P.56 margin M between the active level and the activity threshold (dB).
MARGIN_DB = 15.9
#: Envelope smoothing time constant (s).
TIME_CONSTANT_S = 0.03
#: Hangover time (s).
HANGOVER_S = 0.2
#: Number of 3 dB histogram bins (60 dB range).
N_BINS = 20
#: Sample rate at and above which the 5.5 kHz low-pass filter is applied.
LOWPASS_MIN_FS = 14000
#: Zero padding used by voicebox >= rev. 9407 (s).
PAD_S = 0.35

# s-plane (zeros, poles) of 5th-order high-pass prototypes, -0.25 dB at w=1,
# stop band < -50 dB, as tabulated in voicebox.
_CHEBY2_Z = (0.0, 0.37843443673309j, 0.23388534441447j)
_CHEBY2_P = (-0.66793268833792, -0.20640255179496 + 0.73942185906851j,
             -0.54036889596392 + 0.45698784092898j)
_CHEBY1_Z = (0.0, 0.0, 0.0)  # five zeros at s=0
_CHEBY1_P = (-2.288586431066945, -0.659002835294875 + 1.195798636925079j,
             -0.123261821596263 + 0.947463030958881j)
_ELLIP_Z = (0.0, 0.406667680649209j, 0.613849362744881j)
_ELLIP_P = (-1.964538608244084, -0.538736390607201 + 1.130245082677107j,
            -0.092723126159100 + 0.958193646330194j)

_SUPPORTED_MODES = set("nNdl0hr412e ")


def _expand(roots3) -> np.ndarray:
    """(real, c1, c2) -> the five roots (real, c1, c2, conj c1, conj c2)."""
    r = np.asarray(roots3, dtype=complex)
    return np.concatenate([r, np.conj(r[1:])])


def _prototype(mode: str) -> Tuple[np.ndarray, np.ndarray]:
    if "1" in mode:
        return _expand(_CHEBY1_Z), _expand(_CHEBY1_P)
    if "e" in mode:
        return _expand(_ELLIP_Z), _expand(_ELLIP_P)
    return _expand(_CHEBY2_Z), _expand(_CHEBY2_P)


def _highpass_sos(fs: float, fc: float, mode: str) -> np.ndarray:
    sz, sp = _prototype(mode)
    t = math.tan(math.pi * fc / fs)
    z = 2.0 / (1.0 - sz * t) - 1.0
    p = 2.0 / (1.0 - sp * t) - 1.0
    k = float(np.real(np.prod(-1.0 - p) / np.prod(-1.0 - z)))  # unit gain at Nyquist
    return zpk2sos(z, p, k)


def _lowpass_sos(fs: float, fc: float, mode: str) -> np.ndarray:
    sz, sp = _prototype(mode)
    t = math.tan(math.pi * fc / fs)
    z = 2.0 / (sz / t - 1.0) + 1.0
    p = 2.0 / (sp / t - 1.0) + 1.0
    k = float(np.real(np.prod(1.0 - p) / np.prod(1.0 - z)))  # unit gain at DC
    return zpk2sos(z, p, k)


def _causal_running_max(x: np.ndarray, n: int) -> np.ndarray:
    """``y[i] = max(x[max(0, i-n+1) : i+1])`` (voicebox ``maxfilt(x, 1, n)``)."""
    n = min(max(int(n), 1), max(x.size, 1))
    if n == 1:
        return x.copy()
    return maximum_filter1d(x, size=n, mode="constant", cval=-np.inf, origin=(n - 1) // 2)


def active_level(
    sp: np.ndarray, fs: float, mode: str = "", *, pad_zeros: bool = False
) -> Tuple[float, float, float]:
    """P.56 method B measurement.

    Returns ``(lev, af, long_term)``: the active speech level in power units,
    the activity factor (0..1) and the long-term (mean) power of the filtered
    signal.  For an all-zero signal ``(0.0, 0.0, 0.0)`` is returned.
    ``mode`` takes the filter options of :func:`activlev`.
    """
    bad = set(mode) - _SUPPORTED_MODES
    if bad:
        raise ValueError(f"activlev: unsupported mode option(s) {''.join(sorted(bad))!r} in {mode!r}")
    if not fs or fs <= 0:
        raise ValueError(f"activlev: sample rate must be positive, got {fs!r}")
    x = np.asarray(sp, dtype=np.float64)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"activlev: expected a 1-D signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("activlev: signal contains NaN or inf")
    if "r" in mode:
        mode = "0h" + mode
    elif fs < LOWPASS_MIN_FS:
        mode = "h" + mode
    if pad_zeros:
        x = np.concatenate([x, np.zeros(int(math.ceil(PAD_S * fs)))])
    ns = x.size
    if ns == 0:
        return 0.0, 0.0, 0.0

    # 1. input filters
    sq = x
    if "0" not in mode:
        sq = sosfilt(_highpass_sos(fs, 40.0 if "4" in mode else 200.0, mode), sq)
    if "h" not in mode:
        sq = sosfilt(_lowpass_sos(fs, 5500.0, mode), sq)
    ssq = float(np.dot(sq, sq))
    if not ssq > 0.0:
        return 0.0, 0.0, 0.0

    # 2. envelope: two one-pole smoothers, unit DC gain
    g = math.exp(-1.0 / (fs * TIME_CONSTANT_S))
    env = sosfilt(np.array([[(1.0 - g) ** 2, 0.0, 0.0, 1.0, -2.0 * g, g * g]]), np.abs(sq))

    # 3. exponent histogram with hangover
    mant, expo = np.frexp(env * env)
    qe = expo.astype(np.float64)
    qe[mant == 0] = -np.inf
    nh = int(math.ceil(HANGOVER_S * fs)) + 1
    qe = _causal_running_max(qe, nh)
    emax = float(np.max(qe)) + 1.0
    if emax == -np.inf:  # cannot happen when ssq > 0, kept for safety
        return 0.0, 0.0, 0.0
    with np.errstate(invalid="ignore"):
        bins = np.minimum(emax - qe, N_BINS)  # 1..N_BINS (inf -> N_BINS)
    counts = np.bincount(bins.astype(np.int64) - 1, minlength=N_BINS)
    kc = np.cumsum(counts).astype(np.float64)

    # 4. threshold search
    with np.errstate(divide="ignore"):
        aj = 10.0 * np.log10(ssq / kc)  # +inf where kc == 0
    cj = 10.0 * math.log10(2.0) * (emax - np.arange(1, N_BINS + 1) - 1.0)
    mj = aj - cj - MARGIN_DB
    cross = np.flatnonzero((mj[:-1] < 0) & (mj[1:] >= 0))
    if cross.size:
        jj = int(cross[0])
        jf = 1.0 / (1.0 - mj[jj + 1] / mj[jj])
        lev_db = aj[jj] + jf * (aj[jj + 1] - aj[jj])
    elif mj[-1] <= 0:
        lev_db = aj[-1]  # jj = last-but-one, jf = 1
    else:
        lev_db = aj[0]  # jj = 1, jf = 0
    lp = 10.0 ** (lev_db / 10.0)
    return float(lp), float(ssq / (ns * lp)), float(ssq / ns)


def activlev(
    sp: np.ndarray, fs: float, mode: str = "", *, pad_zeros: bool = False
) -> Union[Tuple[float, float], Tuple[np.ndarray, float, float]]:
    """Python version of voicebox ``activlev``.

    * ``lev, af = activlev(s, fs)``: active level (power) and activity factor;
    * ``sn, lev, af = activlev(s, fs, 'n')``: also the input normalised to
      unit active level, ``sn = s / sqrt(lev)`` (mode ``'N'`` normalises the
      *filtered* signal instead);
    * ``'d'``: levels in dB; ``'l'``: ``lev`` is ``(active, long_term)``.

    Filter options: ``0`` no high-pass, ``4`` high-pass at 40 Hz instead of
    200 Hz, ``h`` no low-pass, ``r`` neither, ``1``/``2``/``e`` Chebyshev 1 /
    Chebyshev 2 (default) / elliptic.  See the module docstring.
    """
    lp, af, lt = active_level(sp, fs, mode, pad_zeros=pad_zeros)
    if "d" in mode:
        lev = (10.0 * math.log10(lp) if lp > 0 else -math.inf,
               10.0 * math.log10(lt) if lt > 0 else -math.inf)
    else:
        lev = (lp, lt)
    lev_out = lev if "l" in mode else lev[0]
    if "n" in mode or "N" in mode:
        x = np.asarray(sp, dtype=np.float64)
        if "N" in mode:
            fmode = mode.replace("N", "").replace("n", "")
            if "r" in fmode:
                fmode = "0h" + fmode
            elif fs < LOWPASS_MIN_FS:
                fmode = "h" + fmode
            if "0" not in fmode:
                x = sosfilt(_highpass_sos(fs, 40.0 if "4" in fmode else 200.0, fmode), x)
            if "h" not in fmode:
                x = sosfilt(_lowpass_sos(fs, 5500.0, fmode), x)
        y = x / math.sqrt(lp) if lp > 0 else x.copy()
        return y, lev_out, af
    return lev_out, af


def normalize_active_level(sp: np.ndarray, fs: float) -> Tuple[np.ndarray, float]:
    """``activlev(sp, fs, 'n')`` without the activity factor: ``(sp/sqrt(lev), lev)``.

    Raises ``ValueError`` for an all-zero (or empty) signal, whose level is 0.
    """
    y, lev, _ = activlev(sp, fs, "n")
    if not lev > 0:
        raise ValueError("cannot normalise a silent (all-zero) signal: its active level is 0")
    return y, float(lev)
