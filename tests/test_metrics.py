"""local.metrics equals the reference implementations (mir_eval, pystoi, pb_bss_eval, pesq)."""

import warnings

import numpy as np
import pytest

from local.metrics import (MetricInputError, bss_eval_pairwise, compute_metrics, input_problems, si_sdr,
                           stoi_batch)

TOL_DB, TOL_STOI = 0.01, 0.001


def speech_like(rng, n, fs, f0):
    """Voiced-speech stand-in: harmonics of a gliding f0 under a syllable-rate envelope, with pauses."""
    t = np.arange(n) / fs
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / fs
    x = sum(rng.uniform(0.2, 1) / h * np.sin(h * phase + rng.uniform(0, 6)) for h in range(1, 12) if h * f0 < fs / 2.2)
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    return 0.1 * x * env + 1e-3 * rng.standard_normal(n)


def fixture_set(fs=8000, n_src=2, seconds=1.5, seed=0):
    """(mix, sources, estimate) triples from bad to good separation, as a system would give."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    out = []
    for quality in (0.05, 0.3, 1.0):
        sources = np.stack([speech_like(rng, n, fs, 110 + 70 * k) for k in range(n_src)])
        mix = sources.sum(0) + 1e-4 * rng.standard_normal(n)  # like 16-bit files: not an exact sum
        leak = quality * np.roll(sources[::-1], 3, axis=-1)
        filt = np.convolve(sources[0], [0.8, 0.15, 0.05])[:n]
        est = sources + leak + 0.02 * quality * rng.standard_normal(sources.shape)
        est[0] = 0.7 * est[0] + 0.3 * filt
        out.append((mix, sources, est))
    return out


def mir_eval_bss(ref, est):
    from mir_eval.separation import bss_eval_sources

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bss_eval_sources(ref, est, compute_permutation=False)[:3]


@pytest.mark.parametrize("n_src", [2, 3])
def test_bss_eval_equals_mir_eval(n_src):
    for mix, sources, est in fixture_set(n_src=n_src, seconds=1.0):
        ours = compute_metrics(mix, sources, est, 8000, ["sdr", "sir", "sar"])
        ref_out = mir_eval_bss(sources, est)
        ref_in = mir_eval_bss(sources, np.stack([mix] * n_src))
        for i, m in enumerate(("sdr", "sir", "sar")):
            np.testing.assert_allclose(ours[m], ref_out[i], atol=TOL_DB, rtol=0)
            np.testing.assert_allclose(ours["input_" + m], ref_in[i], atol=TOL_DB, rtol=0)


def test_exact_sum_has_a_finite_input_sar():
    from local.metrics import BSS_CEILING_DB

    _, sources, est = fixture_set()[0]
    got = compute_metrics(sources.sum(0), sources, est, 8000, ["sdr", "sir", "sar"])
    assert np.all(np.isfinite(got["input_sar"])) and np.all(got["input_sar"] <= BSS_CEILING_DB)


def test_sdr_alone_equals_sdr_with_sir_sar():
    mix, sources, est = fixture_set()[1]
    alone = bss_eval_pairwise(sources, est, sir_sar=False)["sdr"]
    full = bss_eval_pairwise(sources, est, sir_sar=True)["sdr"]
    np.testing.assert_allclose(alone, full, atol=1e-6)


def test_si_sdr_equals_pb_bss_eval():
    from pb_bss_eval.evaluation import si_sdr as ref_si_sdr

    for mix, sources, est in fixture_set():
        np.testing.assert_allclose(si_sdr(sources, est), ref_si_sdr(sources, est), atol=1e-9)
        got = compute_metrics(mix, sources, est, 8000, ["si_sdr"])
        np.testing.assert_allclose(got["input_si_sdr"], [ref_si_sdr(s, mix) for s in sources], atol=1e-9)


@pytest.mark.parametrize("fs", [8000, 10000, 16000])
def test_stoi_equals_pystoi(fs):
    from pystoi import stoi

    for mix, sources, est in fixture_set(fs=fs):
        got = stoi_batch(sources[0], np.stack([est[0], mix]), fs)
        np.testing.assert_allclose(got, [stoi(sources[0], est[0], fs), stoi(sources[0], mix, fs)],
                                   atol=TOL_STOI, rtol=0)
        full = compute_metrics(mix, sources, est, fs, ["stoi"])
        np.testing.assert_allclose(full["stoi"], [stoi(s, e, fs) for s, e in zip(sources, est)], atol=TOL_STOI)
        np.testing.assert_allclose(full["input_stoi"], [stoi(s, mix, fs) for s in sources], atol=TOL_STOI)


def test_stoi_of_too_short_speech_is_pystois_value():
    from pystoi import stoi

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(3000), rng.standard_normal(3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert stoi_batch(x, y[None], 8000)[0] == stoi(x, y, 8000) == 1e-5


@pytest.mark.parametrize("fs,mode", [(8000, "nb"), (16000, "wb")])
def test_pesq_equals_pesq_package(fs, mode):
    import pesq

    mix, sources, est = fixture_set(fs=fs, seconds=2.0)[2]
    got = compute_metrics(mix, sources, est, fs, ["pesq"])
    np.testing.assert_allclose(got["pesq"], [pesq.pesq(fs, s, e, mode) for s, e in zip(sources, est)], atol=1e-6)
    np.testing.assert_allclose(got["input_pesq"], [pesq.pesq(fs, s, mix, mode) for s in sources], atol=1e-6)


def test_pesq_refuses_other_rates():
    mix, sources, est = fixture_set(fs=8000, seconds=1.0)[0]
    with pytest.raises(MetricInputError, match="8 or 16 kHz"):
        compute_metrics(mix, sources, est, 22050, ["pesq"])


def test_all_metrics_equal_asteroid_get_metrics():
    from asteroid.metrics import get_metrics

    mix, sources, est = fixture_set(seconds=2.0)[1]
    names = ["si_sdr", "sdr", "sir", "sar", "stoi", "pesq"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_metrics(mix[None], sources, est, sample_rate=8000, metrics_list=names, average=False)
    ours = compute_metrics(mix, sources, est, 8000, names)
    assert set(ours) == set(ref)
    for key in ours:
        tol = TOL_STOI if "stoi" in key else TOL_DB
        np.testing.assert_allclose(ours[key], np.ravel(ref[key]), atol=tol, rtol=0, err_msg=key)


# --------------------------------------------------------------------------- bad input
def test_length_mismatch_is_a_clear_error():
    mix, sources, est = fixture_set()[0]
    with pytest.raises(MetricInputError, match="length mismatch"):
        compute_metrics(mix, sources, est[:, :-5], 8000, ["si_sdr"])
    with pytest.raises(MetricInputError, match="estimates for"):
        compute_metrics(mix, sources, est[:1], 8000, ["si_sdr"])


def test_silent_reference_and_non_finite_estimate_are_refused():
    mix, sources, est = fixture_set()[0]
    silent = sources.copy()
    silent[1] = 0
    assert input_problems(mix, silent, est) == ["silent reference s2"]
    with pytest.raises(MetricInputError, match="silent reference s2"):
        compute_metrics(mix, silent, est, 8000, ["si_sdr", "sdr"])
    bad = est.copy()
    bad[0, 10] = np.nan
    bad[1, 3] = np.inf
    assert input_problems(mix, sources, bad) == ["non-finite estimate s1", "non-finite estimate s2"]
    with pytest.raises(MetricInputError, match="non-finite estimate"):
        compute_metrics(mix, sources, bad, 8000, ["stoi"])


def test_unknown_metric_is_an_error():
    mix, sources, est = fixture_set()[0]
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(mix, sources, est, 8000, ["snr"])


def test_too_short_for_stoi_is_refused():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 150))
    with pytest.raises(MetricInputError, match="too short for STOI"):
        compute_metrics(s.sum(0), s, s, 8000, ["stoi"])
