"""The output-level rule: written estimates never clip, sum to the mixture, and are what is scored."""

import csv
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from local.output_level import FULL_SCALE, least_squares_gains, rescale_to_mixture, written_estimates

LSB = 1.0 / 32768.0


def _sources(n=8000, seed=0, level=0.3):
    rng = np.random.default_rng(seed)
    env = np.hanning(n)
    s = rng.standard_normal((2, n)) * env
    return level * s / np.abs(s).max()


def test_free_scales_are_undone_and_the_sum_is_the_mixture():
    """An SI-SNR model may return its sources at any level: the rule puts them back."""
    src = _sources()
    mix = src.sum(0)
    est = src * np.array([[0.013], [7.4]])  # what SI-SNR training allows
    np.testing.assert_allclose(least_squares_gains(mix, est), [1 / 0.013, 1 / 7.4], rtol=1e-9)
    out = written_estimates(mix, est)
    # stated error: half an LSB of quantisation per source, nothing else
    assert np.abs(out.sum(0) - mix).max() <= 2 * 0.5 * LSB + 1e-12
    np.testing.assert_allclose(out, src, atol=0.5 * LSB + 1e-12)
    assert np.all(np.round(out * 32768) == out * 32768)  # exactly the 16-bit values written


def test_peak_limit_only_above_full_scale_with_a_warning(caplog):
    rng = np.random.default_rng(1)
    x = np.hanning(4000) * rng.standard_normal(4000)
    x = 1.5 * x / np.abs(x).max()
    noise = 0.05 * rng.standard_normal(4000)
    src = np.stack([x, -x + noise])  # anti-phase speakers: a quiet mixture of loud sources
    mix = src.sum(0)
    with caplog.at_level(logging.WARNING, logger="local.output_level"):
        out = rescale_to_mixture(mix, 3 * src, name="loud.wav")
    assert np.abs(out).max() == pytest.approx(FULL_SCALE)
    assert "loud.wav: estimates would exceed full scale" in caplog.text
    np.testing.assert_allclose(out / out[0].std(), src / src[0].std(), rtol=1e-9)  # levels kept relative
    q = np.round(written_estimates(mix, 3 * src) * 32768)
    assert q.max() <= 32767 and q.min() >= -32767  # nothing saturates
    caplog.clear()
    quiet = _sources(level=0.5)
    with caplog.at_level(logging.WARNING, logger="local.output_level"):
        out = rescale_to_mixture(quiet.sum(0), 2 * quiet)
    assert not caplog.text
    np.testing.assert_allclose(out, quiet, atol=1e-12)  # no normalisation below full scale


def test_degenerate_estimates_fall_back_to_one_common_gain():
    src = _sources()
    mix = src.sum(0)
    silent = np.stack([2 * mix, np.zeros_like(mix)])
    np.testing.assert_allclose(least_squares_gains(mix, silent), [0.5, 0.5])
    same = np.stack([mix, mix])  # collinear: no unique per-source answer
    np.testing.assert_allclose(least_squares_gains(mix, same), [0.5, 0.5])
    np.testing.assert_allclose(least_squares_gains(mix, -src), [-1, -1])  # a backwards sign is undone
    bad = src.copy()
    bad[0, 3] = np.nan
    assert np.all(np.isfinite(written_estimates(mix, bad)))
    stereo = np.stack([src, 0.5 * src], axis=-1)  # (n_src, time, channels)
    out = written_estimates(np.stack([mix, 0.5 * mix], 1), 3 * stereo)
    assert out.shape == stereo.shape
    assert np.abs(out.sum(0)[:, 1] - 0.5 * mix).max() <= LSB


def _small_model():
    from local.model import ConvTasNetVariant

    torch.manual_seed(0)
    return ConvTasNetVariant(2, n_filters=32, kernel_size=16, stride=8, bn_chan=16, hid_chan=32, skip_chan=16,
                             n_blocks=3, n_repeats=1, norm_type="cLN").eval()


@pytest.mark.parametrize("peak", [0.1, 0.99])
def test_separate_writes_never_clip_and_sum_to_the_mixture(tmp_path, peak, caplog):
    from local.separate import separate_channels, separate_file

    model = _small_model()
    rng = np.random.default_rng(2)
    mix = np.hanning(12000) * rng.standard_normal(12000)
    mix = (peak * mix / np.abs(mix).max()).astype(np.float32)
    sf.write(tmp_path / "m.wav", mix, 8000, subtype="PCM_16")
    mix, _ = sf.read(tmp_path / "m.wav", dtype="float32")
    with caplog.at_level(logging.WARNING, logger="local.output_level"):
        paths = separate_file(model, tmp_path / "m.wav", tmp_path / "out", "m")
    written = np.stack([sf.read(p, dtype="int16")[0] for p in paths])
    assert written.max() <= 32767 and written.min() >= -32767
    raw = separate_channels(model, mix, 8000)
    np.testing.assert_array_equal(written / 32768.0, written_estimates(mix, raw))
    # the written sum is never further from the mixture than silence is, and (unless the peak
    # limit scaled it down) no further than the raw estimates' sum
    err = np.sum((written.sum(0) / 32768.0 - mix) ** 2)
    assert err <= np.sum(mix.astype(np.float64) ** 2) + 1e-6
    if "exceed full scale" not in caplog.text:
        assert err <= np.sum((raw.sum(0) - mix) ** 2) + 1e-6


def test_written_files_sum_to_the_mixture_within_half_an_lsb_per_source(tmp_path):
    """A random Pinv-encoder + softmax-mask model (the paper's Pinv row): its estimates can sum to the mixture,
    and the written files do, to within the stated error of 16-bit quantisation (0.5 LSB per source)."""
    from local.model import ConvTasNetVariant
    from local.separate import separate_file

    torch.manual_seed(0)
    model = ConvTasNetVariant(2, n_filters=64, kernel_size=16, stride=8, bn_chan=16, hid_chan=32, skip_chan=16,
                              n_blocks=3, n_repeats=1, norm_type="cLN", who_is_pinv="encoder",
                              mask_act="softmax").eval()
    mix = (0.8 * np.hanning(16000) * np.random.default_rng(3).standard_normal(16000)).astype(np.float32)
    sf.write(tmp_path / "m.wav", mix, 8000, subtype="PCM_16")
    mix, _ = sf.read(tmp_path / "m.wav", dtype="float64")
    paths = separate_file(model, tmp_path / "m.wav", tmp_path / "out", "m")
    written = np.stack([sf.read(p, dtype="float64")[0] for p in paths])
    assert np.abs(written.sum(0) - mix).max() <= len(paths) * 0.5 * LSB + 1e-6
    assert np.abs(written).max() <= FULL_SCALE


def test_evaluation_scores_exactly_what_it_writes(tmp_path):
    from local.evaluate import main, score_utterance
    from tests.test_evaluate import ML, _fake_experiment

    exp, data, names = _fake_experiment(tmp_path)
    assert main(["--exp-dir", str(exp), "--data-dir", str(data), "--n-examples", "3", "--n-worst", "0"]) == 0
    with open(exp / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    checked = 0
    for idx, row in enumerate(rows):
        folder = exp / "eval" / "examples" / f"ex_{idx}"
        read = lambda name: sf.read(folder / name, dtype="float64")[0]  # noqa: E731
        est = np.stack([read("s1_estimate.wav"), read("s2_estimate.wav")])
        assert np.abs(est).max() <= FULL_SCALE
        if row["flag"]:
            continue
        again = score_utterance({"utt": row["utt"], "mix": read("mixture.wav"),
                                 "sources": np.stack([read("s1.wav"), read("s2.wav")]), "estimate": est,
                                 "sample_rate": 8000, "metrics_list": ML})
        for m in ML:
            assert float(row[m]) == pytest.approx(again[m], rel=1e-12, abs=1e-12), (row["utt"], m)
        checked += 1
    assert checked == 2
