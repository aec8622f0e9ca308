"""Flite as a second synthesiser for the demo corpus: voices built from recorded speakers.

eSpeak NG (the demo's engine) is a formant synthesiser: its voices are rules, not recordings,
and a model trained on them makes recorded two-speaker mixtures worse (-0.8 dB SI-SNRi, see
``local.model_card.DEMO_MODEL_NOTICE``). Flite's voices are made from recordings of real
people (CMU ARCTIC and the CMU diphone sets): ``kal`` and ``kal16`` concatenate diphones of
one American male, ``awb`` (Scottish male), ``rms`` (American male) and ``slt`` (American
female) are statistical parametric (clustergen) voices trained on a speaker's recordings. A
test set spoken by them measures how far a model carries over to a synthesiser it never heard
(``python -m egs.demo.prepare --engine flite --splits tt``).

Flite is run as a program (``tools/flite``, made by ``tools/install_flite.sh`` from Debian's
pinned 2.2-5 packages, else a ``flite`` on PATH): one process per utterance, writing a wav
file; its output depends only on its arguments (no random state), so the corpus is
reproducible. Speaking rate is Flite's ``duration_stretch``; pitch and timbre come from the
demo's own vocal-tract-length and tilt transforms (:func:`egs.demo.prepare._render`), because
Flite's pitch target moves the diphone voice but barely the clustergen ones.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .speakers import Speaker

__all__ = ["FliteError", "VOICES", "synthesize", "flite_command", "voice_rate"]

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "tools" / "flite"
#: Flite 2.2's English voices from recorded speakers, with their gender; ``awb_time`` (a
#: talking clock that says only times) is left out.
VOICES: Dict[str, str] = {"kal": "m", "kal16": "m", "awb": "m", "rms": "m", "slt": "f"}
#: eSpeak's default rate, in words per minute: a speaker's ``rate`` is read relative to it.
REFERENCE_WPM = 175
INSTALL_HINT = "run tools/install_flite.sh (or install Flite 2.2 with your package manager: apt install flite)"


class FliteError(RuntimeError):
    """Flite is missing or failed; the message says what to do."""


@lru_cache(maxsize=1)
def flite_command() -> Tuple[str, Dict[str, str]]:
    """The flite program and the environment it runs in (its libraries when unpacked in tools/flite)."""
    local = LOCAL / "usr" / "bin" / "flite"
    if local.is_file():
        libs = str(LOCAL / "usr" / "lib" / "x86_64-linux-gnu")
        env = dict(os.environ, LD_LIBRARY_PATH=libs + os.pathsep + os.environ.get("LD_LIBRARY_PATH", ""))
        return str(local), env
    found = shutil.which("flite")
    if found:
        return found, dict(os.environ)
    raise FliteError(f"Flite is not installed: {INSTALL_HINT}")


@lru_cache(maxsize=1)
def _installed_voices() -> Tuple[str, ...]:
    program, env = flite_command()
    out = subprocess.run([program, "-lv"], env=env, capture_output=True, text=True, check=False).stdout
    return tuple(out.split(":", 1)[-1].split())


def voice_rate(voice: str) -> int:
    """The native sample rate of a voice (``kal`` is an 8 kHz voice, the others 16 kHz)."""
    return 8000 if voice == "kal" else 16000


def synthesize(text: str, voice: "Speaker", seed: int = 0) -> Tuple[np.ndarray, int]:
    """Synthesise ``text`` with ``voice.variant`` (a Flite voice) at ``voice.rate`` words per minute.

    ``seed`` is accepted for the engine interface and unused: Flite is deterministic.
    Returns ``(waveform, sample_rate)``: float32 in [-1, 1) at the voice's native rate.
    """
    import soundfile as sf

    if voice.variant not in VOICES:
        raise FliteError(f"unknown Flite voice {voice.variant!r}; choose one of {sorted(VOICES)}")
    if not 80 <= int(voice.rate) <= 450:
        raise FliteError(f"rate must be in 80..450 words per minute, got {voice.rate}")
    program, env = flite_command()
    if voice.variant not in _installed_voices():
        raise FliteError(f"this flite ({program}) has no voice {voice.variant!r}: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        out = Path(tmp) / "utt.wav"
        cmd = [program, "-voice", voice.variant, "--setf", f"duration_stretch={REFERENCE_WPM / int(voice.rate):.4f}",
               "-t", text, "-o", str(out)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.is_file():
            raise FliteError(f"flite failed for voice {voice.variant} ({done.stderr.strip()[:200]!r})")
        wav, rate = sf.read(str(out), dtype="float32")
    return wav, int(rate)
