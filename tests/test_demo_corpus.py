"""Tests of the eSpeak NG demo corpus (egs/demo)."""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from egs.demo import espeak
from egs.demo.prepare import SNR_RANGE, main, make_mix_list, prepare_demo
from egs.demo.sentences import SentenceGenerator, make_sentence
from egs.demo.speakers import (
    EXCLUDED_VARIANTS,
    SPLITS,
    Speaker,
    make_speakers,
    usable_variants,
    variant_gender,
)

TINY = dict(n_speakers=(4, 2, 2), utts_per_speaker=(3, 3, 3), n_mixtures=(6, 3, 3))
LINE_RE = re.compile(
    r"^(tr|cv|tt)/(d\d{3})/(d\d{3}_\d{3})\.wav (\d\.\d{5}) "
    r"(tr|cv|tt)/(d\d{3})/(d\d{3}_\d{3})\.wav (-\d\.\d{5})$"
)


def _speaker(variant="m3", accent="en-us", pitch=50, prange=50, rate=175) -> Speaker:
    return Speaker("d999", "tr", variant, accent, pitch, prange, rate, variant_gender(variant), vtl=1.0, tilt=0.0)


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- synthesis
def test_synthesize_returns_speech_at_native_rate():
    wav, sr = espeak.synthesize("The quick brown fox jumps over the lazy dog.", _speaker())
    assert sr == 22050 == espeak.sample_rate()
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 1.0 < len(wav) / sr < 6.0
    assert np.sqrt(np.mean(wav.astype(np.float64) ** 2)) > 1e-3
    assert np.max(np.abs(wav)) <= 1.0


def test_synthesize_is_deterministic_and_voice_dependent():
    text = "Please bring the old map to the station."
    a, _ = espeak.synthesize(text, _speaker("f2"), seed=3)
    espeak.synthesize("Something else in between.", _speaker("klatt", "en"))
    b, _ = espeak.synthesize(text, _speaker("f2"), seed=3)
    assert np.array_equal(a, b)  # fresh library state for every call
    c, _ = espeak.synthesize(text, _speaker("m3"), seed=3)
    d, _ = espeak.synthesize(text, _speaker("f2", pitch=70), seed=3)
    assert not (len(a) == len(c) and np.array_equal(a, c))
    assert not (len(a) == len(d) and np.array_equal(a, d))


def test_synthesize_rejects_unknown_voice():
    with pytest.raises(espeak.ESpeakError, match="variant"):
        espeak.synthesize("hello", _speaker("no_such_variant"))
    with pytest.raises(espeak.ESpeakError, match="accent"):
        espeak.synthesize("hello", _speaker(accent="xx-yy"))


def test_missing_library_gives_install_hint(monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    monkeypatch.setattr(espeak, "_ENGINE", None)
    espeak._locate.cache_clear()
    try:
        with pytest.raises(espeak.ESpeakError) as err:
            espeak.synthesize("hello", _speaker())
        assert "pip install espeakng-loader" in str(err.value)
        assert "/nonexistent/libespeak-ng.so" in str(err.value)
    finally:
        espeak._locate.cache_clear()


# ----------------------------------------------------------------------------- speakers
def test_speakers_split_by_variant():
    spk = make_speakers(seed=0)
    assert [len(spk[s]) for s in SPLITS] == [300, 20, 20]
    everyone = [s for split in SPLITS for s in spk[split]]
    ids = [s.id for s in everyone]
    assert len(set(ids)) == len(ids) >= 40
    assert all(re.fullmatch(r"d\d{3}", i) for i in ids)
    variants = {split: {s.variant for s in spk[split]} for split in SPLITS}
    assert not variants["tr"] & variants["cv"]
    assert not variants["tr"] & variants["tt"]
    assert not variants["cv"] & variants["tt"]
    assert len(variants["cv"]) >= 3 and len(variants["tt"]) >= 3
    for split in SPLITS:
        assert all(s.split == split for s in spk[split])
        genders = Counter(s.gender for s in spk[split])
        assert genders["m"] > 0 and genders["f"] > 0, (split, genders)
    # every speaker has a distinct voice configuration
    configs = {(s.variant, s.accent, s.pitch, s.range, s.rate) for s in everyone}
    assert len(configs) == len(everyone)
    assert all(0 <= s.pitch <= 99 and 0 <= s.range <= 99 and 80 <= s.rate <= 450 for s in everyone)
    assert all(s.accent in espeak.ENGLISH_ACCENTS for s in everyone)
    assert not {s.variant for s in everyone} & set(EXCLUDED_VARIANTS)


def test_speakers_deterministic_and_configurable():
    assert make_speakers(5, 3, 4, seed=1) == make_speakers(5, 3, 4, seed=1)
    assert make_speakers(5, 3, 4, seed=1) != make_speakers(5, 3, 4, seed=2)
    small = make_speakers(4, 2, 2, seed=0)
    assert [s.id for split in SPLITS for s in small[split]] == [f"d{k:03d}" for k in range(1, 9)]
    with pytest.raises(ValueError):
        make_speakers(0, 2, 2)


def test_variants_and_genders():
    usable = usable_variants()
    assert len(usable) >= 60
    assert "whisper" not in usable and "m1" in usable and "f1" in usable
    assert variant_gender("m3") == "m" and variant_gender("f2") == "f"
    assert variant_gender("klatt") == "u"
    assert Speaker.from_dict(_speaker().to_dict()) == _speaker()


# ----------------------------------------------------------------------------- sentences
def test_sentence_generator_deterministic_and_varied():
    a = SentenceGenerator(7).sample(300)
    assert a == SentenceGenerator(7).sample(300)
    assert a != SentenceGenerator(8).sample(300)
    assert len(set(a)) > 280
    n_words = [len(s.split()) for s in a]
    assert min(n_words) >= 2 and max(n_words) <= 16
    assert np.std(n_words) > 2
    assert any(s.endswith("?") for s in a) and any(s.endswith(".") for s in a)
    assert all(s[0].isupper() or s[0].isdigit() for s in a)
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    assert make_sentence(rng1) == make_sentence(rng2)


# ----------------------------------------------------------------------------- mix lists
def _utts(n_spk, n_utt, split="tr"):
    return {
        f"d{k:03d}": [f"{split}/d{k:03d}/d{k:03d}_{n:03d}.wav" for n in range(1, n_utt + 1)]
        for k in range(1, n_spk + 1)
    }


@pytest.mark.parametrize("n_spk,n_utt,n_mix", [(10, 5, 300), (3, 2, 12)])  # sparse, dense (all pairs)
def test_make_mix_list_format(n_spk, n_utt, n_mix):
    lines = make_mix_list(_utts(n_spk, n_utt), n_mix, np.random.default_rng(0))
    assert len(lines) == n_mix
    pairs = set()
    for (p1, s1), (p2, s2) in lines:
        m = LINE_RE.match(f"{p1} {s1} {p2} {s2}")
        assert m, (p1, s1, p2, s2)
        assert m.group(2) != m.group(6)  # two different speakers
        assert SNR_RANGE[0] <= float(s1) <= SNR_RANGE[1]
        assert s2 == "-" + s1 and float(s2) == -float(s1)
        pairs.add(frozenset((p1, p2)))
    assert len(pairs) == n_mix  # no duplicates, in either order
    used = Counter(p for (p1, _), (p2, _) in lines for p in (p1, p2))
    assert len(used) == n_spk * n_utt  # every utterance is used
    assert min(used.values()) >= n_mix // (n_spk * n_utt)  # each gets its turn
    with pytest.raises(ValueError):
        make_mix_list(_utts(3, 2), 13, np.random.default_rng(0))


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    summary = prepare_demo(out, seed=0, nj=1, **TINY)
    return out, summary


def test_prepare_layout(tiny):
    out, summary = tiny
    assert all(v == "done" for v in summary["steps"].values())
    assert set(summary["steps"]) == {"sources", "lists", "wav8k/min/tr", "wav8k/min/cv", "wav8k/min/tt"}
    spk = json.loads((out / "speakers.json").read_text())
    assert len(spk) == 8
    assert set(spk[0]) == {"id", "split", "variant", "accent", "pitch", "range", "rate", "gender", "vtl", "tilt", "engine"}
    assert {s["engine"] for s in spk} == {"espeak"}
    by_split = {s: {d["variant"] for d in spk if d["split"] == s} for s in SPLITS}
    assert not by_split["tr"] & (by_split["cv"] | by_split["tt"])

    wavs = sorted((out / "sources").glob("*/*/*.wav"))
    assert len(wavs) == 8 * 3
    names = [w.stem for w in wavs]
    assert len(set(names)) == len(names)
    for w in wavs:
        split, spk_id = w.parts[-3], w.parts[-2]
        assert re.fullmatch(rf"{spk_id}_\d{{3}}", w.stem)
        assert any(d["id"] == spk_id and d["split"] == split for d in spk)
        info = sf.info(str(w))
        assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
        x, _ = sf.read(str(w))
        assert 1.5 + 0.2 - 0.01 <= len(x) / 16000 <= 5.0 + 0.2 + 0.01
        peak = np.max(np.abs(x))
        assert 0.9 * 10 ** (-6 / 20) - 1e-3 <= peak <= 0.9 + 1e-3  # -6..0 dB gain on a 0.9 peak
        # ~0.1 s of silence kept at both ends
        assert np.max(np.abs(x[:1200])) < 0.01 * peak and np.max(np.abs(x[-1200:])) < 0.01 * peak
        assert np.max(np.abs(x[:2000])) > 0 or np.max(np.abs(x[-2000:])) > 0

    for split in SPLITS:
        sent = (out / "sentences" / f"{split}.txt").read_text().splitlines()
        assert len(sent) == {"tr": 12, "cv": 6, "tt": 6}[split]
        assert all(re.fullmatch(r"d\d{3}_\d{3} \S.*", line) for line in sent)

        lines = (out / "mix_lists" / f"mix_2_spk_{split}.txt").read_text().splitlines()
        assert len(lines) == summary["mixtures"][split]
        for line in lines:
            m = LINE_RE.match(line)
            assert m, line
            assert m.group(1) == m.group(5) == split and m.group(2) != m.group(6)
            assert (out / "sources" / line.split()[0]).is_file()
            assert 0.0 <= float(m.group(4)) <= 2.5 and float(m.group(8)) == -float(m.group(4))
        assert len(set(lines)) == len(lines)

        d = out / "wav8k" / "min" / split
        metas = {k: json.loads((d / f"{k}.json").read_text()) for k in ("mix", "s1", "s2")}
        assert {len(v) for v in metas.values()} == {len(lines)}
        for (pm, lm), (p1, l1), (p2, l2) in zip(metas["mix"], metas["s1"], metas["s2"]):
            assert Path(pm).name == Path(p1).name == Path(p2).name
            assert lm == l1 == l2
            assert Path(pm).parent.name == "mix" and Path(p1).parent.name == "s1"
            assert sf.info(pm).samplerate == 8000 and sf.info(pm).frames == lm
        assert len(list((d / "mix").glob("*.wav"))) == len(lines)


def test_prepare_rerun_skips(tiny):
    out, _ = tiny
    probe = out / "wav8k" / "min" / "tr" / "mix.json"
    before = probe.stat().st_mtime_ns
    summary = prepare_demo(out, seed=0, nj=1, **TINY)
    assert all(v == "skipped" for v in summary["steps"].values()), summary["steps"]
    assert probe.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="--out"):
        prepare_demo(out, seed=0, nj=1, **dict(TINY, n_mixtures=(7, 3, 3)))


def test_prepare_resumes_unfinished_step(tiny, tmp_path):
    out, _ = tiny
    (out / "wav8k" / "min" / "cv" / ".done").unlink()
    summary = prepare_demo(out, seed=0, nj=1, **TINY)
    assert summary["steps"]["wav8k/min/cv"] == "done"
    assert summary["steps"]["wav8k/min/tr"] == summary["steps"]["sources"] == "skipped"


def test_prepare_deterministic(tiny, tmp_path):
    """Same seed gives identical files, also with several processes."""
    out, _ = tiny
    other = tmp_path / "again"
    prepare_demo(other, seed=0, nj=2, **TINY)
    rel = [p.relative_to(out) for p in sorted(out.rglob("*")) if p.is_file() and p.suffix != ".json"
           and p.name != ".done"]
    rel_other = [p.relative_to(other) for p in sorted(other.rglob("*")) if p.is_file()
                 and p.suffix != ".json" and p.name != ".done"]
    assert rel == rel_other
    assert _sha1(out / "speakers.json") == _sha1(other / "speakers.json")
    for r in rel:  # sources, sentences, mix lists and mixtures
        assert _sha1(out / r) == _sha1(other / r), r


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["--help"])
    assert err.value.code == 0
    assert "--n-mixtures" in capsys.readouterr().out

    bad = [
        (["--n-speakers", "1", "2", "2"], "--n-speakers"),
        (["--utts-per-speaker", "3", "0", "3"], "--utts-per-speaker"),
        (["--n-speakers", "4", "2", "2", "--utts-per-speaker", "3", "3", "3",
          "--n-mixtures", "6", "10", "3"], "--n-mixtures"),
        (["--sample-rates", "44100"], "--sample-rates"),
        (["--modes", "avg"], "--modes"),
        (["--nj", "0"], "--nj"),
        (["--seed", "-1"], "--seed"),
    ]
    for args, option in bad:
        with pytest.raises(SystemExit) as err:
            main(["--out", str(tmp_path / "x"), "--quiet", *args])
        assert err.value.code == 2
        assert option in capsys.readouterr().err, args
    assert not (tmp_path / "x").exists()


def test_every_speaker_has_its_own_timbre():
    """vtl and tilt give speakers sharing a variant different timbres, within the documented ranges."""
    from egs.demo.speakers import TILT_RANGE, VTL_RANGE

    spk = make_speakers(seed=0)
    everyone = [s for split in SPLITS for s in spk[split]]
    assert all(VTL_RANGE[0] <= s.vtl <= VTL_RANGE[1] and TILT_RANGE[0] <= s.tilt <= TILT_RANGE[1]
               for s in everyone)
    assert len({(s.variant, s.vtl, s.tilt) for s in everyone}) == len(everyone)
    assert max(s.vtl for s in everyone) - min(s.vtl for s in everyone) > 0.2


def test_vocal_tract_length_scales_frequencies():
    """A speaker with vtl 1.1 has its spectrum shifted up by about 10 % relative to vtl 1.0."""
    import dataclasses

    import numpy as np

    from egs.demo.prepare import _render

    base = dataclasses.replace(_speaker(), tilt=0.0, vtl=1.0)
    higher = dataclasses.replace(base, vtl=1.1)
    y0, _ = _render("a long vowel sound", base, 1)
    y1, _ = _render("a long vowel sound", higher, 1)

    def strongest_frequency(y):
        spec = np.abs(np.fft.rfft(y, 2 ** 16))
        return np.fft.rfftfreq(2 ** 16, 1 / 16000)[np.argmax(spec)]

    assert len(y1) < len(y0)  # read at a higher rate: shorter
    assert strongest_frequency(y1) / strongest_frequency(y0) == pytest.approx(1.1, abs=0.03)


def test_inline_preparation_leaves_torch_threads_alone(tmp_path):
    """Toggling torch's thread count breaks MKL's batched solve later in the process (torch 2.11)."""
    import torch

    before = torch.get_num_threads()
    prepare_demo(tmp_path / "demo", seed=3, n_speakers=(2, 2, 2), utts_per_speaker=(2, 2, 2),
                 n_mixtures=(2, 2, 2), nj=1)
    assert torch.get_num_threads() == before
    a = torch.randn(4, 64, 64, dtype=torch.float64)
    torch.linalg.solve(a @ a.transpose(-1, -2) + torch.eye(64, dtype=torch.float64), torch.ones(4, 64, 1,
                                                                                                dtype=torch.float64))


def _run_prepare_sh(out, *extra):
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(["bash", str(repo / "egs" / "demo" / "prepare.sh"), "--out", str(out), "--nj", "1",
                           "--n-speakers", "4", "2", "2", "--utts-per-speaker", "2", "2", "2",
                           "--n-mixtures", "4", "2", "2", "--quiet", *extra],
                          capture_output=True, text=True, timeout=300)


def test_force_never_deletes_a_folder_the_demo_did_not_make(tmp_path):
    """--force ran rm -rf on whatever --data-dir named, a real corpus included."""
    corpus = tmp_path / "wsj0-2mix"
    (corpus / "wav8k" / "min" / "tt" / "mix").mkdir(parents=True)
    precious = corpus / "wav8k" / "min" / "tt" / "mix" / "a.wav"
    precious.write_bytes(b"RIFF")
    res = _run_prepare_sh(corpus, "--force")
    assert res.returncode != 0
    assert "was not made by the demo corpus script" in res.stderr and "nothing was deleted" in res.stderr
    assert precious.read_bytes() == b"RIFF"


def test_force_rebuilds_only_what_the_demo_made(tmp_path):
    out = tmp_path / "demo"
    assert _run_prepare_sh(out).returncode == 0
    (out / "logs").mkdir()
    keep = [out / "logs" / "prepare.log", out / "my_notes.txt"]
    for path in keep:
        path.write_text("mine")
    stale = out / "wav8k" / "min" / "tr" / "mix" / "stale.wav"
    stale.write_bytes(b"x")
    res = _run_prepare_sh(out, "--force")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not stale.exists()  # the demo's own folders were rebuilt from scratch
    assert all(p.read_text() == "mine" for p in keep)
    assert len(json.loads((out / "wav8k" / "min" / "tr" / "mix.json").read_text())) == 4
