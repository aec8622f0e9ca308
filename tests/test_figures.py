"""Figures: files written with the expected pixel size, UPGMA order, log parsing, seeds."""

import struct

import numpy as np
import pytest
import torch

from local import figures
from local.model import ConvTasNetVariant, serialize_model

TINY = dict(n_filters=24, kernel_size=8, stride=4, bn_chan=8, hid_chan=8, skip_chan=8, n_blocks=1, n_repeats=1)


def png_size(path):
    """(width, height) from the PNG header (IHDR), independent of matplotlib."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def write_log(path, epochs, resumed_epoch=None):
    """A Lightning CSVLogger file: step rows, then one train and one validation row per epoch."""
    lines = ["epoch,step,loss_step,loss_epoch,val_loss,lr-Adam"]
    for e in range(epochs):
        lines += [f"{e},{3 * e},{-e - 0.5},,,", f"{e},{3 * e + 2},,{-float(e)},,",
                  f"{e},{3 * e + 2},,,{-0.8 * e},", f",{3 * e + 2},,,,0.001"]
    if resumed_epoch is not None:  # a resumed run logs an epoch again: the last value counts
        lines.append(f"{resumed_epoch},99,,,-42.0,")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_upgma_order_keeps_clusters_together():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    basis = np.stack([a, b + 0.01, a + 0.01, b, a - 0.01, b - 0.01])
    order = figures.upgma_order(basis)
    assert sorted(order.tolist()) == list(range(6))
    groups = ["a" if i in (0, 2, 4) else "b" for i in order]
    assert groups in (["a"] * 3 + ["b"] * 3, ["b"] * 3 + ["a"] * 3)


def test_fft_magnitude_peaks_at_the_basis_frequency():
    fs, length = 8000, 32
    t = np.arange(length) / fs
    basis = np.stack([np.cos(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 3000 * t)])
    mags = figures.fft_magnitudes(basis, n_fft=256)
    assert mags.shape == (2, 129)
    freqs = np.fft.rfftfreq(256, 1 / fs)
    assert freqs[mags.argmax(axis=1)].tolist() == [1000.0, 3000.0]


@pytest.mark.parametrize("pinv", [None, "encoder"])
def test_basis_figure_from_model_and_from_best_model_file(tmp_path, pinv):
    torch.manual_seed(0)
    model = ConvTasNetVariant(2, **TINY, who_is_pinv=pinv)
    out = figures.plot_basis_functions(model, tmp_path / "basis.png", title="tiny")
    assert out.is_file() and png_size(out) == figures.BASIS_SIZE
    if pinv:  # the encoder drawn is the pseudo-inverse actually applied, not the shared raw basis
        bases = figures.basis_functions(model)
        assert not np.allclose(bases["encoder"], bases["decoder"])
    path = tmp_path / "best_model.pth"
    torch.save(serialize_model(model), path)
    out = figures.plot_basis_functions(path, tmp_path / "from_file.png")
    assert png_size(out) == figures.BASIS_SIZE


def test_read_lightning_csv(tmp_path):
    curves = figures.read_lightning_csv(write_log(tmp_path / "metrics.csv", 3, resumed_epoch=2))
    assert curves["train"] == {0: -0.0, 1: -1.0, 2: -2.0}
    assert curves["val"] == {0: -0.0, 1: -0.8, 2: -42.0}


def test_training_curves_of_several_experiments(tmp_path):
    logs = {"a": write_log(tmp_path / "a" / "metrics.csv", 4), "b": write_log(tmp_path / "b" / "metrics.csv", 2)}
    out = figures.plot_training_curves(logs, tmp_path / "figs" / "curves.png")
    assert out.is_file() and png_size(out) == figures.CURVES_SIZE
    assert not list((tmp_path / "figs").glob(".*.tmp-*"))


def test_ablation_bars_with_missing_rows(tmp_path):
    rows = [
        {"name": "linear_sigmoid", "si_snri": 9.5, "sdri": 9.9, "paper_si_snri": 13.1, "paper_sdri": 13.4},
        {"name": "linear_relu", "si_snri": None, "sdri": None, "paper_si_snri": None, "paper_sdri": None},
        {"name": "oracle_ibm", "kind": "oracle", "si_snri": 14.0, "sdri": 14.5,
         "paper_si_snri": 13.0, "paper_sdri": 13.5},
    ]
    out = figures.plot_ablation_bars(rows, tmp_path / "bars.png")
    assert out.is_file() and png_size(out) == figures.BARS_SIZE


def test_ablation_bars_with_intervals(tmp_path):
    rows = [{"name": "a", "si_snri": 5.0, "sdri": 5.4, "si_snri_ci": [4.6, 5.5], "sdri_ci": None,
             "paper_si_snri": 13.1, "paper_sdri": 13.4}]
    assert png_size(figures.plot_ablation_bars(rows, tmp_path / "bars.png")) == figures.BARS_SIZE


def test_seed_scatter_beside_the_paper(tmp_path):
    rows = [
        {"name": "relu_softmax", "si_snri": 5.5, "si_snri_ci": [5.1, 5.9], "si_snri_seed_values": [5.4, 5.5, 5.6],
         "paper_si_snri": 13.0},
        {"name": "one_seed", "si_snri": 5.0, "si_snri_ci": [4.7, 5.3], "si_snri_seed_values": [5.0],
         "paper_si_snri": None},
        {"name": "not_run", "si_snri": None, "si_snri_ci": None, "si_snri_seed_values": [], "paper_si_snri": 12.9},
        {"name": "oracle_ibm", "kind": "oracle", "si_snri": 13.0, "paper_si_snri": 13.0},  # no seeds: left out
    ]
    out = figures.plot_seed_scatter(rows, tmp_path / "seeds.png")
    assert out.is_file() and png_size(out) == figures.SEEDS_SIZE


def test_seed_curves_of_every_row_and_seed(tmp_path):
    runs = {"a": {0: write_log(tmp_path / "a0" / "metrics.csv", 4), 1: write_log(tmp_path / "a1" / "metrics.csv", 3)},
            "b": {0: write_log(tmp_path / "b0" / "metrics.csv", 2)}}
    out = figures.plot_seed_curves(runs, tmp_path / "curves.png", title="seeds")
    assert out.is_file() and png_size(out) == figures.SEED_CURVES_SIZE


def test_cli(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "best_model.pth"
    torch.save(serialize_model(ConvTasNetVariant(2, **TINY)), path)
    assert figures.main(["basis", str(path), str(tmp_path / "b.png")]) == 0
    write_log(tmp_path / "exp1" / "logs" / "metrics.csv", 2)
    assert figures.main(["curves", str(tmp_path / "c.png"), str(tmp_path / "exp1")]) == 0
    assert png_size(tmp_path / "b.png") == figures.BASIS_SIZE and (tmp_path / "c.png").is_file()
    with pytest.raises(SystemExit, match="no training log"):
        figures.main(["curves", str(tmp_path / "d.png"), str(tmp_path / "nope")])
