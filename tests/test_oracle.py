"""Ideal masks: hand-computed mask values, closed-form separations, the evaluation CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from local.metadata import write_split_metadata
from local.oracle import ideal_masks, main, oracle_separate, stft, stft_params

FS = 8000
DEMO_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "demo.yml")


def test_stft_is_32_ms_hann_with_8_ms_hop():
    assert stft_params(8000) == (256, 64)
    assert stft_params(16000) == (512, 128)
    assert stft(torch.zeros(8000), FS).shape == (129, 8000 // 64 + 1)


def test_mask_values_by_hand():
    """Two sources, 2 frequencies x 2 frames of magnitudes, masks worked out on paper."""
    s1 = torch.tensor([[3.0, 0.0], [1.0, 2.0]])
    s2 = torch.tensor([[1.0, 0.0], [1.0, 6.0]])
    mags = torch.stack([s1, s2])
    ibm = ideal_masks(mags, "ibm")
    # largest magnitude wins; ties (including the silent bin) go to the first source
    assert ibm[0].tolist() == [[1, 1], [1, 0]]
    assert ibm[1].tolist() == [[0, 0], [0, 1]]
    irm = ideal_masks(mags, "irm")  # |S_i| / sum |S_j|, 1/2 where both are silent
    assert torch.allclose(irm[0], torch.tensor([[3 / 4, 1 / 2], [1 / 2, 2 / 8]]))
    assert torch.allclose(irm[1], torch.tensor([[1 / 4, 1 / 2], [1 / 2, 6 / 8]]))
    wfm = ideal_masks(mags, "wfm")  # |S_i|^2 / sum |S_j|^2
    assert torch.allclose(wfm[0], torch.tensor([[9 / 10, 1 / 2], [1 / 2, 4 / 40]]))
    assert torch.allclose(wfm[1], torch.tensor([[1 / 10, 1 / 2], [1 / 2, 36 / 40]]))
    with pytest.raises(ValueError, match="unknown mask kind"):
        ideal_masks(mags, "psm")


@pytest.mark.parametrize("kind", ["ibm", "irm", "wfm"])
def test_masks_sum_to_one_so_estimates_sum_to_the_mixture(kind):
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((3, 4000))
    est = oracle_separate(sources.sum(0), sources, FS, kind)
    assert est.shape == (3, 4000)
    assert torch.allclose(est.sum(0), torch.as_tensor(sources.sum(0)), atol=1e-9)


# Sources that are scaled copies of one signal s: S_1 = a S, S_2 = b S, X = (a + b) S. Every mask
# is then a constant per source, so each estimate is c_i * s_i with c_i in closed form:
#   IBM (|a| > |b|): est_1 = X = (a + b)/a s_1, est_2 = 0
#   IRM: est_i = |c_i| / (|a| + |b|) * (a + b) S          (the mixture's phase, not the source's)
#   WFM: est_i = c_i^2 / (a^2 + b^2) * (a + b) S
def closed_form(a, b, kind):
    gains = np.array([a, b], dtype=float)
    if kind == "ibm":
        weights = (np.abs(gains) == np.abs(gains).max()).astype(float)
    elif kind == "irm":
        weights = np.abs(gains) / np.abs(gains).sum()
    else:
        weights = gains**2 / (gains**2).sum()
    return weights * (a + b) / gains  # est_i / s_i


@pytest.mark.parametrize("a,b", [(2.0, 1.0), (2.0, -1.0), (0.5, 1.5)])
@pytest.mark.parametrize("kind", ["ibm", "irm", "wfm"])
def test_scaled_copies_have_closed_form_estimates(a, b, kind):
    s = np.random.default_rng(1).standard_normal(8000)
    sources = np.stack([a * s, b * s])
    est = oracle_separate(sources.sum(0), sources, FS, kind).numpy()
    expected = closed_form(a, b, kind)[:, None] * sources
    assert np.allclose(est, expected, atol=1e-9)


def si_snr(est, ref):
    ref = ref - ref.mean()
    est = est - est.mean()
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return 10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2))


@pytest.mark.parametrize("kind", ["ibm", "irm", "wfm"])
def test_sinusoids_far_apart_in_frequency_separate_almost_perfectly(kind):
    """500 Hz vs 2500 Hz: 64 STFT bins apart, far beyond the Hann window's leakage."""
    t = np.arange(FS) / FS
    sources = np.stack([np.sin(2 * np.pi * 500 * t), 0.5 * np.sin(2 * np.pi * 2500 * t + 1.0)])
    mix = sources.sum(0)
    est = oracle_separate(mix, sources, FS, kind).numpy()
    for k in range(2):
        assert si_snr(mix, sources[k]) < 7  # the mixture is far from either source
        assert si_snr(est[k], sources[k]) > 35


def make_test_split(root, n_utts=2, seconds=1.0):
    """data/<corpus>/wav8k/min/tt with two sines per mixture in disjoint frequency bands."""
    split = root / "wav8k" / "min" / "tt"
    t = np.arange(int(seconds * FS)) / FS
    for i in range(n_utts):
        sources = [0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t), 0.2 * np.sin(2 * np.pi * (2000 + 70 * i) * t)]
        for k, s in enumerate(sources):
            (split / f"s{k + 1}").mkdir(parents=True, exist_ok=True)
            sf.write(split / f"s{k + 1}" / f"u{i}.wav", s, FS, subtype="FLOAT")
        (split / "mix").mkdir(parents=True, exist_ok=True)
        sf.write(split / "mix" / f"u{i}.wav", sum(sources), FS, subtype="FLOAT")
    write_split_metadata(split, 2)
    return split


def test_cli_writes_evaluate_format_and_skips_when_done(tmp_path, capsys):
    data_dir = tmp_path / "data"
    make_test_split(data_dir)
    out_dir = tmp_path / "oracle"
    argv = ["--data-dir", str(data_dir), "--conf", DEMO_CONF, "--out-dir", str(out_dir)]
    assert main(argv) == 0
    for kind in ("ibm", "irm", "wfm"):
        eval_dir = out_dir / kind / "eval"
        with open(eval_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["utt"] for r in rows] == ["u0", "u1"]
        assert set(rows[0]) == {"utt", "si_sdr", "input_si_sdr", "sdr", "input_sdr", "stoi", "input_stoi"}
        summary = json.loads((eval_dir / "metrics.json").read_text())
        assert summary["n_utterances"] == 2 and summary["mask"] == kind.upper()
        assert summary["si_sdr_imp"] > 20 and summary["sdr_imp"] > 20  # disjoint bands: near-perfect
        assert summary["si_sdr_imp"] == pytest.approx(
            np.mean([float(r["si_sdr"]) - float(r["input_si_sdr"]) for r in rows]))
        assert (eval_dir / "table.md").is_file()
    stamp = (out_dir / "ibm" / "eval" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv + ["--kinds", "ibm"]) == 0  # up to date: skipped, table printed again
    assert (out_dir / "ibm" / "eval" / "metrics.json").stat().st_mtime_ns == stamp
    assert "oracle IBM" in capsys.readouterr().out


def test_cli_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="mix.json not found"):
        main(["--data-dir", str(tmp_path), "--conf", DEMO_CONF, "--out-dir", str(tmp_path / "o")])
