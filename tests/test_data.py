"""Datasets over the standard layout: crops, padding, dynamic mixing, rate checks."""

from pathlib import Path

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
            "batch_size": 2, "num_workers": 0, "dynamic_mixing": False, "dm_snr_range": 2.5, "dm_speed_range": 0.0,
            "train_set": "tr", "valid_set": "cv", "test_set": "tt"}
    dm = SeparationDataModule(tmp_path, conf)
    with pytest.raises(FileNotFoundError, match="run data preparation first"):
        dm.setup("fit")
    assert split_dir(tmp_path, conf, "tt") == tmp_path / "wav8k" / "min" / "tt"


def _dm_conf(**changes):
    conf = {"sample_rate": 8000, "mode": "min", "n_src": 2, "segment": 0.25, "min_segment": 0.25,
            "batch_size": 2, "num_workers": 0, "dynamic_mixing": True, "dm_snr_range": 2.5, "dm_speed_range": 0.0,
            "cache_sources": False, "train_set": "tr", "valid_set": "tr", "test_set": "tr"}
    return {**conf, **changes}


def test_dynamic_mixing_is_seeded_by_key_not_by_global_state(tmp_path):
    split = make_split(tmp_path, [8000] * 6)
    ds = DynamicMixingDataset(split, 2, 8000, segment=0.25, min_segment=0.25, seed=7)
    np.random.seed(1)
    first = ds[5]
    np.random.seed(2)  # the global generator (and so worker or rank seeding) does not matter
    again = ds[5]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other_seed = DynamicMixingDataset(split, 2, 8000, segment=0.25, min_segment=0.25, seed=8)
    assert not torch.equal(first[0], other_seed[5][0])
    assert not torch.equal(first[0], ds[6][0])


def test_epoch_key_sampler_gives_each_rank_and_epoch_its_own_mixtures(tmp_path):
    from local.data import EpochKeySampler

    split = make_split(tmp_path, [8000] * 6)
    ds = DynamicMixingDataset(split, 2, 8000, segment=0.25, min_segment=0.25, epoch_size=8)
    keys = {}
    for epoch in (0, 1):
        for rank in (0, 1):
            sampler = EpochKeySampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=True)
            sampler.set_epoch(epoch)
            keys[epoch, rank] = list(sampler)
    assert all(len(k) == 4 for k in keys.values())
    assert not set(keys[0, 0]) & set(keys[0, 1])  # ranks never draw the same mixture
    assert sorted(keys[0, 0] + keys[0, 1]) == list(range(8))
    assert sorted(keys[1, 0] + keys[1, 1]) == list(range(8, 16))  # next epoch: new mixtures
    # the same (epoch, rank) again gives the same keys: a resumed epoch remakes its mixtures
    again = EpochKeySampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0, drop_last=True)
    again.set_epoch(1)
    assert list(again) == keys[1, 1]


def test_dynamic_mixing_batches_do_not_depend_on_workers_and_validation_stays_fixed(tmp_path):
    make_split(tmp_path, [8000] * 6)
    batches = {}
    for workers in (0, 2):
        dm = SeparationDataModule(tmp_path, _dm_conf(num_workers=workers), seed=3)
        dm.setup("fit")
        assert isinstance(dm.train_set, DynamicMixingDataset)
        assert isinstance(dm.valid_set, MixtureDataset) and not dm.valid_set.random_crop
        loader = dm.train_dataloader()
        batches[workers] = [b[0] for b in loader]
        loader.sampler.set_epoch(1)  # what Lightning does at the start of each epoch
        batches[workers, "epoch 1"] = [b[0] for b in loader]
        val = [[b[0] for b in dm.val_dataloader()] for _ in range(2)]
        assert all(torch.equal(a, b) for a, b in zip(*val))
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))
    assert not torch.equal(batches[0][0], batches[0, "epoch 1"][0])


def _sine_split(root, freq=1000.0, n_utts=4, n=16000, rate=8000):
    """A split whose every source is a sine of ``freq`` Hz (pitch changes are then easy to read)."""
    split = root / "wav8k" / "min" / "tr"
    tone = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    for i in range(n_utts):
        for folder, signal in (("s1", tone), ("s2", tone), ("mix", 2 * tone)):
            (split / folder).mkdir(parents=True, exist_ok=True)
            sf.write(split / folder / f"u{i}.wav", signal, rate, subtype="PCM_16")
    write_split_metadata(split, 2)
    return split


def _peak_hz(signal: np.ndarray, rate=8000, pad=32) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size), pad * signal.size))
    return float(np.argmax(spectrum)) * rate / (pad * signal.size)


def test_speed_perturbation_scales_pitch_by_a_drawn_factor(tmp_path):
    split = _sine_split(tmp_path)
    ds = DynamicMixingDataset(split, 2, 8000, segment=0.5, min_segment=0.25, speed_range=0.1, seed=3)
    percents = []
    for key in range(10):
        mix, src = ds[key]
        assert src.shape == (2, 4000) and torch.allclose(src.sum(0), mix, atol=1e-6)
        for source in src.numpy():
            percent = _peak_hz(source) / 10.0  # 1000 Hz played at p/100 of its speed -> 10 p Hz
            assert abs(percent - round(percent)) < 0.1, percent
            assert 90 <= round(percent) <= 110
            percents.append(round(percent))
    assert len(set(percents)) >= 5  # factors really vary between sources
    assert torch.equal(ds[4][0], ds[4][0])  # still seeded by key
    plain = DynamicMixingDataset(split, 2, 8000, segment=0.5, min_segment=0.25, speed_range=0.0)
    assert abs(_peak_hz(plain[0][1][0].numpy()) - 1000.0) < 1.0
    with pytest.raises(ValueError, match="dm_speed_range"):
        DynamicMixingDataset(split, 2, 8000, segment=0.5, min_segment=0.25, speed_range=0.6)


def test_cached_sources_give_the_same_mixtures_and_stay_compact(tmp_path, monkeypatch):
    split = make_split(tmp_path, [8000, 6000, 3000, 8000])
    # A float source file besides the 16-bit ones: the cache keeps it as float32.
    float_file = Path(MixtureDataset(split, 2, 8000, segment=None).items[0]["sources"][0])
    data, rate = sf.read(float_file, dtype="float32")
    sf.write(float_file, data * 1.001, rate, subtype="FLOAT")
    args = dict(n_src=2, sample_rate=8000, segment=0.5, min_segment=0.25, speed_range=0.1, seed=5)
    plain = DynamicMixingDataset(split, **args)
    cached = DynamicMixingDataset(split, **args, cache_sources=True)
    for key in range(40):  # enough draws to read every file at least once, then again from the cache
        for a, b in zip(plain[key], cached[key]):
            assert torch.equal(a, b), key
    assert plain._cache is None and len(cached._cache) == len(cached.sources)
    assert cached._cache[str(float_file)].dtype == np.float32
    assert {a.dtype for p, a in cached._cache.items() if p != str(float_file)} == {np.dtype(np.int16)}
    # Once cached, a crop reads no file.
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("a cached source was read again"))
    monkeypatch.setattr(sf, "SoundFile", lambda *a, **k: pytest.fail("a cached source was opened again"))
    mix, src = cached[41]
    assert torch.allclose(src.sum(0), mix, atol=1e-6)


def test_the_data_module_fills_the_source_cache_once_before_training(tmp_path, monkeypatch):
    make_split(tmp_path, [8000] * 6)
    dm = SeparationDataModule(tmp_path, _dm_conf(cache_sources=True), seed=3)
    dm.setup("fit")
    train_set = dm.train_set
    assert len(train_set._cache) == len(train_set.sources) == 12  # all read before the first step
    monkeypatch.setattr(sf, "SoundFile", lambda *a, **k: pytest.fail("the cache was read again"))
    dm.setup("fit")  # what Lightning does in fit: the same filled set
    assert dm.train_set is train_set
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (2, 2000)
    with pytest.raises(ValueError, match="cache_sources=False"):
        DynamicMixingDataset(tmp_path / "wav8k" / "min" / "tr", 2, 8000, 0.25, 0.25).fill_cache()


def _named_split(root, names, n=4000, rate=8000):
    """A split whose mixtures have the given names; every source file holds its own noise."""
    split = root / "wav8k" / "min" / "tr"
    rng = np.random.default_rng(0)
    for name in names:
        sources = 0.1 * rng.standard_normal((2, n))
        for folder, signal in (("s1", sources[0]), ("s2", sources[1]), ("mix", sources.sum(0))):
            (split / folder).mkdir(parents=True, exist_ok=True)
            sf.write(split / folder / f"{name}.wav", signal, rate, subtype="PCM_16")
    write_split_metadata(split, 2)
    return split


def _drawn_paths(ds, key):
    """The source files item ``key`` of ``ds`` is made of."""
    seen = []
    real = ds._source

    def record(rng, path, n, percent):
        seen.append(path)
        return real(rng, path, n, percent)

    ds._source = record
    try:
        ds[key]
    finally:
        ds._source = real
    return seen


def _speaker_by_path(split, speakers_of_name):
    """source path -> speaker, ``speakers_of_name(name)`` giving the speakers of s1, s2 (written out per test)."""
    out = {}
    for item in MixtureDataset(split, 2, 8000).items:
        out.update(zip(item["sources"], speakers_of_name(item["name"])))
    return out


# WSJ0-style names: utterance ids whose first 3 characters are the speaker; 01a speaks in 4 of 5 mixtures
WSJ_NAMES = ["01aa0101_1.0_02ba0101_-1.0", "02bb0102_0.5_01ab0102_-0.5", "01ac0103_0.2_03ca0101_-0.2",
             "03cb0102_2.0_01ad0104_-2.0", "02bc0103_0.7_03cc0103_-0.7"]


def test_dynamic_mixing_never_pairs_a_speaker_or_a_file_with_itself(tmp_path):
    split = _named_split(tmp_path, WSJ_NAMES)
    ds = DynamicMixingDataset(split, 2, 8000, segment=0.25, min_segment=0.25, seed=1)
    assert ds.by_speaker
    speaker = _speaker_by_path(split, lambda name: [name[:3], name.split("_")[2][:3]])
    pairs = set()
    for key in range(300):
        paths = _drawn_paths(ds, key)
        assert len(paths) == 2 and len(set(paths)) == 2
        assert len({speaker[p] for p in paths}) == 2, paths
        pairs.add(frozenset(speaker[p] for p in paths))
    assert pairs == {frozenset(p) for p in (("01a", "02b"), ("01a", "03c"), ("02b", "03c"))}  # all still drawn
    # same key, same mixture (also in a fresh dataset); another key, another one
    again = DynamicMixingDataset(split, 2, 8000, segment=0.25, min_segment=0.25, seed=1)
    assert torch.equal(ds[17][0], again[17][0]) and torch.equal(ds[17][1], again[17][1])
    assert _drawn_paths(ds, 17) == _drawn_paths(again, 17)
    assert not torch.equal(ds[17][0], ds[18][0])


def test_dynamic_mixing_demo_names_and_the_fallback_without_speakers(tmp_path):
    demo = _named_split(tmp_path / "demo", ["d001_001_1.00000_d002_001_-1.00000",
                                            "d002_002_0.50000_d001_002_-0.50000"])
    ds = DynamicMixingDataset(demo, 2, 8000, segment=0.25, min_segment=0.25)
    assert ds.by_speaker
    speaker = _speaker_by_path(demo, lambda name: name.split("_")[0::3][:2])  # d001_001_<snr>_d002_...
    for key in range(50):  # two speakers: every draw is one source of d001 and one of d002
        assert {speaker[p] for p in _drawn_paths(ds, key)} == {"d001", "d002"}
    plain = _named_split(tmp_path / "plain", ["u0", "u1", "u2"])  # no speakers in the names
    ds = DynamicMixingDataset(plain, 2, 8000, segment=0.25, min_segment=0.25)
    assert not ds.by_speaker
    for key in range(100):  # fallback: different mixtures, different files
        paths = _drawn_paths(ds, key)
        assert len({Path(p).stem for p in paths}) == 2 and len(set(paths)) == 2
    one_speaker = _named_split(tmp_path / "one", ["01aa0101_1.0_01ab0101_-1.0"])
    with pytest.raises(ValueError, match="2 different speakers, the split has 1"):
        DynamicMixingDataset(one_speaker, 2, 8000, segment=0.25, min_segment=0.25)


def test_a_corpus_file_deleted_under_the_run_is_named(tmp_path):
    from local.metadata import CorpusChanged

    split = make_split(tmp_path, [8000, 8000])
    ds = MixtureDataset(split, 2, 8000, segment=None, return_name=True)
    gone = Path(ds.items[1]["sources"][0])
    gone.unlink()
    with pytest.raises(CorpusChanged) as err:
        ds[1]
    msg = str(err.value)
    assert msg.startswith(f"{gone} is gone: the corpus changed under this run") and "re-run data preparation" in msg
    assert "\n" not in msg and isinstance(err.value, FileNotFoundError)
    damaged = Path(ds.items[0]["sources"][1])
    damaged.write_bytes(b"RIFF but not audio")
    with pytest.raises(ValueError, match="cannot read audio .*the corpus file is damaged"):
        ds[0]


def test_the_data_benchmark_times_both_ways_and_checks_they_agree(tmp_path, capsys):
    import importlib.util

    make_split(tmp_path, [8000, 6000, 8000, 7000])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark_data.py"
    spec = importlib.util.spec_from_file_location("benchmark_data", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    micro = str(Path(__file__).resolve().parent / "conf" / "micro.yml")
    assert bench.main(["--conf", micro, "--data-dir", str(tmp_path), "--batches", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| read from the files |" in out and "| kept in memory (data.cache_sources) |" in out
    assert "8 files" in out and "same batches" in out
    with pytest.raises(SystemExit, match="data.dynamic_mixing is false"):
        bench.main(["--conf", micro, "--data-dir", str(tmp_path), "--set", "data.dynamic_mixing=false",
                    "--set", "data.cache_sources=false"])
