"""Synthetic speakers for the demo corpus.

A speaker is an eSpeak NG voice *variant* (the timbre: formants, glottal
source, breathiness ...) combined with an English *accent*, a base *pitch*
(eSpeak's 0-99 pitch parameter, 50 = the variant's natural pitch), a pitch
*range* (0-99, intonation depth), a speaking *rate* in words per minute, a
vocal-tract-length factor *vtl* that scales all its frequencies, and a
spectral *tilt* (see :data:`VTL_RANGE`, :data:`TILT_RANGE`).

Splits are made **by voice variant**: every variant belongs to exactly one of
``tr``, ``cv`` and ``tt``, so validation and test speakers have timbres never
heard in training (like the disjoint speaker sets of wsj0-2mix). Several
speakers of the same split may share a variant; they then differ in accent,
pitch, range and rate.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from . import espeak

__all__ = [
    "Speaker",
    "SPLITS",
    "EXCLUDED_VARIANTS",
    "PITCH_RANGE",
    "RANGE_RANGE",
    "RATE_RANGE",
    "usable_variants",
    "variant_gender",
    "make_speakers",
    "RECORDED_ENGINES",
    "make_recorded_speakers",
]

SPLITS = ("tr", "cv", "tt")

#: Voice variants shipped with eSpeak NG that are *not* used, with the reason.
#: Everything else found in ``<espeak-ng-data>/voices/!v`` is used.
EXCLUDED_VARIANTS: Dict[str, str] = {
    # whispered / unvoiced
    "whisper": "whispered (voicing 17): no harmonic speech",
    "whisperf": "whispered (voicing 20): no harmonic speech",
    "caleb": "voicing 0 + breath 100: whispered",
    # robots and strong echo effects (wsj0 is clean, anechoic speech)
    "robosoft": "robot voice (roughness 50, echo, flat intonation)",
    "robosoft2": "robot voice (roughness 75, echo, negative intonation)",
    "robosoft3": "robot voice (echo 10 ms at 100%+)",
    "robosoft4": "robot voice (echo 10 ms at 100%+)",
    "robosoft5": "robot voice (echo 10 ms at 100%+)",
    "robosoft6": "robot voice (monotone 150 Hz, echo)",
    "robosoft7": "robot voice (echo 10 ms at 100%+)",
    "robosoft8": "robot voice (monotone 150 Hz, echo)",
    "UniRobot": "robot voice (echo 10 ms at 100%+)",
    "anikaRobot": "robot version of 'anika' (echo 10 ms at 100%+)",
    "RicishayMax": "strong echo effect (echo amplitude > 100%)",
    "RicishayMax2": "strong echo effect",
    "RicishayMax3": "strong echo effect",
    "Alicia": "strong echo (40 ms at 50%)",
    "Marco": "strong echo (50 ms at 80%)",
    "announcer": "public-address announcer effect (echo, pitch 37-83 Hz)",
    # tremolo / croaky
    "croak": "croaky voice (flutter 20)",
    "grandpa": "strong tremolo (flutter 20), same as 'croak'",
    "grandma": "strong tremolo (flutter 20)",
    # novelty / test voices
    "Demonic": "distorted 'demon' effect voice",
    "Tweaky": "novelty voice (F3 shifted to 200%)",
    "zac": "cartoon voice (pitch 240-390 Hz, all formants at 145%)",
    "fast": "test variant of the 'fast_test2' speed-up option, not a voice",
    "Mr serious": "file name with a space (not addressable as 'lang+variant')",
}

#: Sampling ranges of the speaker parameters (inclusive integer ranges).
PITCH_RANGE = (30, 70)  # eSpeak pitch 0-99: x0.78 .. x1.30 of the variant's base pitch
RANGE_RANGE = (25, 75)  # eSpeak pitch range 0-99 (50 = default intonation depth)
RATE_RANGE = (145, 205)  # words per minute (eSpeak default: 175)
#: Vocal-tract-length factor: every frequency of the variant (formants and pitch)
#: is scaled by it, by reading eSpeak's output as if it had been sampled at
#: ``vtl`` times its rate. eSpeak ships only ~80 usable timbres; this (and the
#: tilt below) gives every speaker its own, so a model trained on the demo
#: corpus learns to separate voices rather than to recognise ~60 variants.
VTL_RANGE = (0.86, 1.16)
#: Spectral tilt: first-order filter y[n] = x[n] - tilt * x[n-1] (positive:
#: brighter, negative: darker voice), a crude stand-in for glottal/recording colour.
TILT_RANGE = (-0.5, 0.7)

_MIN_USABLE = 60


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker (see the module docstring)."""

    id: str
    split: str
    variant: str
    accent: str
    pitch: int
    range: int
    rate: int
    gender: str
    vtl: float = 1.0
    tilt: float = 0.0
    engine: str = "espeak"  # the synthesiser: "espeak" (the demo), "flite" or "pico" (egs.demo.flite, egs.demo.pico)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Speaker":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})  # speakers.json of older corpora

    @property
    def voice(self) -> str:
        """The engine's voice name: eSpeak's ``en-us+m3``, Flite's ``slt`` or Pico's ``en-GB``."""
        return espeak.voice_name(self.accent, self.variant) if self.engine == "espeak" else self.variant


_GENDER_RE = re.compile(r"^\s*gender\s+(\w+)", re.IGNORECASE | re.MULTILINE)


def variant_gender(variant: str) -> str:
    """``"m"``/``"f"`` when the variant implies a gender, else ``"u"``.

    Uses the ``gender`` line of the variant file, falling back on the
    eSpeak naming convention ``m1..m8`` / ``f1..f5``.
    """
    try:
        text = espeak.variant_path(variant).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    m = _GENDER_RE.search(text)
    if m:
        g = m.group(1).lower()
        if g.startswith("male"):
            return "m"
        if g.startswith("female"):
            return "f"
    if re.fullmatch(r"m\d+", variant):
        return "m"
    if re.fullmatch(r"f\d+", variant):
        return "f"
    return "u"


def usable_variants() -> List[str]:
    """Installed eSpeak NG variants minus :data:`EXCLUDED_VARIANTS`, sorted."""
    out = [v for v in espeak.available_variants() if v not in EXCLUDED_VARIANTS]
    if len(out) < _MIN_USABLE:
        raise espeak.ESpeakError(
            f"Only {len(out)} usable eSpeak NG voice variants found in "
            f"{str(espeak.variant_path(''))!r} (need {_MIN_USABLE}); "
            "reinstall with `pip install espeakng-loader`."
        )
    return out


def _stratified_order(variants: Sequence[str], rng: np.random.Generator) -> List[str]:
    """Shuffle variants so that every prefix has genders in proportion."""
    groups: Dict[str, List[str]] = {}
    for v in variants:
        groups.setdefault(variant_gender(v), []).append(v)
    keyed: List[Tuple[float, str]] = []
    for g in sorted(groups):
        members = list(groups[g])
        rng.shuffle(members)
        n = len(members)
        jitter = rng.uniform(0.0, 1.0, size=n)
        keyed += [((i + jitter[i]) / n, v) for i, v in enumerate(members)]
    keyed.sort()
    return [v for _, v in keyed]


#: Fewest voice variants the held-out splits get (when they have that many speakers).
#: Proportional shares would give 20 test speakers only ~5 variants out of 77, so
#: most test pairs would be two speakers of one variant and the test set would
#: measure a handful of timbres; training speakers get their variety from
#: vtl/tilt instead, so the held-out splits can afford more variants.
MIN_HELD_OUT_VARIANTS = {"cv": 8, "tt": 12}


def _variant_counts(n_variants: int, sizes: Sequence[int]) -> List[int]:
    """How many variants each split gets: proportional to its speakers, at least
    :data:`MIN_HELD_OUT_VARIANTS` for cv/tt (never more than their speakers), >= 1."""
    total = sum(sizes)
    counts = [0, 0, 0]
    for i, name in ((1, "cv"), (2, "tt")):
        share = max(1, round(n_variants * sizes[i] / total), MIN_HELD_OUT_VARIANTS[name])
        counts[i] = int(min(sizes[i], share))
    counts[0] = n_variants - counts[1] - counts[2]
    while counts[0] < 1:  # take back from the larger held-out split
        j = 1 if counts[1] >= counts[2] else 2
        counts[j] -= 1
        counts[0] += 1
    return counts


def make_speakers(
    n_tr: int = 300, n_cv: int = 20, n_tt: int = 20, seed: int = 0
) -> Dict[str, List[Speaker]]:
    """Create speakers for the three splits, deterministically from ``seed``.

    Voice variants are partitioned between the splits (in proportion to the
    number of speakers, balancing genders), so ``cv`` and ``tt`` speakers use
    variants never used in ``tr``. Ids are ``d001``, ``d002``, ... numbered
    through ``tr``, then ``cv``, then ``tt``. Returns ``{"tr": [...], "cv": [...],
    "tt": [...]}``.
    """
    sizes = [n_tr, n_cv, n_tt]
    for name, n in zip(SPLITS, sizes):
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"number of {name} speakers must be a positive integer, got {n!r}")
    sizes = [int(n) for n in sizes]
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    variants = usable_variants()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5BEA]))
    order = _stratified_order(variants, rng)
    counts = _variant_counts(len(order), sizes)
    # held-out splits first so that they get a proportional gender mix as well
    per_split = {
        "tt": order[: counts[2]],
        "cv": order[counts[2] : counts[2] + counts[1]],
        "tr": order[counts[2] + counts[1] :],
    }
    width = max(3, len(str(sum(sizes))))
    out: Dict[str, List[Speaker]] = {}
    seen = set()
    k = 0
    for split, n in zip(SPLITS, sizes):
        pool = per_split[split]
        speakers = []
        for i in range(n):
            k += 1
            variant = pool[i % len(pool)]
            while True:
                params = (
                    espeak.ENGLISH_ACCENTS[int(rng.integers(len(espeak.ENGLISH_ACCENTS)))],
                    int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                    int(rng.integers(RANGE_RANGE[0], RANGE_RANGE[1] + 1)),
                    int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                )
                if (variant,) + params not in seen:
                    seen.add((variant,) + params)
                    break
            accent, pitch, prange, rate = params
            # Drawn after the discrete parameters so that a speaker's variant,
            # accent, pitch, range and rate do not depend on the timbre ranges.
            vtl = round(float(rng.uniform(*VTL_RANGE)), 3)
            tilt = round(float(rng.uniform(*TILT_RANGE)), 2)
            speakers.append(
                Speaker(
                    id=f"d{k:0{width}d}",
                    split=split,
                    variant=variant,
                    accent=accent,
                    pitch=pitch,
                    range=prange,
                    rate=rate,
                    gender=variant_gender(variant),
                    vtl=vtl,
                    tilt=tilt,
                )
            )
        out[split] = speakers
    return out


#: The synthesisers built from recorded speakers, with the first letter of their speaker ids.
RECORDED_ENGINES = {"flite": "f", "pico": "p"}


def make_recorded_speakers(engine: str, n: int, split: str = "tt", seed: int = 0, first_id: int = 1) -> List[Speaker]:
    """``n`` speakers of Flite's or Pico's voices (``egs.demo.flite.VOICES``, ``egs.demo.pico.VOICES``).

    These engines have a handful of voices, so speakers share them (in turn, so each voice
    speaks about ``n / len(VOICES)`` of them) and differ by rate and by the demo's vocal-tract
    length and tilt, drawn from the same ranges as the eSpeak speakers'. ``accent`` and
    ``range`` are eSpeak's parameters and stay empty. Flite's voices keep their own pitch
    (its pitch target barely moves the clustergen voices; ``pitch`` is 0) and gender; Pico's
    two voices are female, so every other Pico speaker is made male by a pitch level in
    ``egs.demo.pico.PITCH_LEVELS["m"]``.
    """
    if engine not in RECORDED_ENGINES:
        raise ValueError(f"engine must be one of {sorted(RECORDED_ENGINES)}, got {engine!r}")
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"number of speakers must be an integer >= 2, got {n!r}")
    if engine == "flite":
        from .flite import VOICES as FLITE_VOICES

        voices, salt = sorted(FLITE_VOICES), 0xF117E
    else:
        from .pico import PITCH_LEVELS, VOICES as PICO_VOICES

        voices, salt = sorted(PICO_VOICES), 0x9C0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), salt]))
    width = max(3, len(str(first_id + n - 1)))
    out = []
    for i in range(int(n)):
        voice = voices[i % len(voices)]
        rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
        vtl = round(float(rng.uniform(*VTL_RANGE)), 3)
        tilt = round(float(rng.uniform(*TILT_RANGE)), 2)
        if engine == "flite":
            gender, pitch = FLITE_VOICES[voice], 0
        else:
            gender = "fm"[(i // len(voices)) % 2]  # each voice alternately female and male
            pitch = int(rng.integers(PITCH_LEVELS[gender][0], PITCH_LEVELS[gender][1] + 1))
        out.append(Speaker(id=f"{RECORDED_ENGINES[engine]}{first_id + i:0{width}d}", split=split, variant=voice,
                           accent="", pitch=pitch, range=0, rate=rate, gender=gender, vtl=vtl, tilt=tilt,
                           engine=engine))
    return out
