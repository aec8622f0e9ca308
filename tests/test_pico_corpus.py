"""The held-out synthesiser (SVOX Pico) and corpora spoken by several engines."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from egs.demo import pico
from egs.demo.prepare import main, prepare_demo
from egs.demo.speakers import Speaker, make_recorded_speakers

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Please call the office before noon and bring the papers."


@pytest.fixture(scope="module", autouse=True)
def installed_engines():
    """tools/install_pico.sh and tools/install_flite.sh: pinned Debian packages (idempotent)."""
    for script in ("install_pico.sh", "install_flite.sh"):
        subprocess.run([str(ROOT / "tools" / script)], check=True, timeout=600)
    pico.pico_paths.cache_clear()


def _speaker(variant="en-US", pitch=100, rate=175):
    return Speaker(id="p001", split="tt", variant=variant, accent="", pitch=pitch, range=0, rate=rate,
                   gender="f", engine="pico")


def _f0(wav, rate):
    """Median autocorrelation pitch of the voiced frames (Hz)."""
    frame, out = rate // 20, []
    for start in range(0, len(wav) - frame, frame // 2):
        x = wav[start:start + frame]
        if np.sqrt(np.mean(x ** 2)) < 0.05:
            continue
        ac = np.correlate(x, x, "full")[frame - 1:]
        lo, hi = rate // 400, rate // 60
        out.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(out))


def test_pico_speaks_both_voices_and_repeats_exactly():
    for voice in pico.VOICES:
        wav, rate = pico.synthesize(TEXT, _speaker(voice))
        assert rate == 16000 and 2.0 < len(wav) / rate < 6.0 and np.abs(wav).max() > 0.1, voice
        assert np.array_equal(wav, pico.synthesize(TEXT, _speaker(voice))[0])


def test_pitch_and_speed_markup_move_the_voice():
    plain, rate = pico.synthesize(TEXT, _speaker())
    low, _ = pico.synthesize(TEXT, _speaker(pitch=60))
    assert _f0(low, rate) < 0.75 * _f0(plain, rate)  # a male range from a female voice
    slow, _ = pico.synthesize(TEXT, _speaker(rate=120))
    assert len(slow) > 1.25 * len(plain)  # 175/120 = 1.46x the duration
    odd, _ = pico.synthesize("Three < four & five > two.", _speaker())  # escaped, not read as markup
    assert len(odd) / rate > 1.0


def test_bad_voice_settings_name_the_setting():
    with pytest.raises(pico.PicoError, match="unknown Pico voice"):
        pico.synthesize(TEXT, _speaker("de-DE"))
    with pytest.raises(pico.PicoError, match="pitch level"):
        pico.synthesize(TEXT, _speaker(pitch=20))


def test_pico_speakers_alternate_genders_on_both_voices():
    speakers = make_recorded_speakers("pico", 8, seed=1)
    assert [s.variant for s in speakers] == sorted(pico.VOICES) * 4
    assert [s.gender for s in speakers] == ["f", "f", "m", "m"] * 2
    for s in speakers:
        lo, hi = pico.PITCH_LEVELS[s.gender]
        assert lo <= s.pitch <= hi and (s.pitch < pico.MALE_BELOW) == (s.gender == "m")
    assert {s.id[0] for s in speakers} == {"p"} and make_recorded_speakers("pico", 8, seed=1) == speakers
    with pytest.raises(ValueError, match="engine must be one of"):
        make_recorded_speakers("espeak", 8)


def test_a_pico_test_set_has_the_demo_layout(tmp_path):
    out = tmp_path / "demo_pico"
    summary = prepare_demo(out, engine="pico", splits=["tt"], n_speakers=(2, 2, 4), utts_per_speaker=(1, 1, 2),
                           n_mixtures=(1, 1, 4))
    assert summary["engine"] == "pico" and summary["mixtures"] == {"tt": 4}
    mixes = json.loads((out / "wav8k" / "min" / "tt" / "mix.json").read_text())
    mix, rate = sf.read(mixes[0][0])
    assert len(mixes) == 4 and rate == 8000 and np.abs(mix).max() > 0.01
    assert {s["engine"] for s in json.loads((out / "speakers.json").read_text())} == {"pico"}


def test_several_engines_share_each_split(tmp_path):
    out = tmp_path / "demo_ef"
    summary = prepare_demo(out, engine=["espeak", "flite"], n_speakers=(5, 4, 4), utts_per_speaker=(1, 1, 1),
                           n_mixtures=(3, 2, 2))
    speakers = json.loads((out / "speakers.json").read_text())
    by_split = {s: [(x["engine"], x["id"][0]) for x in speakers if x["split"] == s] for s in ("tr", "cv", "tt")}
    assert by_split["tr"] == [("espeak", "d")] * 3 + [("flite", "f")] * 2  # the first engine gets the remainder
    assert by_split["tt"] == [("espeak", "d")] * 2 + [("flite", "f")] * 2
    assert len({x["id"] for x in speakers}) == len(speakers) == 13
    assert summary["engine"] == ["espeak", "flite"]
    assert json.loads((out / "sources" / ".done").read_text())["config"]["engine"] == ["espeak", "flite"]
    assert prepare_demo(out, engine=["espeak", "flite"], n_speakers=(5, 4, 4), utts_per_speaker=(1, 1, 1),
                        n_mixtures=(3, 2, 2))["steps"]["sources"] == "skipped"
    with pytest.raises(ValueError, match="--n-speakers: 3 cv speakers cannot be shared"):
        prepare_demo(tmp_path / "x", engine=["espeak", "flite"], n_speakers=(5, 3, 4), utts_per_speaker=(1, 1, 1),
                     n_mixtures=(3, 2, 2))
    with pytest.raises(ValueError, match="--engine"):
        prepare_demo(tmp_path / "x", engine=["espeak", "festival"])


def test_without_pico_the_script_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pico, "LOCAL", tmp_path / "none")
    monkeypatch.setattr(pico, "SYSTEM_LANG", tmp_path / "none")
    pico.pico_paths.cache_clear()
    try:
        assert main(["--engine", "pico", "--splits", "tt", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    finally:
        pico.pico_paths.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: SVOX Pico is not installed: run tools/install_pico.sh") and "\n" not in err
    assert not (tmp_path / "x" / "sources").exists()
