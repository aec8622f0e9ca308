"""egs/librimix: an existing LibriMix folder becomes the standard layout, validated, without copying audio.

The tests build a fake LibriMix tree (Libri2Mix / Libri3Mix, wav8k and wav16k, min, the four
splits, mix_clean / mix_both / s1.. / noise, LibriMix's metadata CSVs) in tmp_path.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from egs.librimix.prepare import PrepareError, main, prepare_librimix
from local.metadata import read_split_metadata

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train-360", "train-100", "dev", "test")


def make_librimix(root, n_src=2, rates=(8000,), n_mix=3, modes=("min",)):
    base = root / f"Libri{n_src}Mix"
    rng = np.random.default_rng(n_src)
    for rate in rates:
        for mode in modes:
            for k, split in enumerate(SPLITS):
                names = [f"{100 * k + i}-1240-000{i}_{200 + i}-135887-0017" for i in range(n_mix + k)]
                folders = ["mix_clean", "mix_both", "noise"] + [f"s{j + 1}" for j in range(n_src)]
                for name in names:
                    n = int(rng.integers(rate // 10, rate // 5))
                    for folder in folders:
                        (base / f"wav{rate // 1000}k" / mode / split / folder).mkdir(parents=True, exist_ok=True)
                        sf.write(base / f"wav{rate // 1000}k" / mode / split / folder / f"{name}.wav",
                                 0.1 * rng.standard_normal(n), rate, subtype="PCM_16")
                meta = base / f"wav{rate // 1000}k" / mode / "metadata"
                meta.mkdir(exist_ok=True)
                (meta / f"mixture_{split}_mix_clean.csv").write_text(
                    "mixture_ID,mixture_path,source_1_path,source_2_path,length\n"
                    + "".join(f"{n},x,y,z,1\n" for n in names))
    return base


def listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def libri2mix(tmp_path):
    return make_librimix(tmp_path / "corpora")


def test_standard_layout_from_libri2mix(libri2mix, tmp_path):
    before = listing(libri2mix)
    out = tmp_path / "data"
    summary = prepare_librimix(out, libri2mix, allow_partial=True, log=lambda m: None)
    assert summary["n_src"] == 2 and summary["train_set"] == "train-360"
    counts = {"tr": 3, "cv": 5, "tt": 6}  # train-360, dev, test of the fake tree
    for split, n in counts.items():
        split_dir = out / "wav8k" / "min" / split
        meta = read_split_metadata(split_dir, 2)
        assert len(meta) == n
        assert os.path.realpath(split_dir / "mix") == os.path.realpath(
            libri2mix / "wav8k" / "min" / {"tr": "train-360", "cv": "dev", "tt": "test"}[split] / "mix_clean")
        assert all(os.path.realpath(m["mix"]).startswith(os.path.realpath(libri2mix)) for m in meta)
    assert not [f for _, _, files in os.walk(out) for f in files if f.endswith(".wav")]  # links only
    assert listing(libri2mix) == before  # nothing written inside LibriMix
    # the split used for training is an option; mix_both instead of mix_clean too
    other = tmp_path / "data100"
    prepare_librimix(other, libri2mix, train_set="train-100", mix_type="both", allow_partial=True,
                     log=lambda m: None)
    assert len(read_split_metadata(other / "wav8k" / "min" / "tr", 2)) == 4
    assert os.path.realpath(other / "wav8k" / "min" / "tr" / "mix").endswith("train-100/mix_both")


def test_the_dataset_reads_it(libri2mix, tmp_path):
    from local.data import MixtureDataset

    prepare_librimix(tmp_path / "data", libri2mix, allow_partial=True, log=lambda m: None)
    ds = MixtureDataset(tmp_path / "data" / "wav8k" / "min" / "tt", 2, 8000, segment=None)
    mix, sources = ds[0][:2]
    assert sources.shape == (2, mix.shape[-1])


def test_counts_must_be_official_unless_allowed(libri2mix, tmp_path):
    with pytest.raises(PrepareError, match=r"3 mixtures, Libri2Mix train-360 has 50800.*--allow-partial"):
        prepare_librimix(tmp_path / "data", libri2mix, log=lambda m: None)
    assert not (tmp_path / "data").exists()  # validation comes before anything is written


def test_every_problem_is_reported_before_anything_is_written(libri2mix, tmp_path):
    root = libri2mix / "wav8k" / "min"
    victim = sorted((root / "dev" / "s2").iterdir())[0]
    victim.unlink()
    bad = sorted((root / "test" / "s1").iterdir())[0]
    sf.write(bad, np.zeros(800), 16000, subtype="PCM_16")  # wrong rate
    extra = root / "train-360" / "mix_clean" / "stray_mixture.wav"
    sf.write(extra, np.zeros(800), 8000, subtype="PCM_16")
    with pytest.raises(PrepareError) as err:
        prepare_librimix(tmp_path / "data", libri2mix, allow_partial=True, log=lambda m: None)
    msg = str(err.value)
    assert f"{root / 'dev' / 's2'}: 1 file(s) of mix_clean/ missing (e.g. {victim.name})" in msg
    assert f"{bad}: 16000 Hz x 1 ch, expected 8000 Hz mono" in msg
    assert "differs from" in msg and "mixture_train-360_mix_clean.csv" in msg and "1 not listed" in msg
    assert not (tmp_path / "data").exists()
    with pytest.raises(PrepareError, match="no such folder"):
        prepare_librimix(tmp_path / "data", libri2mix, sample_rates=[16000], allow_partial=True, log=lambda m: None)
    with pytest.raises(PrepareError, match="no wav8k/ or wav16k/"):
        prepare_librimix(tmp_path / "data", tmp_path, allow_partial=True, log=lambda m: None)


def test_rerun_force_and_foreign_output(libri2mix, tmp_path):
    out = tmp_path / "data"
    first = prepare_librimix(out, libri2mix.parent, allow_partial=True, log=lambda m: None)  # parent works too
    assert set(first["steps"].values()) == {"indexed"}
    again = prepare_librimix(out, libri2mix, allow_partial=True, log=lambda m: None)
    assert set(again["steps"].values()) == {"skipped"}
    forced = prepare_librimix(out, libri2mix, allow_partial=True, force=True, log=lambda m: None)
    assert set(forced["steps"].values()) == {"indexed"}
    foreign = tmp_path / "foreign"
    (foreign / "wav8k").mkdir(parents=True)
    with pytest.raises(PrepareError, match="did not make"):
        prepare_librimix(foreign, libri2mix, allow_partial=True, log=lambda m: None)
    with pytest.raises(PrepareError, match="inside the LibriMix folder"):
        prepare_librimix(libri2mix / "ours", libri2mix, allow_partial=True, log=lambda m: None)


def test_libri3mix_16k_and_max(tmp_path):
    base = make_librimix(tmp_path / "corpora", n_src=3, rates=(16000,), modes=("max",))
    out = tmp_path / "data3"
    assert main(["--out", str(out), "--librimix", str(base), "--sample-rates", "16000", "--modes", "max",
                 "--allow-partial"]) == 0
    meta = read_split_metadata(out / "wav16k" / "max" / "cv", 3)
    assert len(meta) == 5 and len(meta[0]["sources"]) == 3
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["n_src"] == 3 and summary["report"]["wav16k/max/tt"]["mixtures"] == 6


def test_prepare_sh_contract(libri2mix, tmp_path):
    script = REPO / "egs" / "librimix" / "prepare.sh"
    env = {k: v for k, v in os.environ.items() if k != "LIBRIMIX"}
    out = tmp_path / "data"
    res = subprocess.run(["bash", str(script), "--out", str(out), "--nj", "2", "--force"], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0 and "LIBRIMIX" in res.stderr
    res = subprocess.run(["bash", str(script), "--out", str(out), "--nj", "2", "--allow-partial"],
                         env={**env, "LIBRIMIX": str(libri2mix)}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    for split in ("tr", "cv", "tt"):
        for stem in ("mix", "s1", "s2"):
            assert (out / "wav8k" / "min" / split / f"{stem}.json").is_file()


# ---------------------------------------------------------------------------------------------
# the wsj0-2mix side of the same issue: right channel, right length, stated SNR convention
# ---------------------------------------------------------------------------------------------
def test_wsj0_wav_copies_are_checked_against_their_sphere_originals(tmp_path):
    from tests.test_wsj0_2mix import FS, LISTS2, make_ldc_tree, prep, signal_of, write_lists

    wsj0 = make_ldc_tree(tmp_path / "LDC", with_wv2=False)
    for wv1 in list(wsj0.rglob("*.wv1")) + list(wsj0.rglob("*.WV1")):  # a converted copy beside each
        utt = wv1.stem.lower()
        x = signal_of(utt)
        if utt == "050a0501":
            x = x[:-160]  # a truncated conversion
        sf.write(str(wv1.with_suffix(".wav")), x, FS, subtype="PCM_16")
    lists = write_lists(tmp_path / "l", LISTS2)
    logged = []
    with pytest.raises(prep.PrepareError) as err:
        prep.prepare_wsj0_mix(tmp_path / "out", wsj0=wsj0, mix_lists=lists, allow_partial=True, progress=False,
                              log=logged.append)
    msg = str(err.value)
    assert "1 source file(s)" in msg and "050a0501.wav" in msg and "sample_count" in msg
    assert f"{len(signal_of('050a0501')) - 160} samples" in msg
    assert any("speaker 1 at +snr dB and speaker 2 at -snr dB" in m for m in logged)
