"""Tests for local.mixing and local.audio_io."""
import math
import os

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from local.audio_io import quantize_pcm16, read_audio, write_wav_atomic
from local.metadata import read_split_metadata
from local.mixing import (
    MixEntry,
    create_mixtures,
    mix_sources,
    output_paths,
    parse_mix_list,
    source_gains,
    write_mix_list,
)
from local.p56 import activlev

FS = 16000


def _speechlike(seconds, seed, fs=FS, amp=0.1):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    f = 3 + seed  # syllable rate differs per source
    env = np.clip(np.sin(2 * np.pi * f * np.arange(n) / fs), 0, None)
    return amp * rng.standard_normal(n) * env


@pytest.fixture(scope="module")
def three():
    return [_speechlike(1.0, 1), _speechlike(1.37, 2, amp=0.4), _speechlike(0.81, 3, amp=0.02)]


# ---------------------------------------------------------------------------
# mix_sources
# ---------------------------------------------------------------------------
def test_lengths_min_max(three):
    s1, s2 = three[0], three[1]
    for mode, pick in (("min", min), ("max", max)):
        out = mix_sources([s1, s2], FS, [1.5, -1.5], mode)
        assert set(out) == {8000, 16000}
        mix16, srcs16 = out[16000]
        assert len(mix16) == pick(len(s1), len(s2))
        mix8, srcs8 = out[8000]
        assert len(mix8) == pick(math.ceil(len(s1) / 2), math.ceil(len(s2) / 2))
        assert all(len(s) == len(mix8) for s in srcs8) and all(len(s) == len(mix16) for s in srcs16)
    # max mode: the shorter source is zero padded
    _, srcs = mix_sources([s1, s2], FS, [0.0, 0.0], "max")[16000]
    assert np.all(srcs[0][len(s1):] == 0) and np.any(srcs[0][: len(s1)] != 0)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_peak_and_sum(three, mode):
    out = mix_sources(three, FS, [2.1, -0.7, 0.3], mode)
    for rate, (mix, srcs) in out.items():
        peak = max(np.max(np.abs(mix)), *(np.max(np.abs(s)) for s in srcs))
        assert peak == pytest.approx(0.9, abs=1e-15)
        np.testing.assert_allclose(np.sum(srcs, axis=0), mix, rtol=0, atol=1e-14)


def test_snr_between_scaled_sources(three):
    s1, s2 = three[0], three[1]
    snr1, snr2 = 2.4156, -2.4156
    mix8, srcs8 = mix_sources([s1, s2], FS, [snr1, snr2], "max", target_rates=(8000,))[8000]
    n1, n2 = math.ceil(len(s1) / 2), math.ceil(len(s2) / 2)
    lev1, _ = activlev(srcs8[0][:n1], 8000)
    lev2, _ = activlev(srcs8[1][:n2], 8000)
    assert 10 * math.log10(lev1 / lev2) == pytest.approx(snr1 - snr2, abs=1e-3)
    # the two inputs had very different raw levels (0.1 vs 0.4 amplitude)
    raw = 10 * math.log10(activlev(resample_poly(s1, 1, 2), 8000)[0]
                          / activlev(resample_poly(s2, 1, 2), 8000)[0])
    assert abs(raw - (snr1 - snr2)) > 5


def test_same_gains_at_8k_and_16k(three):
    snrs = [1.2, -1.2, 0.5]
    gains = source_gains(three, FS, snrs)
    out = mix_sources(three, FS, snrs, "max")

    def fitted(outputs, refs):
        return [float(np.dot(o[: len(r)], r) / np.dot(r, r)) for o, r in zip(outputs, refs)]

    g16 = fitted(out[16000][1], three)  # 16 kHz = original signals (rate == fs)
    g8 = fitted(out[8000][1], [resample_poly(s, 1, 2) for s in three])
    r16 = np.array(g16) / np.array(gains)
    r8 = np.array(g8) / np.array(gains)
    # per rate, a single common peak factor multiplies every source's gain
    np.testing.assert_allclose(r16, r16[0], rtol=1e-10)
    np.testing.assert_allclose(r8, r8[0], rtol=1e-10)
    np.testing.assert_allclose(np.array(g16) / np.array(g8), r16[0] / r8[0], rtol=1e-10)
    # rate == fs uses the original samples exactly (no resampling round trip)
    np.testing.assert_allclose(out[16000][1][0][: len(three[0])], g16[0] * three[0], rtol=0, atol=1e-15)


def test_other_native_rate_is_resampled_for_both_targets():
    x = [_speechlike(0.7, 4, fs=22050), _speechlike(0.9, 5, fs=22050)]
    out = mix_sources(x, 22050, [0.0, 0.0], "min")
    assert len(out[16000][0]) == math.ceil(len(x[0]) * 320 / 441)
    assert len(out[8000][0]) == math.ceil(len(x[0]) * 160 / 441)


def test_mix_sources_errors(three):
    with pytest.raises(ValueError, match="mode"):
        mix_sources(three[:2], FS, [0, 0], "mean")
    with pytest.raises(ValueError, match="2 sources but 1 SNRs"):
        mix_sources(three[:2], FS, [0], "min")
    with pytest.raises(ValueError, match="source 2.*silent"):
        mix_sources([three[0], np.zeros(4000)], FS, [0, 0], "min")


# ---------------------------------------------------------------------------
# mix lists and names
# ---------------------------------------------------------------------------
def test_name_and_properties():
    e = MixEntry((("wsj0/si_tr_s/01t/01to030v.wav", "1.9857"), ("/abs/40n/40na010x.wav", "-1.9857")))
    assert e.name == "01to030v_1.9857_40na010x_-1.9857"
    assert e.n_src == 2
    assert e.snrs == (1.9857, -1.9857)
    e3 = MixEntry((("a/x.wav", "0"), ("b/y.wav", "2.5"), ("c/z.wav", "-0.06110")))
    assert e3.name == "x_0_y_2.5_z_-0.06110" and e3.n_src == 3


def test_parse_and_write_mix_list(tmp_path):
    p = tmp_path / "mix_2_spk_tr.txt"
    p.write_text("a/x.wav 1.5 b/y.wav -1.5\n\n  c/z.wav 0.25   a/x.wav -0.25\n")
    entries = parse_mix_list(p)
    assert [e.name for e in entries] == ["x_1.5_y_-1.5", "z_0.25_x_-0.25"]
    q = tmp_path / "sub" / "copy.txt"
    write_mix_list(q, entries)
    assert parse_mix_list(q) == entries
    assert q.read_text() == "a/x.wav 1.5 b/y.wav -1.5\nc/z.wav 0.25 a/x.wav -0.25\n"
    assert [f.name for f in q.parent.iterdir()] == ["copy.txt"]  # no temp left


@pytest.mark.parametrize(
    "lines,n_src,lineno,what",
    [
        (["a.wav 1 b.wav -1", "", "a.wav 1 b.wav"], 2, 3, "expected 4 fields"),
        (["a.wav 1 b.wav -1", "a.wav one b.wav -1"], 2, 2, "SNR of source 1"),
        (["a.wav 1 b.wav nan"], 2, 1, "SNR of source 2"),
        (["a.wav 1 b.wav -1"], 3, 1, "expected 6 fields"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path, lines, n_src, lineno, what):
    p = tmp_path / "bad.txt"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=what) as ei:
        parse_mix_list(p, n_src=n_src)
    assert str(ei.value).startswith(f"{p}:{lineno}: ")


# ---------------------------------------------------------------------------
# audio_io
# ---------------------------------------------------------------------------
def test_write_wav_atomic_and_read_audio(tmp_path):
    x = np.array([0.5, -0.5, 0.9, 1.0, -1.0, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768])
    np.testing.assert_array_equal(quantize_pcm16(x), [16384, -16384, 29491, 32767, -32768, 1, -1, 2])
    out = tmp_path / "a" / "b" / "x.wav"
    write_wav_atomic(out, x, 8000)
    info = sf.info(str(out))
    assert info.subtype == "PCM_16" and info.samplerate == 8000 and info.frames == len(x)
    y, sr = read_audio(out)
    assert sr == 8000 and y.dtype == np.float64
    np.testing.assert_array_equal(y, quantize_pcm16(x) / 32768.0)
    assert sorted(os.listdir(out.parent)) == ["x.wav"]
    with pytest.raises(ValueError, match="NaN/inf"):
        write_wav_atomic(tmp_path / "n.wav", np.array([0.1, np.nan]), 8000)
    with pytest.raises(ValueError, match="NaN/inf"):
        write_wav_atomic(out, np.array([np.inf]), 8000)
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert sorted(os.listdir(out.parent)) == ["x.wav"]  # old file intact, no temp
    assert read_audio(out)[0].size == len(x)


def test_read_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_audio(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="bad.wav"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 8000, subtype="PCM_16")
    with pytest.raises(ValueError, match="empty.wav.*empty"):
        read_audio(empty)
    st = tmp_path / "st.wav"
    sf.write(str(st), np.zeros((10, 2)), 8000, subtype="PCM_16")
    with pytest.raises(ValueError, match="st.wav.*2 channels"):
        read_audio(st)


# ---------------------------------------------------------------------------
# create_mixtures
# ---------------------------------------------------------------------------
@pytest.fixture()
def tree(tmp_path, three):
    root = tmp_path / "wsj0"
    names = ["si_tr_s/011/011a0101.wav", "si_tr_s/012/012c0201.wav", "si_tr_s/013/013o0301.wav"]
    for name, x in zip(names, three):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / name), x, FS, subtype="PCM_16")
    entries = [
        MixEntry(((names[0], "1.2"), (names[1], "-1.2"))),
        MixEntry(((names[2], "0.5123"), (str(root / names[0]), "-0.5123"))),  # absolute path
    ]
    return root, names, entries


def _all_outputs(entries, out, rates, modes):
    return [p for e in entries for r in rates for m in modes for p in output_paths(e, out, "tr", r, m)]


def test_create_mixtures_tree(tmp_path, tree):
    root, names, entries = tree
    out = tmp_path / "out"
    rates, modes = (8000, 16000), ("min", "max")
    create_mixtures(entries, root, out, "tr", sample_rates=rates, modes=modes, progress=False)
    files = _all_outputs(entries, out, rates, modes)
    assert len(files) == 2 * 2 * 2 * 3
    assert str(files[0]) == str(out / "wav8k" / "min" / "tr" / "mix" / "011a0101_1.2_012c0201_-1.2.wav")
    for f in files:
        info = sf.info(str(f))
        assert info.subtype == "PCM_16" and info.channels == 1
        assert info.samplerate == (8000 if "wav8k" in str(f) else 16000)
    # the files are mix_sources' output quantised to 16 bit
    srcs = [read_audio(root / n)[0] for n in names[:2]]
    ref = mix_sources(srcs, FS, [1.2, -1.2], "max")
    for rate in rates:
        paths = output_paths(entries[0], out, "tr", rate, "max")
        for p, want in zip(paths, [ref[rate][0]] + ref[rate][1]):
            got, sr = read_audio(p)
            assert sr == rate and len(got) == len(want)
            assert np.max(np.abs(got - want)) <= 0.5 / 32768 + 1e-12
        # written sources sum to the written mixture up to rounding
        got = [read_audio(p)[0] for p in paths]
        assert np.max(np.abs(got[1] + got[2] - got[0])) <= 1.5 / 32768
    # metadata aligned in every (rate, mode) folder
    for rate, rd in ((8000, "wav8k"), (16000, "wav16k")):
        for mode in modes:
            meta = read_split_metadata(out / rd / mode / "tr", 2)
            assert [m["name"] for m in meta] == sorted(e.name for e in entries)
            for m in meta:
                assert os.path.isabs(m["mix"]) and len(m["sources"]) == 2
                assert m["n_samples"] == sf.info(m["mix"]).frames == sf.info(m["sources"][1]).frames

    # resume: nothing is rewritten
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    create_mixtures(entries, root, out, "tr", sample_rates=rates, modes=modes, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    # one output lost: only that mixture is redone
    lost = output_paths(entries[1], out, "tr", 16000, "max")[2]
    lost.unlink()
    create_mixtures(entries, root, out, "tr", sample_rates=rates, modes=modes, progress=False)
    assert lost.is_file()
    for f in _all_outputs(entries[:1], out, rates, modes):
        assert f.stat().st_mtime_ns == mtimes[f]
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_create_mixtures_parallel_matches_inline(tmp_path, tree):
    root, _, entries = tree
    create_mixtures(entries, root, tmp_path / "a", "cv", sample_rates=(8000,), progress=False)
    create_mixtures(entries, root, tmp_path / "b", "cv", sample_rates=(8000,), nj=2, progress=False)
    fa = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    fb = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.wav"))
    assert fa == fb and len(fa) == 6
    for rel in fa:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "b" / "wav8k" / "min" / "cv" / "s2.json").is_file()


def test_create_mixtures_lists_all_missing_sources(tmp_path, tree):
    root, names, entries = tree
    bad = entries + [
        MixEntry((("si_tr_s/999/gone1.wav", "1"), (names[0], "-1"))),
        MixEntry((("si_tr_s/999/gone2.wav", "1"), ("si_tr_s/999/gone1.wav", "-1"))),
    ]
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError) as ei:
        create_mixtures(bad, root, out, "tt", progress=False)
    msg = str(ei.value)
    assert "2 source file(s) missing" in msg
    assert "gone1.wav" in msg and "gone2.wav" in msg
    assert not out.exists()  # nothing written


def test_create_mixtures_rejects_bad_arguments(tmp_path, tree):
    root, names, entries = tree
    with pytest.raises(ValueError, match="modes"):
        create_mixtures(entries, root, tmp_path / "o", "tr", modes=("avg",), progress=False)
    with pytest.raises(ValueError, match="duplicate"):
        create_mixtures(entries + entries[:1], root, tmp_path / "o", "tr", progress=False)


def test_a_silent_source_is_named_by_its_file(tmp_path, tree):
    root, names, entries = tree
    silent = root / "si_tr_s" / "014" / "014a0101.wav"
    silent.parent.mkdir(parents=True)
    sf.write(str(silent), np.zeros(8000), FS, subtype="PCM_16")
    entry = MixEntry(((names[0], "1.0"), ("si_tr_s/014/014a0101.wav", "-1.0")))
    with pytest.raises(RuntimeError) as err:
        create_mixtures([entry], root, tmp_path / "out", "tr", sample_rates=(8000,), progress=False)
    msg = str(err.value)
    assert f"source file {silent}: cannot normalise a silent (all-zero) signal" in msg, msg
    assert str(root / names[0]) not in msg  # the other, fine source is not blamed


def test_parse_errors_can_name_the_original_of_a_copy(tmp_path):
    p = tmp_path / "copy.txt"
    p.write_text("a.wav 1 b.wav\n")
    with pytest.raises(ValueError, match=r"^/data/user/list\.txt:1: expected 4 fields"):
        parse_mix_list(p, name="/data/user/list.txt")
