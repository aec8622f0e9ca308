"""Tests for local.metadata (asteroid wsj0-mix JSON)."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from local.metadata import read_split_metadata, write_split_metadata


def _make_split(root, lengths, n_src=2):
    """split dir with mix/, s1/, ... holding one wav per name, of the given lengths."""
    split = root / "wav8k" / "min" / "tr"
    for stem in ["mix"] + [f"s{k + 1}" for k in range(n_src)]:
        (split / stem).mkdir(parents=True, exist_ok=True)
        for name, n in lengths.items():
            sf.write(str(split / stem / f"{name}.wav"), np.zeros(n), 8000, subtype="PCM_16")
    return split


def test_write_and_read_roundtrip(tmp_path):
    lengths = {"b_1_c_-1": 120, "a_0.5_d_-0.5": 80, "c_2_a_-2": 100}
    split = _make_split(tmp_path, lengths)
    (split / "mix" / "notes.txt").write_text("ignored")
    write_split_metadata(split, 2)
    assert sorted(p.name for p in split.iterdir()) == ["mix", "mix.json", "s1", "s1.json", "s2", "s2.json"]
    names = sorted(lengths)
    for stem in ("mix", "s1", "s2"):
        data = json.loads((split / f"{stem}.json").read_text())
        assert [os.path.basename(p) for p, _ in data] == [n + ".wav" for n in names]
        assert [n for _, n in data] == [lengths[n] for n in names]
        assert all(os.path.isabs(p) and p.endswith(f"/{stem}/" + os.path.basename(p)) for p, _ in data)
    meta = read_split_metadata(split, 2)
    assert [m["name"] for m in meta] == names
    assert meta[0]["mix"] == str(split / "mix" / "a_0.5_d_-0.5.wav")
    assert meta[0]["sources"] == [str(split / s / "a_0.5_d_-0.5.wav") for s in ("s1", "s2")]
    assert meta[0]["n_samples"] == 80


def test_three_sources(tmp_path):
    split = _make_split(tmp_path, {"x": 10, "y": 20}, n_src=3)
    write_split_metadata(split, 3)
    meta = read_split_metadata(split, 3)
    assert [len(m["sources"]) for m in meta] == [3, 3]
    assert meta[1]["sources"][2].endswith("/s3/y.wav")


def test_write_rejects_missing_file(tmp_path):
    split = _make_split(tmp_path, {"x": 10, "y": 20})
    (split / "s2" / "y.wav").unlink()
    with pytest.raises(ValueError, match=r"s2: 1 file\(s\) of mix/ missing \(e.g. y.wav\)"):
        write_split_metadata(split, 2)
    assert not (split / "mix.json").exists()


def test_write_rejects_extra_file_and_missing_folder(tmp_path):
    split = _make_split(tmp_path, {"x": 10})
    sf.write(str(split / "s1" / "z.wav"), np.zeros(10), 8000)
    with pytest.raises(ValueError, match=r"s1: 1 file\(s\) not in mix/ \(e.g. z.wav\)"):
        write_split_metadata(split, 2)
    with pytest.raises(FileNotFoundError, match="s3/"):
        write_split_metadata(split, 3)


def test_write_rejects_length_mismatch(tmp_path):
    split = _make_split(tmp_path, {"x": 10, "y": 20})
    sf.write(str(split / "s1" / "y.wav"), np.zeros(21), 8000, subtype="PCM_16")
    with pytest.raises(ValueError, match="length mismatch for y.wav: mix=20, s1=21, s2=20"):
        write_split_metadata(split, 2)


def test_read_rejects_misaligned_json(tmp_path):
    split = _make_split(tmp_path, {"x": 10, "y": 20})
    write_split_metadata(split, 2)
    s1 = json.loads((split / "s1.json").read_text())
    (split / "s1.json").write_text(json.dumps(s1[::-1]))
    with pytest.raises(ValueError, match=r"s1.json: entry 0 is y.wav but mix.json has x.wav"):
        read_split_metadata(split, 2)
    (split / "s1.json").write_text(json.dumps(s1[:1]))
    with pytest.raises(ValueError, match=r"s1.json: 1 entries but mix.json has 2"):
        read_split_metadata(split, 2)
    s1[1][1] = 99
    (split / "s1.json").write_text(json.dumps(s1))
    with pytest.raises(ValueError, match=r"s1.json: entry 1 \(y.wav\) has 99 samples, mix has 20"):
        read_split_metadata(split, 2)
    (split / "s1.json").write_text(json.dumps([["x.wav"]]))
    with pytest.raises(ValueError, match=r"s1.json: entry 0 is not \[path, n_samples\]"):
        read_split_metadata(split, 2)
    (split / "s1.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"s1.json: cannot parse JSON"):
        read_split_metadata(split, 2)
    write_split_metadata(split, 2)
    (split / "s2.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"s2.json"):
        read_split_metadata(split, 2)


def test_a_moved_corpus_names_the_old_path_and_how_to_reindex(tmp_path):
    from local.metadata import CorpusChanged

    split = _make_split(tmp_path / "old", {"x": 10, "y": 20})
    write_split_metadata(split, 2)
    moved = tmp_path / "new"
    os.rename(tmp_path / "old", moved)  # the JSON still holds the absolute paths under old/
    with pytest.raises(CorpusChanged) as err:
        read_split_metadata(moved / "wav8k" / "min" / "tr", 2)
    msg = str(err.value)
    old_first = str(split / "mix" / "x.wav")
    assert f"names {old_first}, which does not exist" in msg and "moved or deleted" in msg
    assert "re-run data preparation" in msg and "--stage 0" in msg and "\n" not in msg
    assert isinstance(err.value, FileNotFoundError)  # callers that catch FileNotFoundError still do
    write_split_metadata(moved / "wav8k" / "min" / "tr", 2)  # what re-running stage 0 does: re-index
    assert [m["name"] for m in read_split_metadata(moved / "wav8k" / "min" / "tr", 2)] == ["x", "y"]


def test_speakers_from_mixture_names():
    from local.metadata import source_speakers

    assert source_speakers("01aa010b_0.97482_209a010p_-0.97482", 2) == ["01a", "209"]
    assert source_speakers("d321_002_1.82410_d326_006_-1.82410", 2) == ["d321", "d326"]
    assert source_speakers("d321_002_1.82410_d326_006_-1.82410", 3) is None  # not n_src utterances
    assert source_speakers("103-1240-0003_1034-121119-0000", 2) is None  # LibriMix: unknown
