"""SVOX Pico as a third synthesiser for the demo corpus, the one no demo model trains on.

Pico (the compact engine of Android's first text-to-speech) builds its two English voices,
``en-US`` and ``en-GB``, from recordings of two female speakers: HMM-based statistical
parametric synthesis, unlike eSpeak's formant rules and Flite's diphones and clustergen
voices. A test set spoken by it (``python -m egs.demo.prepare --engine pico --splits tt``)
measures how far a model carries over to a synthesiser it never heard, also when it was
trained on eSpeak and Flite together (``--engine espeak flite``).

Pico is a library, called here through ctypes (``tools/pico``, made by ``tools/install_pico.sh``
from Debian's pinned packages, else a system ``libttspico.so.0`` with its voices in
``/usr/share/pico/lang``). Pitch and speaking rate are Pico's own ``<pitch level>`` and
``<speed level>`` markup; a speaker with a pitch level below :data:`MALE_BELOW` speaks at
about 100 Hz instead of 165 Hz and counts as male. The engine is fully reset before every
utterance, so its output depends only on the text and the voice.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple
from xml.sax.saxutils import escape

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .speakers import Speaker

__all__ = ["PicoError", "VOICES", "PITCH_LEVELS", "MALE_BELOW", "synthesize", "pico_paths"]

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "tools" / "pico"
SYSTEM_LANG = Path("/usr/share/pico/lang")
#: Pico's English voices: the text-analysis and signal-generation resources of each.
VOICES: Dict[str, Tuple[str, str]] = {
    "en-US": ("en-US_ta.bin", "en-US_lh0_sg.bin"),
    "en-GB": ("en-GB_ta.bin", "en-GB_kh0_sg.bin"),
}
#: Pitch levels (percent of the voice's own pitch) drawn for female and male speakers: the
#: voices are female (about 165 Hz); 55-70% gives 90-115 Hz, a male range.
PITCH_LEVELS = {"f": (85, 125), "m": (55, 70)}
MALE_BELOW = 80
#: eSpeak's default rate in words per minute: a speaker's ``rate`` is read relative to it.
REFERENCE_WPM = 175
SAMPLE_RATE = 16000
INSTALL_HINT = "run tools/install_pico.sh (or install libttspico0 and libttspico-data with your package manager)"

_MEMORY = 2_500_000  # bytes one voice works in (what Debian's pico2wave gives it)
_STEP_BUSY = 201  # pico_getData: more samples follow
_RESET_FULL = 0  # pico_resetEngine: also restarts the noise generator (a soft reset does not)


class PicoError(RuntimeError):
    """Pico is missing or failed; the message says what to do."""


@lru_cache(maxsize=1)
def pico_paths() -> Tuple[str, Path]:
    """The Pico library and its voice folder: tools/pico's when installed there, else the system's."""
    local = LOCAL / "usr" / "lib" / "x86_64-linux-gnu" / "libttspico.so.0"
    if local.is_file():
        return str(local), LOCAL / "usr" / "share" / "pico" / "lang"
    found = ctypes.util.find_library("ttspico")
    if found and SYSTEM_LANG.is_dir():
        return found, SYSTEM_LANG
    raise PicoError(f"SVOX Pico is not installed: {INSTALL_HINT}")


class _Voice:
    """One Pico system running one voice's engine (Pico runs one engine per system), made on
    first use in each process and kept for its life."""

    def __init__(self, voice: str) -> None:
        library, lang = pico_paths()
        self.lib = ctypes.CDLL(library)
        self.memory = ctypes.create_string_buffer(_MEMORY)  # Pico keeps pointers into it
        self.system = ctypes.c_void_p()
        self._check(self.lib.pico_initialize(self.memory, ctypes.c_uint32(_MEMORY), ctypes.byref(self.system)),
                    "initialise")
        name = voice.encode()
        self._check(self.lib.pico_createVoiceDefinition(self.system, name), f"define voice {voice}")
        for file in VOICES[voice]:
            path = lang / file
            if not path.is_file():
                raise PicoError(f"Pico's voice file {path} is missing: {INSTALL_HINT}")
            resource = ctypes.c_void_p()
            self._check(self.lib.pico_loadResource(self.system, str(path).encode(), ctypes.byref(resource)),
                        f"load {path}")
            res_name = ctypes.create_string_buffer(200)
            self._check(self.lib.pico_getResourceName(self.system, resource, res_name), f"name {path}")
            self._check(self.lib.pico_addResourceToVoiceDefinition(self.system, name, res_name.value),
                        f"add {file} to voice {voice}")
        self.engine = ctypes.c_void_p()
        self._check(self.lib.pico_newEngine(self.system, name, ctypes.byref(self.engine)), f"start voice {voice}")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise PicoError(f"Pico could not {what} (status {status}): {INSTALL_HINT}")

    def speak(self, markup: str) -> np.ndarray:
        # A full reset first: Pico's noise generator otherwise runs on from the last utterance, and
        # what a speaker says would depend on what its process said before (on --nj).
        self._check(self.lib.pico_resetEngine(self.engine, ctypes.c_int32(_RESET_FULL)), "reset")
        text = markup.encode("utf-8") + b"\0"  # Pico reads up to and including the terminating NUL
        buf, got, kind, taken = ctypes.create_string_buffer(256), ctypes.c_int16(), ctypes.c_int16(), ctypes.c_int16()
        chunks, pos = [], 0
        while pos < len(text):
            piece = text[pos : pos + 4096]
            self._check(self.lib.pico_putTextUtf8(self.engine, piece, ctypes.c_int16(len(piece)), ctypes.byref(taken)),
                        "read the text")
            pos += taken.value
            while True:  # drain what the text so far produced
                status = self.lib.pico_getData(self.engine, buf, ctypes.c_int16(len(buf)), ctypes.byref(got),
                                               ctypes.byref(kind))
                if status < 0:
                    raise PicoError(f"Pico failed while speaking (status {status})")
                chunks.append(buf.raw[: got.value])
                if status != _STEP_BUSY:
                    break
        return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768.0


@lru_cache(maxsize=None)
def _voice(name: str) -> _Voice:
    return _Voice(name)


def synthesize(text: str, voice: "Speaker", seed: int = 0) -> Tuple[np.ndarray, int]:
    """Synthesise ``text`` with ``voice.variant`` (a Pico voice) at ``voice.pitch`` percent of its
    pitch and ``voice.rate`` words per minute.

    ``seed`` is accepted for the engine interface and unused: Pico is deterministic.
    Returns ``(waveform, sample_rate)``: float32 in [-1, 1) at 16 kHz.
    """
    if voice.variant not in VOICES:
        raise PicoError(f"unknown Pico voice {voice.variant!r}; choose one of {sorted(VOICES)}")
    if not 50 <= int(voice.pitch) <= 200:
        raise PicoError(f"Pico pitch level must be in 50..200 (percent), got {voice.pitch}")
    if not 80 <= int(voice.rate) <= 450:
        raise PicoError(f"rate must be in 80..450 words per minute, got {voice.rate}")
    speed = round(100 * int(voice.rate) / REFERENCE_WPM)
    markup = f'<pitch level="{int(voice.pitch)}"><speed level="{speed}">{escape(text)}</speed></pitch>'
    return _voice(voice.variant).speak(markup), SAMPLE_RATE
