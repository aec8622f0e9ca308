"""Datasets over the standard layout: crops, padding, dynamic mixing, rate checks."""

import numpy as np
import pytest
import soundfile as sf
import torch

from local.data import DynamicMixingDataset, MixtureDataset, SeparationDataModule, split_dir
from local.metadata import write_split_metadata


def make_split(root, lengths, rate=8000, n_src=2):
    """A split folder with mixtures of the given lengths (samples); sources are sines."""
    split = root / "wav8k" / "min" / "tr"
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        sources = [0.3 * np.sin(2 * np.pi * (200 + 100 * k + 10 * i) * np.arange(n) / rate) for k in range(n_src)]
        sources = [s * rng.uniform(0.5, 1) for s in sources]
        for k, s in enumerate(sources):
            (split / f"s{k + 1}").mkdir(parents=True, exist_ok=True)
            sf.write(split / f"s{k + 1}" / f"u{i}.wav", s, rate, subtype="PCM_16")
        (split / "mix").mkdir(parents=True, exist_ok=True)
        sf.write(split / "mix" / f"u{i}.wav", sum(sources), rate, subtype="PCM_16")
    write_split_metadata(split, n_src)
    return split


def test_crop_pad_and_drop(tmp_path):
    split = make_split(tmp_path, [8000, 3000, 1000])
    ds = MixtureDataset(split, 2, 8000, segment=0.5, min_segment=0.25)
    assert len(ds) == 2 and ds.n_dropped == 1  # 1000 samples < 0.25 s
    lengths = sorted(ds[i][0].shape[-1] for i in range(len(ds)))
    assert lengths == [4000, 4000]
    mix, src = ds[[it["name"] for it in ds.items].index("u1")]
    assert torch.all(mix[3000:] == 0) and torch.all(src[:, 3000:] == 0)  # zero padding
    assert torch.allclose(src.sum(0), mix, atol=3 / 32768)


def test_validation_crops_are_fixed_and_whole_utterances_are_whole(tmp_path):
    split = make_split(tmp_path, [8000, 6000])
    ds = MixtureDataset(split, 2, 8000, segment=0.5, random_crop=False)
    assert torch.equal(ds[0][0], ds[0][0])
    whole = MixtureDataset(split, 2, 8000, segment=None, return_name=True)
    mix, src, name = whole[0]
    assert mix.shape[-1] == 8000 and src.shape == (2, 8000) and name == "u0"


def test_wrong_sample_rate_is_named(tmp_path):
    split = make_split(tmp_path, [8000])
    ds = MixtureDataset(split, 2, 16000, segment=None)
    with pytest.raises(ValueError, match="8000 Hz but the config says data.sample_rate=16000"):
        ds[0]


def test_dynamic_mixing_makes_new_mixtures_that_sum(tmp_path):
    split = make_split(tmp_path, [8000, 8000, 8000, 8000])
    np.random.seed(0)
    ds = DynamicMixingDataset(split, 2, 8000, segment=0.5, min_segment=0.25, epoch_size=10)
    assert len(ds) == 10
    items = [ds[i] for i in range(4)]
    for mix, src in items:
        assert mix.shape == (4000,) and src.shape == (2, 4000)
        assert torch.allclose(src.sum(0), mix, atol=1e-6)
        assert max(mix.abs().max(), src.abs().max()) <= 0.9 + 1e-6
    assert not torch.equal(items[0][0], items[1][0])


def test_datamodule_missing_corpus_says_what_to_run(tmp_path):
    conf = {"sample_rate": 8000, "mode": "min", "n_src": 2, "segment": 0.5, "min_segment": 0.25,
            "batch_size": 2, "num_workers": 0, "dynamic_mixing": False, "dm_snr_range": 2.5,
            "train_set": "tr", "valid_set": "cv", "test_set": "tt"}
    dm = SeparationDataModule(tmp_path, conf)
    with pytest.raises(FileNotFoundError, match="run data preparation first"):
        dm.setup("fit")
    assert split_dir(tmp_path, conf, "tt") == tmp_path / "wav8k" / "min" / "tt"
