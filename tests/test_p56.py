"""Tests for local.p56 (ITU-T P.56 method B, voicebox activlev)."""
import math

import numpy as np
import pytest
from scipy.signal import sosfreqz

from local.p56 import (
    _causal_running_max,
    _highpass_sos,
    _lowpass_sos,
    active_level,
    activlev,
    normalize_active_level,
)

FS = 8000


def _sine(amp, seconds, freq=1000.0, fs=FS):
    t = np.arange(int(seconds * fs)) / fs
    return amp * np.sin(2 * np.pi * freq * t)


def _speechlike(seconds, seed=0, fs=FS):
    """Noise with a 4 Hz syllabic on/off envelope (about half active)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    env = (np.sin(2 * np.pi * 4 * np.arange(n) / fs) > 0).astype(float)
    return 0.1 * rng.standard_normal(n) * env


def test_running_max_matches_bruteforce():
    rng = np.random.default_rng(1)
    x = rng.integers(-6, 6, 200).astype(float)
    x[rng.random(200) < 0.2] = -np.inf
    for n in (1, 2, 3, 7, 8, 50, 199, 200, 500):
        ref = np.array([x[max(0, i - n + 1): i + 1].max() for i in range(x.size)])
        np.testing.assert_array_equal(_causal_running_max(x, n), ref)


def test_input_filters_have_voicebox_band_edges():
    # high-pass: -0.25 dB at 200 Hz, flat in band, > 50 dB stop band at 50 Hz
    _, h = sosfreqz(_highpass_sos(FS, 200.0, ""), worN=[50.0, 200.0, 1000.0, 3999.0], fs=FS)
    db = 20 * np.log10(np.abs(h))
    assert db[0] < -50
    assert db[1] == pytest.approx(-0.25, abs=0.01)
    assert abs(db[2]) < 0.01 and abs(db[3]) < 1e-6
    # low-pass (used at fs >= 14 kHz): -0.25 dB at 5.5 kHz, unit DC gain
    _, h = sosfreqz(_lowpass_sos(48000, 5500.0, ""), worN=[0.0, 5500.0], fs=48000)
    db = 20 * np.log10(np.abs(h))
    assert abs(db[0]) < 1e-9
    assert db[1] == pytest.approx(-0.25, abs=0.01)


def test_sine_has_known_active_level():
    amp = 0.3
    lev, af = activlev(_sine(amp, 5.0), FS)
    assert lev == pytest.approx(amp ** 2 / 2, rel=0.01)
    assert af == pytest.approx(1.0, abs=0.01)
    lev_db, _ = activlev(_sine(amp, 5.0), FS, "d")
    assert lev_db == pytest.approx(10 * math.log10(lev), abs=1e-9)


def test_normalised_output_has_unit_level():
    for x in (_sine(0.3, 3.0), _speechlike(4.0)):
        y, lev, af = activlev(x, FS, "n")
        # exactly the voicebox definition y = s / sqrt(lev)
        np.testing.assert_allclose(y * math.sqrt(lev), x, rtol=0, atol=1e-15)
        # Re-measuring gives 1 up to the histogram-binning effect of a
        # non-power-of-two gain (observed ~1e-5; see local.p56 docstring).
        lev_y, af_y = activlev(y, FS)
        assert lev_y == pytest.approx(1.0, rel=1e-4)
        assert af_y == pytest.approx(af, rel=1e-4)
        y2, lev2 = normalize_active_level(x, FS)
        np.testing.assert_array_equal(y2, y)
        assert lev2 == lev


def test_half_silence_same_level_and_half_activity():
    for burst in (_sine(0.2, 20.0), 0.1 * np.random.default_rng(3).standard_normal(20 * FS)):
        lev_full, af_full = activlev(burst, FS)
        with_sil = np.concatenate([burst, np.zeros(burst.size)])
        y, lev_sil, af_sil = activlev(with_sil, FS, "n")
        # the 0.2 s hangover after the burst counts as active: ~1% on 20 s
        assert lev_sil == pytest.approx(lev_full, rel=0.02)
        assert lev_sil < lev_full
        assert af_full == pytest.approx(1.0, abs=0.01)
        assert 0.5 < af_sil < 0.52
        y_full, _, _ = activlev(burst, FS, "n")
        assert np.max(np.abs(y[: burst.size])) == pytest.approx(np.max(np.abs(y_full)), rel=0.01)


def test_scale_invariance():
    x = _speechlike(4.0, seed=5)
    lev, af = activlev(x, FS)
    # power-of-two gains leave the log2 histogram unchanged: exact
    for a in (2.0, 0.25, 8.0):
        lev_a, af_a = activlev(a * x, FS)
        assert lev_a == pytest.approx(a * a * lev, rel=1e-12)
        assert af_a == pytest.approx(af, rel=1e-12)
    # other gains: equal up to histogram binning
    for a in (0.3, 1.7, 12.5):
        assert activlev(a * x, FS)[0] == pytest.approx(a * a * lev, rel=1e-3)


def test_activity_factor_of_speechlike_signal():
    lev, af = activlev(_speechlike(6.0, seed=2), FS)
    # on/off at 4 Hz: half the time on, the 0.2 s hangover bridges the gaps
    assert 0.9 < af <= 1.0
    lp, af2, long_term = active_level(_speechlike(6.0, seed=2), FS)
    assert (lp, af2) == (lev, af)
    assert long_term == pytest.approx(af * lev, rel=1e-12)


def test_long_term_option_and_pad_zeros():
    x = _sine(0.3, 2.0)
    (lev, lt), af = activlev(x, FS, "l")
    assert lt == pytest.approx(af * lev, rel=1e-12)
    # voicebox >= 2017 appends 0.35 s of zeros: the 0.2 s hangover plus the
    # ~0.1 s envelope decay after the last sample then count as active time
    lev_pad, af_pad = activlev(x, FS, pad_zeros=True)
    assert lev_pad == pytest.approx(lev * 2.0 / 2.3, rel=0.02)
    assert af_pad < af


def test_silent_and_invalid_inputs():
    assert activlev(np.zeros(1000), FS) == (0.0, 0.0)
    y, lev, af = activlev(np.zeros(10), FS, "n")
    assert lev == 0.0 and np.all(y == 0)
    with pytest.raises(ValueError, match="silent"):
        normalize_active_level(np.zeros(1000), FS)
    with pytest.raises(ValueError, match="unsupported mode"):
        activlev(np.ones(10), FS, "a")
    with pytest.raises(ValueError, match="NaN"):
        activlev(np.array([0.1, np.nan]), FS)
    with pytest.raises(ValueError, match="1-D"):
        activlev(np.ones((3, 3)), FS)


# ---------------------------------------------------------------------------
# Parity with voicebox: reference values computed once with GNU Octave 7.3
# running voicebox activlev.m (rev. 2516) + maxfilt.m (rev. 4054) on exactly
# the signals built by _reference_signal below.
# ---------------------------------------------------------------------------
def _lcg_noise(n, seed):
    """Deterministic uniform noise in [-1, 1) (32-bit LCG, Numerical Recipes constants)."""
    out = np.empty(n)
    s = seed & 0xFFFFFFFF
    for i in range(n):
        s = (1664525 * s + 1013904223) & 0xFFFFFFFF
        out[i] = s / 2**31 - 1.0
    return out


def _reference_signal(fs, seconds, seed):
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2  # syllables
    env *= np.sin(2 * np.pi * 0.4 * t + seed) > -0.5  # pauses
    voiced = sum(np.sin(2 * np.pi * k * 130.0 * t) / k for k in range(1, 12))
    return 0.05 * env * (voiced + 2.0 * _lcg_noise(n, seed)) + 0.01 * np.sin(2 * np.pi * 50 * t)


@pytest.mark.parametrize(
    "fs,seconds,seed,mode,lev_ref,af_ref",
    [
        (8000, 3.0, 1, "", 0.00071472605426247868, 0.75124454745274016),
        (8000, 2.0, 7, "", 0.00071210627201138521, 0.70123081166145906),
        (16000, 1.5, 3, "", 0.00057795075460372405, 0.5241204802473729),  # with 5.5 kHz low-pass
        (8000, 3.0, 1, "1", 0.00067474841921357431, 0.75035717488921794),
        (8000, 3.0, 1, "e", 0.00067443632413457491, 0.75065462221402823),
        (8000, 3.0, 1, "0", 0.00077089354318762111, 0.98580300889246086),
        (8000, 3.0, 1, "4", 0.00076624178932563044, 0.98519952999993432),
    ],
)
def test_matches_voicebox_reference(fs, seconds, seed, mode, lev_ref, af_ref):
    x = _reference_signal(fs, seconds, seed)
    lev, af = activlev(x, fs, mode)
    assert lev == pytest.approx(lev_ref, rel=1e-8)
    assert af == pytest.approx(af_ref, rel=1e-8)
