"""Minimal ctypes binding to eSpeak NG (the library shipped by the ``espeakng-loader`` wheel).

Only what the demo corpus needs: select a voice (English accent + voice variant),
set pitch, pitch range and rate, and synthesise one sentence to a float32 waveform.

Determinism
-----------
eSpeak NG keeps a lot of synthesis state in C ``static`` variables (pitch
"flutter" index, wave phase, harmonic tables, random-noise generator, ...) that
are never reset between utterances, so synthesising the same sentence twice in
one process gives slightly different audio (even different lengths). To make the
corpus bit-exact reproducible, every call to :func:`synthesize` uses a *fresh*
instance of the shared library: it is ``dlopen``-ed, initialised, used and
``dlclose``-d again. That costs well under a millisecond, and the output of a
call then depends only on its arguments. The random generators (eSpeak's own
and libc ``rand``, used for breath noise) are seeded explicitly.

The library is not thread-safe: the single process-wide :class:`_ESpeak` object
serialises calls with a lock; use processes for parallelism.
"""
from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .speakers import Speaker

__all__ = [
    "ESpeakError",
    "synthesize",
    "sample_rate",
    "data_path",
    "voice_name",
    "available_variants",
    "variant_path",
    "ENGLISH_ACCENTS",
]

#: English accents of eSpeak NG usable as the language part of a voice name.
ENGLISH_ACCENTS = (
    "en-us",
    "en",  # British English
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
    "en-029",
)

# espeak_AUDIO_OUTPUT
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options: report errors instead of calling exit()
_INITIALIZE_DONT_EXIT = 0x8000
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
# espeak_POSITION_TYPE
_POS_CHARACTER = 1
# synth flags
_CHARS_UTF8 = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class ESpeakError(RuntimeError):
    """Raised when the eSpeak NG library cannot be loaded or fails."""


def _install_hint(path: Optional[str] = None) -> str:
    where = f" (tried {path!r})" if path else ""
    return (
        "The demo corpus needs the eSpeak NG library"
        f"{where}: install it with `pip install espeakng-loader`."
    )


@lru_cache(maxsize=1)
def _locate() -> Tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as err:
        raise ESpeakError(_install_hint() + f" Import failed: {err}") from err
    return str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path())


def data_path() -> str:
    """Path of the ``espeak-ng-data`` directory in use."""
    return _locate()[1]


def variant_path(variant: str) -> Path:
    """File describing the voice ``variant`` (``<data>/voices/!v/<variant>``)."""
    return Path(data_path()) / "voices" / "!v" / variant


@lru_cache(maxsize=1)
def _variants() -> Tuple[str, ...]:
    vdir = Path(data_path()) / "voices" / "!v"
    if not vdir.is_dir():
        raise ESpeakError(f"No voice variants found in {str(vdir)!r}. " + _install_hint())
    return tuple(sorted((p.name for p in vdir.iterdir() if p.is_file()), key=str.lower))


def available_variants() -> List[str]:
    """All voice variants shipped with eSpeak NG (file names in ``voices/!v``)."""
    return list(_variants())


def voice_name(accent: str, variant: str) -> str:
    """eSpeak voice string, e.g. ``voice_name("en-us", "m3") == "en-us+m3"``."""
    return f"{accent}+{variant}"


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None


class _ESpeak:
    """Process-wide handle on eSpeak NG (see module docstring)."""

    def __init__(self) -> None:
        self.lib_path, self.data_path = _locate()
        if not os.path.isfile(self.lib_path):
            raise ESpeakError(_install_hint(self.lib_path) + " The library file does not exist.")
        self.lock = threading.Lock()
        self._chunks: List[np.ndarray] = []
        self._cb = _SYNTH_CALLBACK(self._callback)  # keep a reference alive
        libc = ctypes.CDLL(None)
        libc.srand.argtypes = [ctypes.c_uint]
        libc.srand.restype = None
        self._srand = libc.srand
        with self.lock:
            lib = self._open()
            self._close(lib)

    # -- library life cycle ------------------------------------------------------------
    def _open(self) -> ctypes.CDLL:
        try:
            lib = ctypes.CDLL(self.lib_path, mode=os.RTLD_LOCAL)
            _declare(lib)
        except (OSError, AttributeError) as err:
            raise ESpeakError(_install_hint(self.lib_path) + f" Loading failed: {err}") from err
        sr = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sr <= 0:
            self._close(lib, terminate=False)
            raise ESpeakError(
                f"espeak_Initialize failed (returned {sr}) with data path {self.data_path!r}. "
                + _install_hint(self.lib_path)
            )
        self.sample_rate = int(sr)
        lib.espeak_SetSynthCallback(self._cb)
        return lib

    @staticmethod
    def _close(lib: ctypes.CDLL, terminate: bool = True) -> None:
        if terminate:
            lib.espeak_Terminate()
        import _ctypes

        _ctypes.dlclose(lib._handle)

    def _callback(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    # -- synthesis -----------------------------------------------------------------------
    def synth(
        self, text: str, voice: str, pitch: int, prange: int, rate: int, seed: int = 0
    ) -> np.ndarray:
        def check(code: int, what: str) -> None:
            if code != _EE_OK:
                raise ESpeakError(f"eSpeak NG {what} failed for voice {voice!r} (error code {code})")

        with self.lock:
            lib = self._open()
            try:
                check(lib.espeak_SetVoiceByName(voice.encode()), "SetVoiceByName")
                check(lib.espeak_SetParameter(_RATE, int(rate), 0), "SetParameter(rate)")
                check(lib.espeak_SetParameter(_PITCH, int(pitch), 0), "SetParameter(pitch)")
                check(lib.espeak_SetParameter(_RANGE, int(prange), 0), "SetParameter(range)")
                check(lib.espeak_SetParameter(_VOLUME, 100, 0), "SetParameter(volume)")
                lib.espeak_ng_SetRandSeed(int(seed))
                self._srand(int(seed) & 0xFFFFFFFF)
                buf = text.encode("utf-8") + b"\0"
                self._chunks = []
                check(
                    lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None),
                    "Synth",
                )
                lib.espeak_Synchronize()
                chunks, self._chunks = self._chunks, []
            finally:
                self._close(lib)
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / np.float32(32768.0)


_ENGINE: Optional[_ESpeak] = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _ESpeak:
    global _ENGINE
    if _ENGINE is None:
        with _ENGINE_LOCK:
            if _ENGINE is None:
                _ENGINE = _ESpeak()
    return _ENGINE


def sample_rate() -> int:
    """Native output sample rate of eSpeak NG (22050 Hz)."""
    return _engine().sample_rate


def synthesize(text: str, voice: "Speaker", seed: int = 0) -> Tuple[np.ndarray, int]:
    """Synthesise ``text`` with ``voice`` (a :class:`~egs.demo.speakers.Speaker`).

    ``voice`` needs the attributes ``variant``, ``accent``, ``pitch`` (0-99),
    ``range`` (0-99) and ``rate`` (words per minute). ``seed`` seeds eSpeak's
    noise generators. The result only depends on the arguments.

    Returns ``(waveform, sample_rate)``: a 1-D float32 array in [-1, 1) at
    eSpeak's native rate (22050 Hz).
    """
    if voice.accent not in ENGLISH_ACCENTS:
        raise ESpeakError(f"Unknown accent {voice.accent!r}; choose one of {ENGLISH_ACCENTS}")
    if voice.variant not in _variants():
        raise ESpeakError(
            f"Unknown voice variant {voice.variant!r} (not in {str(variant_path(''))!r})"
        )
    if not 0 <= int(voice.pitch) <= 99 or not 0 <= int(voice.range) <= 99:
        raise ESpeakError(f"pitch and range must be in 0..99, got {voice.pitch}, {voice.range}")
    if not 80 <= int(voice.rate) <= 450:
        raise ESpeakError(f"rate must be in 80..450 words per minute, got {voice.rate}")
    eng = _engine()
    wav = eng.synth(
        text, voice_name(voice.accent, voice.variant), voice.pitch, voice.range, voice.rate, seed
    )
    return wav, eng.sample_rate
