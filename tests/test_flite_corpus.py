"""The held-out-synthesiser test set: demo corpus rules, spoken by Flite's recorded-voice voices."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from egs.demo import flite
from egs.demo.prepare import main, prepare_demo
from egs.demo.speakers import Speaker, make_recorded_speakers

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_speakers=(2, 2, 5), utts_per_speaker=(1, 1, 2), n_mixtures=(1, 1, 6))


@pytest.fixture(scope="module", autouse=True)
def installed_flite():
    """tools/install_flite.sh: pinned Debian packages, unpacked into tools/flite (idempotent)."""
    subprocess.run([str(ROOT / "tools" / "install_flite.sh")], check=True, timeout=600)
    flite.flite_command.cache_clear()


def test_flite_speaks_each_voice_at_its_rate_and_repeats_exactly():
    text = "Please call the office before noon."
    for voice in flite.VOICES:
        spk = Speaker(id="f001", split="tt", variant=voice, accent="", pitch=0, range=0, rate=175, gender="m",
                      engine="flite")
        wav, rate = flite.synthesize(text, spk)
        assert rate == flite.voice_rate(voice) and 1.0 < len(wav) / rate < 4.0, voice
        assert np.abs(wav).max() > 0.05
        again, _ = flite.synthesize(text, spk)
        assert np.array_equal(wav, again)
    slow, rate = flite.synthesize(text, Speaker(id="f001", split="tt", variant="slt", accent="", pitch=0, range=0,
                                                rate=120, gender="f", engine="flite"))
    assert len(slow) > 1.25 * len(flite.synthesize(text, spk)[0])  # 175/120 = 1.46x the duration


def test_speakers_take_the_five_voices_in_turn_with_their_genders():
    speakers = make_recorded_speakers("flite", 10, seed=3)
    assert [s.variant for s in speakers[:5]] == sorted(flite.VOICES)
    assert [s.variant for s in speakers] == sorted(flite.VOICES) * 2
    assert all(s.engine == "flite" and s.gender == flite.VOICES[s.variant] for s in speakers)
    assert len({(s.vtl, s.tilt, s.rate) for s in speakers}) == 10  # each speaker its own timbre
    assert make_recorded_speakers("flite", 10, seed=3) == speakers and make_recorded_speakers("flite", 10, seed=4) != speakers
    old = {k: v for k, v in speakers[0].to_dict().items() if k != "engine"}  # a speakers.json before engines
    assert Speaker.from_dict(old).engine == "espeak"


def test_a_test_only_flite_corpus_has_the_demo_layout_and_repeats(tmp_path):
    out = tmp_path / "demo_flite"
    summary = prepare_demo(out, engine="flite", splits=["tt"], **TINY)
    split = out / "wav8k" / "min" / "tt"
    mixes = json.loads((split / "mix.json").read_text())
    assert len(mixes) == 6 and (split / "s1.json").is_file() and (split / "s2.json").is_file()
    assert not (out / "wav8k" / "min" / "tr").exists() and not (out / "wav8k" / "min" / "cv").exists()
    assert summary["engine"] == "flite" and summary["mixtures"] == {"tt": 6}
    speakers = json.loads((out / "speakers.json").read_text())
    assert {s["engine"] for s in speakers} == {"flite"} and {s["variant"] for s in speakers} == set(flite.VOICES)
    mix, rate = sf.read(mixes[0][0])
    assert rate == 8000 and np.abs(mix).max() > 0.01
    again = prepare_demo(tmp_path / "again", engine="flite", splits=["tt"], **TINY)
    assert again["steps"]["sources"] == "done"
    first = sorted((out / "sources").rglob("*.wav"))
    second = sorted((tmp_path / "again" / "sources").rglob("*.wav"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert prepare_demo(out, engine="flite", splits=["tt"], **TINY)["steps"]["sources"] == "skipped"


def test_an_espeak_corpus_keeps_its_old_marker(tmp_path):
    """The engine and splits enter the marker only when not the default: existing corpora are not rebuilt."""
    out = tmp_path / "demo"
    prepare_demo(out, n_speakers=(2, 2, 2), utts_per_speaker=(1, 1, 1), n_mixtures=(1, 1, 1))
    assert not {"engine", "splits"} & set(json.loads((out / "sources" / ".done").read_text()))


def test_without_flite_the_script_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(flite, "LOCAL", tmp_path / "none")
    monkeypatch.setenv("PATH", str(tmp_path))
    flite.flite_command.cache_clear()
    try:
        assert main(["--engine", "flite", "--splits", "tt", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    finally:
        flite.flite_command.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Flite is not installed: run tools/install_flite.sh") and "\n" not in err
    assert not (tmp_path / "x" / "sources").exists()


def test_bad_splits_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="--splits"):
        prepare_demo(tmp_path, splits=["test"])
