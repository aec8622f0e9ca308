"""16 kHz configs keep a frame's duration and the receptive field; an 8 kHz model resamples 16 kHz input."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from local.config import load_config
from local.data import split_dir
from local.model import ConvTasNetVariant, make_model, receptive_field_seconds

REPO = Path(__file__).resolve().parents[1]
PAIRS = [("paper_best.yml", "paper_best_16k.yml"), ("demo.yml", "demo_16k.yml")]


def _rf(conf):
    fb, mn = conf["filterbank"], conf["masknet"]
    return receptive_field_seconds(fb["kernel_size"], fb["stride"], mn["conv_kernel_size"], mn["n_blocks"],
                                   mn["n_repeats"], conf["data"]["sample_rate"])


@pytest.mark.parametrize("base_name,name", PAIRS)
def test_16k_config_doubles_window_and_keeps_seconds(base_name, name):
    base, conf = load_config(REPO / "conf" / base_name), load_config(REPO / "conf" / name)
    assert base["data"]["sample_rate"] == 8000 and conf["data"]["sample_rate"] == 16000
    assert conf["filterbank"]["kernel_size"] == 2 * base["filterbank"]["kernel_size"]
    assert conf["filterbank"]["stride"] == 2 * base["filterbank"]["stride"]
    frame = lambda c: c["filterbank"]["kernel_size"] / c["data"]["sample_rate"]  # noqa: E731
    assert frame(conf) == frame(base)
    assert _rf(conf) == pytest.approx(_rf(base), rel=1e-12)
    assert conf["masknet"] == base["masknet"]  # the TCN is the same network
    assert {k: v for k, v in conf["data"].items() if k != "sample_rate"} == \
        {k: v for k, v in base["data"].items() if k != "sample_rate"}
    assert split_dir("data/x", conf["data"], "tr") == Path("data/x/wav16k/min/tr")


def test_16k_model_runs_at_16k():
    conf = load_config(REPO / "conf" / "demo_16k.yml",
                       ["masknet.n_blocks=2", "masknet.n_repeats=1", "filterbank.n_filters=16"])
    model = make_model(conf).eval()
    assert model.sample_rate == 16000
    assert model.receptive_field() == pytest.approx(_rf(conf))
    with torch.no_grad():
        out = model(torch.randn(1, 16000))
    assert out.shape == (1, 2, 16000)


def test_8k_model_on_16k_file_resamples_and_says_so(tmp_path, caplog):
    from local.separate import separate_file

    torch.manual_seed(0)
    model = ConvTasNetVariant(2, n_filters=16, kernel_size=16, stride=8, bn_chan=8, hid_chan=16, skip_chan=8,
                              n_blocks=2, n_repeats=1, norm_type="cLN", sample_rate=8000).eval()
    x = 0.3 * np.hanning(16000) * np.random.default_rng(0).standard_normal(16000)
    sf.write(tmp_path / "wide.wav", x.astype(np.float32), 16000, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="local.separate"):
        paths = separate_file(model, tmp_path / "wide.wav", tmp_path / "out", "wide")
    assert "16000 Hz input, model runs at 8000 Hz: resampling" in caplog.text
    for p in paths:
        info = sf.info(p)
        assert (info.samplerate, info.frames) == (16000, 16000)
