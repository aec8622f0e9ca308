"""Build the demo corpus: a small wsj0-2mix-like corpus synthesised with eSpeak NG.

Steps (each skipped when its ``.done`` marker says it already finished with
the same settings):

1. ``sources``: synthetic speakers (:mod:`egs.demo.speakers`) read generated
   sentences (:mod:`egs.demo.sentences`); every utterance is resampled from
   eSpeak's 22.05 kHz to 16 kHz, trimmed to ~0.1 s of silence at both ends,
   peak-normalised with a random -6..0 dB gain and written as 16-bit PCM to
   ``sources/{tr,cv,tt}/<spk>/<spk>_<nnn>.wav`` (like WSJ0). Also writes
   ``speakers.json`` and ``sentences/{split}.txt``.
2. ``lists``: MERL-format mix lists ``mix_lists/mix_2_spk_{split}.txt``
   (``path1 snr1 path2 snr2``, two different speakers of the split, SNR of the
   first source uniform in [0, 2.5] dB, the second its negative).
3. ``mix``: :func:`local.mixing.create_mixtures` for every split, rate and
   mode: ``wav8k/min/{split}/{mix,s1,s2}/*.wav`` + ``mix.json``, ``s1.json``,
   ``s2.json``.

``--engine`` picks the synthesisers (eSpeak NG by default; Flite and SVOX Pico, whose voices
are built from recorded speakers, in :mod:`egs.demo.flite` and :mod:`egs.demo.pico`); several
engines share each split's speakers.

Everything is deterministic given ``seed`` (and the synthesisers' versions), and
independent of ``nj``. Usage::

    python -m egs.demo.prepare --out data/demo [--nj 2] [--seed 0] ...
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    # CLI run: parallelism comes from processes (--nj), so keep every process on one
    # BLAS/OpenMP thread. Must happen before numpy/scipy/torch are imported; forked or
    # spawned workers inherit it. (Oversubscribed BLAS thread pools made --nj 2 slower
    # than --nj 1 on a 2-core machine.)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from local.stage_state import atomic_write_text

from .flite import FliteError
from .pico import PicoError
from .sentences import make_sentence
from .speakers import SPLITS, Speaker, make_recorded_speakers, make_speakers

__all__ = ["prepare_demo", "make_mix_list", "main", "SOURCE_RATE"]

PathLike = Union[str, "os.PathLike[str]"]

#: Sample rate of the single-speaker utterances (like WSJ0).
SOURCE_RATE = 16000
#: Speech duration (without the silence margins) accepted for an utterance, seconds.
MIN_SPEECH_S, MAX_SPEECH_S = 1.5, 5.0
#: Silence kept before and after the speech, seconds.
MARGIN_S = 0.1
#: Random per-utterance gain range (dB) applied on top of peak normalisation.
GAIN_DB = (-6.0, 0.0)
#: Peak level before the random gain.
PEAK = 0.9
#: Samples below this level (relative to the peak) count as silence when trimming.
TRIM_DB = -40.0
#: SNR range (dB) of the first source in a mix list line (MERL: 0..2.5 dB).
SNR_RANGE = (0.0, 2.5)
_MAX_TRIES = 25
_FORMAT = 1  # bump when the output of a step changes for the same settings


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def _check_marker(marker: Path, config: dict) -> bool:
    """True if ``marker`` records ``config``; ``ValueError`` if it records other settings."""
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False  # unreadable marker: redo the step
    if recorded.get("config") == config:
        return True
    raise ValueError(
        f"{marker.parent} was made with different settings ({recorded.get('config')}) "
        f"than requested ({config}). Delete it or choose another --out."
    )


def _write_marker(marker: Path, config: dict, **info) -> None:
    atomic_write_text(marker, json.dumps({"config": config, **info}, indent=2) + "\n")


def _utt_id(spk_id: str, n: int) -> str:
    return f"{spk_id}_{n:03d}"


def _rel_path(split: str, spk_id: str, n: int) -> str:
    return f"{split}/{spk_id}/{_utt_id(spk_id, n)}.wav"


# ------------------------------------------------------------------------------------------
# step 1: single-speaker utterances
# ------------------------------------------------------------------------------------------
def _trim(x: np.ndarray, sr: int) -> Tuple[np.ndarray, int]:
    """Keep ``MARGIN_S`` of silence around the speech; returns (signal, n_speech_samples)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x[:0], 0
    active = np.flatnonzero(np.abs(x) > peak * 10 ** (TRIM_DB / 20))
    start, end = int(active[0]), int(active[-1]) + 1
    margin = int(round(MARGIN_S * sr))
    seg = x[max(0, start - margin) : end + margin]
    pad_l = margin - (start - max(0, start - margin))
    pad_r = margin - (min(len(x), end + margin) - end)
    return np.concatenate([np.zeros(pad_l, x.dtype), seg, np.zeros(pad_r, x.dtype)]), end - start


def _render(text: str, spk: Speaker, synth_seed: int) -> Tuple[np.ndarray, int]:
    import torch
    import torchaudio.functional as AF

    from . import espeak, flite, pico

    synthesize = {"espeak": espeak.synthesize, "flite": flite.synthesize, "pico": pico.synthesize}[spk.engine]
    wav, sr = synthesize(text, spk, seed=synth_seed)
    if wav.size == 0:
        return wav, 0
    if spk.tilt:
        wav = wav - spk.tilt * np.concatenate([[0.0], wav[:-1]]).astype(wav.dtype)
    # Vocal-tract-length change: read the samples as if taken at vtl * sr, which
    # scales every frequency by vtl; rounded to 50 Hz to keep the resampling ratio small.
    src_rate = int(round(sr * spk.vtl / 50.0)) * 50
    y = AF.resample(torch.from_numpy(wav), src_rate, SOURCE_RATE).numpy().astype(np.float64)
    return _trim(y, SOURCE_RATE)


def _synth_speaker(job: dict) -> List[Tuple[str, str, int]]:
    """Worker: synthesise all utterances of one speaker; returns (utt_id, text, n_samples)."""
    from local.audio_io import write_wav_atomic

    spk = Speaker.from_dict(job["speaker"])
    root = Path(job["root"])
    rng = np.random.default_rng(np.random.SeedSequence([job["seed"], 0xA0D10, job["index"]]))
    out = []
    for n in range(1, job["n_utts"] + 1):
        best = None  # (distance to the accepted range, text, signal)
        for _ in range(_MAX_TRIES):
            text = make_sentence(rng)
            y, n_speech = _render(text, spk, int(rng.integers(2**31 - 1)))
            dur = n_speech / SOURCE_RATE
            dist = max(MIN_SPEECH_S - dur, dur - MAX_SPEECH_S, 0.0)
            if best is None or dist < best[0]:
                best = (dist, text, y)
            if dist == 0.0:
                break
        _, text, y = best
        if not np.max(np.abs(y), initial=0.0) > 0:
            raise RuntimeError(f"{spk.engine} produced silence for speaker {spk.id} ({spk.voice}): {text!r}")
        gain = 10 ** (rng.uniform(*GAIN_DB) / 20)
        y = y * (PEAK * gain / np.max(np.abs(y)))
        write_wav_atomic(root / _rel_path(spk.split, spk.id, n), y, SOURCE_RATE)
        out.append((_utt_id(spk.id, n), text, len(y)))
    return out


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_jobs(func, jobs: List[dict], nj: int, progress: bool, desc: str) -> List:
    from tqdm import tqdm

    results = []
    with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="spk") as bar:
        if nj == 1 or len(jobs) <= 1:
            # torch's thread count is left alone here: with torch 2.11's MKL, lowering it
            # and raising it again breaks batched torch.linalg.solve for the rest of the
            # process ("Pivots given to lu_solve must all be greater or equal to 1"),
            # which the BSS Eval metrics use.
            for job in jobs:
                results.append(func(job))
                bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # no fork: the parent may hold torch/OpenMP threads
            with ProcessPoolExecutor(min(nj, len(jobs)), mp_context=ctx, initializer=_init_worker) as ex:
                for res in ex.map(func, jobs):
                    results.append(res)
                    bar.update(1)
    return results


def _make_sources(
    out_dir: Path, speakers: Dict[str, List[Speaker]], utts: Dict[str, int], seed: int,
    nj: int, progress: bool,
) -> None:
    root = out_dir / "sources"
    jobs = []
    for split in speakers:  # every split given (the held-out test sets have tt only)
        for spk in speakers[split]:
            jobs.append({
                "speaker": spk.to_dict(), "n_utts": utts[split], "seed": seed,
                "index": int(spk.id[1:]), "root": str(root),
            })
    results = _run_jobs(_synth_speaker, jobs, nj, progress, "synthesising speakers")
    by_split: Dict[str, List[str]] = {s: [] for s in speakers}
    for job, res in zip(jobs, results):
        by_split[job["speaker"]["split"]] += [f"{uid} {text}\n" for uid, text, _ in res]
    for split in speakers:
        atomic_write_text(out_dir / "sentences" / f"{split}.txt", "".join(by_split[split]))
    all_spk = [s.to_dict() for split in speakers for s in speakers[split]]
    atomic_write_text(out_dir / "speakers.json", json.dumps(all_spk, indent=2) + "\n")


# ------------------------------------------------------------------------------------------
# step 2: mix lists
# ------------------------------------------------------------------------------------------
def _max_pairs(n_speakers: int, n_utts: int) -> int:
    """Number of distinct utterance pairs with two different speakers."""
    return n_speakers * (n_speakers - 1) // 2 * n_utts * n_utts


def make_mix_list(
    utts_by_speaker: Dict[str, Sequence[str]], n_mixtures: int, rng: np.random.Generator
) -> List[Tuple[Tuple[str, str], Tuple[str, str]]]:
    """Draw ``n_mixtures`` distinct pairs of utterances of two different speakers.

    Returns ``[((path1, snr1), (path2, snr2)), ...]`` with ``snr1`` uniform in
    ``SNR_RANGE`` formatted with 5 decimals and ``snr2 = -snr1``. A pair is
    used at most once (in either order), and every utterance is used once
    before any is used twice (so all are used when ``n_mixtures`` is at least
    the number of utterances).
    """
    paths: List[str] = []
    owner: List[int] = []
    for k, spk in enumerate(sorted(utts_by_speaker)):
        paths += list(utts_by_speaker[spk])
        owner += [k] * len(utts_by_speaker[spk])
    owner_a = np.asarray(owner)
    total = len(paths)
    counts = np.bincount(owner_a) if total else np.zeros(0, int)
    max_pairs = (total * total - int(np.sum(counts.astype(np.int64) ** 2))) // 2
    if n_mixtures > max_pairs:
        raise ValueError(f"only {max_pairs} distinct cross-speaker pairs exist, {n_mixtures} requested")
    pairs: List[Tuple[int, int]] = []
    if n_mixtures > max_pairs // 2:  # dense: enumerate all pairs
        i, j = np.triu_indices(total, k=1)
        keep = owner_a[i] != owner_a[j]
        i, j = i[keep], j[keep]
        pick = rng.choice(len(i), size=n_mixtures, replace=False)
        swap = rng.random(n_mixtures) < 0.5
        for p, s in zip(pick, swap):
            a, b = int(i[p]), int(j[p])
            pairs.append((b, a) if s else (a, b))
    else:  # sparse: go through the utterances in random order, random partner for each
        seen = set()
        queue: List[int] = []
        while len(pairs) < n_mixtures:
            if not queue:  # every utterance gets a turn before any gets a second one
                queue = [int(v) for v in rng.permutation(total)]
            a = queue.pop()
            for _ in range(100):
                b = int(rng.integers(total))
                key = (min(a, b), max(a, b))
                if owner[a] != owner[b] and key not in seen:
                    seen.add(key)
                    pairs.append((a, b) if rng.random() < 0.5 else (b, a))
                    break
    out = []
    for a, b in pairs:
        snr = float(rng.uniform(*SNR_RANGE))
        s1 = f"{snr:.5f}"
        out.append(((paths[a], s1), (paths[b], "-" + s1)))
    return out


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def _triple(value, name: str, option: str, minimum: int, maximum: Optional[int] = None) -> Dict[str, int]:
    try:
        vals = list(value)
    except TypeError:
        raise ValueError(f"{option}: expected 3 integers (tr cv tt), got {value!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{option}: expected 3 integers (tr cv tt), got {len(vals)}: {value!r}")
    out = {}
    for split, v in zip(SPLITS, vals):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{option}: {name} for {split} must be an integer >= {minimum}, got {v!r}")
        if maximum is not None and v > maximum:
            raise ValueError(f"{option}: {name} for {split} must be <= {maximum}, got {v!r}")
        out[split] = int(v)
    return out


def _validate(seed, n_speakers, utts_per_speaker, n_mixtures, sample_rates, modes, nj):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"--seed: must be a non-negative integer, got {seed!r}")
    spk = _triple(n_speakers, "number of speakers", "--n-speakers", 2)
    utt = _triple(utts_per_speaker, "utterances per speaker", "--utts-per-speaker", 1, 999)
    mix = _triple(n_mixtures, "number of mixtures", "--n-mixtures", 1)
    for split in SPLITS:
        avail = _max_pairs(spk[split], utt[split])
        if mix[split] > avail:
            raise ValueError(
                f"--n-mixtures: {mix[split]} {split} mixtures requested, but {spk[split]} speakers x "
                f"{utt[split]} utterances (--n-speakers / --utts-per-speaker) give only {avail} "
                "distinct pairs of utterances from two different speakers"
            )
    rates = list(sample_rates) if not isinstance(sample_rates, (int, str)) else [sample_rates]
    if not rates:
        raise ValueError("--sample-rates: give at least one rate")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r <= 0 or r > SOURCE_RATE or r % 1000:
            raise ValueError(
                f"--sample-rates: {r!r} is not a multiple of 1000 Hz in (0, {SOURCE_RATE}] "
                "(sources are 16 kHz; use 8000 and/or 16000)"
            )
    mode_list = [modes] if isinstance(modes, str) else list(modes)
    if not mode_list or any(m not in ("min", "max") for m in mode_list):
        raise ValueError(f"--modes: must be a non-empty subset of ('min', 'max'), got {modes!r}")
    if isinstance(nj, bool) or not isinstance(nj, (int, np.integer)) or nj < 1:
        raise ValueError(f"--nj: must be an integer >= 1, got {nj!r}")
    rates = [int(r) for r in dict.fromkeys(rates)]
    mode_list = list(dict.fromkeys(mode_list))
    return int(seed), spk, utt, mix, rates, mode_list, int(nj)


# What this script writes into its output folder, and nothing else (run.sh's logs/ stays).
_OUTPUTS = ("sources", "sentences", "speakers.json", "mix_lists", "wav8k", "wav16k")


def remove_demo_corpus(out_dir: PathLike) -> list:
    """Delete a demo corpus made by this script (for ``--force``), and only that.

    The folder must carry this script's ``sources/.done`` marker: a ``--data-dir`` that points
    at anything else (a real corpus, a home folder) is refused, never emptied. Returns the
    removed paths.
    """
    import shutil

    out_dir = Path(out_dir)
    if not out_dir.exists():
        return []
    marker = out_dir / "sources" / ".done"
    try:
        made_here = json.loads(marker.read_text())["config"]["format"] is not None
    except (OSError, ValueError, KeyError, TypeError):
        made_here = False
    if not made_here:
        if all(p.name == "logs" for p in out_dir.iterdir()):  # new, or only run.sh's stage logs
            return []
        raise ValueError(f"--force: {out_dir} was not made by the demo corpus script (no {marker}); "
                         "nothing was deleted. Point --data-dir at a demo corpus folder or a new one")
    removed = []
    for name in _OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------
# main entry point
# ------------------------------------------------------------------------------------------
ENGINES = ("espeak", "flite", "pico")


def _check_splits(splits: Sequence[str]) -> Tuple[str, ...]:
    chosen = tuple(dict.fromkeys(splits))
    if not chosen or any(s not in SPLITS for s in chosen):
        raise ValueError(f"--splits: must be a non-empty subset of {SPLITS}, got {list(splits)!r}")
    return tuple(s for s in SPLITS if s in chosen)


def _check_engines(engine: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    chosen = tuple(dict.fromkeys([engine] if isinstance(engine, str) else engine))
    if not chosen or any(e not in ENGINES for e in chosen):
        raise ValueError(f"--engine: choose one or more of {ENGINES}, got {engine!r}")
    return chosen


def _engine_shares(n: int, engines: Sequence[str], split: str) -> List[int]:
    """``n`` speakers of a split shared out between the engines (the first ones get the remainder)."""
    shares = [n // len(engines) + (i < n % len(engines)) for i in range(len(engines))]
    least = 1 if engines == ("espeak",) else 2
    if min(shares) < least:
        raise ValueError(f"--n-speakers: {n} {split} speakers cannot be shared by the engines {list(engines)} "
                         f"(each needs at least {least}); give at least {least * len(engines)}")
    return shares


def _engine_speakers(engines: Sequence[str], spk_n: Dict[str, int], seed: int,
                     splits: Sequence[str]) -> Dict[str, List[Speaker]]:
    """The speakers of the chosen splits, each split's count shared out between the engines.

    eSpeak's speakers are split by voice variant (:func:`make_speakers`); Flite's and Pico's
    share their few voices across splits and differ by rate, pitch and timbre
    (:func:`make_recorded_speakers`). Ids carry the engine's letter, so they stay unique.
    """
    if "flite" in engines:
        from .flite import flite_command

        flite_command()  # FliteError with what to do, before any work
    if "pico" in engines:
        from .pico import pico_paths

        pico_paths()  # PicoError likewise
    shares = {s: _engine_shares(spk_n[s], engines, s) for s in SPLITS if s in splits}
    out: Dict[str, List[Speaker]] = {s: [] for s in splits}
    for k, engine in enumerate(engines):
        if engine == "espeak":
            every = make_speakers(*[shares[s][k] if s in shares else spk_n[s] for s in SPLITS], seed=seed)
            for s in splits:
                out[s] += every[s]
            continue
        first = 1
        for s in splits:
            out[s] += make_recorded_speakers(engine, shares[s][k], split=s, seed=seed + SPLITS.index(s),
                                             first_id=first)
            first += shares[s][k]
    return out


def prepare_demo(
    out_dir: PathLike,
    seed: int = 0,
    n_speakers: Sequence[int] = (300, 20, 20),
    utts_per_speaker: Sequence[int] = (20, 10, 10),
    n_mixtures: Sequence[int] = (6000, 300, 200),
    sample_rates: Sequence[int] = (8000,),
    modes: Sequence[str] = ("min",),
    nj: int = 1,
    progress: bool = False,
    engine: Union[str, Sequence[str]] = "espeak",
    splits: Sequence[str] = SPLITS,
) -> dict:
    """Create (or finish) the demo corpus in ``out_dir``; see the module docstring.

    ``n_speakers``, ``utts_per_speaker`` and ``n_mixtures`` are ``(tr, cv, tt)``.
    ``engine="flite"`` or ``"pico"`` makes the speakers of those recorded-voice synthesisers
    (:func:`egs.demo.speakers.make_recorded_speakers`), several engines (``("espeak", "flite")``)
    share each split's speakers between them; ``splits`` makes only some splits (a held-out
    test set: ``("tt",)``; the counts of the other splits are ignored).
    Returns a summary dict: ``out_dir``, ``speakers``/``utterances``/``mixtures``
    per split, ``mix_lists`` (split -> path), ``mix_dirs`` ("wav8k/min/tr" ->
    path), ``steps`` (step -> "done" or "skipped") and ``seconds`` per step.
    Raises ``ValueError`` (naming the CLI option) for bad arguments.
    """
    seed, spk_n, utt_n, mix_n, rates, mode_list, nj = _validate(
        seed, n_speakers, utts_per_speaker, n_mixtures, sample_rates, modes, nj
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps: Dict[str, str] = {}
    seconds: Dict[str, float] = {}
    splits = _check_splits(splits)
    engines = _check_engines(engine)
    speakers = _engine_speakers(engines, spk_n, seed, splits)

    # 1. sources
    t0 = time.perf_counter()
    src_cfg = {"format": _FORMAT, "seed": seed, "n_speakers": [spk_n[s] for s in SPLITS],
               "utts_per_speaker": [utt_n[s] for s in SPLITS]}
    if engines != ("espeak",) or splits != SPLITS:  # so that existing demo corpora keep their markers
        src_cfg.update(engine=engines[0] if len(engines) == 1 else list(engines), splits=list(splits))
    src_marker = out_dir / "sources" / ".done"
    if _check_marker(src_marker, src_cfg):
        steps["sources"] = "skipped"
    else:
        _make_sources(out_dir, speakers, utt_n, seed, nj, progress)
        _write_marker(src_marker, src_cfg)
        steps["sources"] = "done"
    seconds["sources"] = time.perf_counter() - t0

    # 2. mix lists
    from local.metadata import rate_dir_name
    from local.mixing import MixEntry, create_mixtures, parse_mix_list, write_mix_list

    t0 = time.perf_counter()
    list_cfg = dict(src_cfg, n_mixtures=[mix_n[s] for s in SPLITS])
    list_dir = out_dir / "mix_lists"
    list_paths = {s: list_dir / f"mix_2_spk_{s}.txt" for s in splits}
    if _check_marker(list_dir / ".done", list_cfg):
        steps["lists"] = "skipped"
    else:
        for split in splits:
            k = SPLITS.index(split)
            utts = {
                spk.id: [_rel_path(split, spk.id, n) for n in range(1, utt_n[split] + 1)]
                for spk in speakers[split]
            }
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1157, k]))
            lines = make_mix_list(utts, mix_n[split], rng)
            write_mix_list(list_paths[split], [MixEntry(sources=line) for line in lines])
        _write_marker(list_dir / ".done", list_cfg)
        steps["lists"] = "done"
    seconds["lists"] = time.perf_counter() - t0

    # 3. mixtures, per split x rate x mode
    mix_dirs: Dict[str, str] = {}
    for split in splits:
        entries = parse_mix_list(list_paths[split], n_src=2)
        digest = hashlib.sha1(list_paths[split].read_bytes()).hexdigest()
        todo = []
        for rate in rates:
            for mode in mode_list:
                key = f"{rate_dir_name(rate)}/{mode}/{split}"
                mix_dirs[key] = str(out_dir / key)
                cfg = {"format": _FORMAT, "mix_list_sha1": digest, "rate": rate, "mode": mode}
                if _check_marker(out_dir / key / ".done", cfg):
                    steps[key] = "skipped"
                else:
                    todo.append((rate, mode, key, cfg))
        if not todo:
            continue
        t0 = time.perf_counter()
        # one call for all missing (rate, mode) of the split when they form a full grid
        t_rates = list(dict.fromkeys(r for r, _, _, _ in todo))
        t_modes = list(dict.fromkeys(m for _, m, _, _ in todo))
        if len(todo) == len(t_rates) * len(t_modes):
            groups = [(t_rates, t_modes, todo)]
        else:
            groups = [([item[0]], [item[1]], [item]) for item in todo]
        for g_rates, g_modes, items in groups:
            create_mixtures(
                entries, source_root=out_dir / "sources", out_root=out_dir, split=split,
                sample_rates=tuple(g_rates), modes=tuple(g_modes), nj=nj, progress=progress,
            )
            for _, _, key, cfg in items:
                _write_marker(out_dir / key / ".done", cfg, n_mixtures=len(entries))
                steps[key] = "done"
        seconds[f"mix_{split}"] = time.perf_counter() - t0

    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "engine": engines[0] if len(engines) == 1 else list(engines),
        "speakers": {s: spk_n[s] for s in splits},
        "utterances": {s: spk_n[s] * utt_n[s] for s in splits},
        "mixtures": {s: mix_n[s] for s in splits},
        "mix_lists": {s: str(p) for s, p in list_paths.items()},
        "mix_dirs": mix_dirs,
        "steps": steps,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m egs.demo.prepare",
        description="Synthesise the demo two-speaker corpus (wsj0-2mix-like, eSpeak NG voices). "
        "Re-running skips the steps that already finished.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder, e.g. data/demo")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed = identical files)")
    p.add_argument("--n-speakers", type=int, nargs=3, default=[300, 20, 20], metavar=("TR", "CV", "TT"),
                   help="speakers per split (each split has its own eSpeak voice variants)")
    p.add_argument("--utts-per-speaker", type=int, nargs=3, default=[20, 10, 10], metavar=("TR", "CV", "TT"),
                   help="utterances per speaker")
    p.add_argument("--n-mixtures", type=int, nargs=3, default=[6000, 300, 200], metavar=("TR", "CV", "TT"),
                   help="two-speaker mixtures per split")
    p.add_argument("--sample-rates", type=int, nargs="+", default=[8000], metavar="HZ",
                   help="rates of the mixtures (8000 and/or 16000)")
    p.add_argument("--modes", nargs="+", default=["min"], metavar="MODE",
                   help="length modes of the mixtures: min and/or max")
    p.add_argument("--nj", type=int, default=min(os.cpu_count() or 1, 8),
                   help="parallel processes for synthesis and mixing")
    p.add_argument("--engine", nargs="+", choices=ENGINES, default=["espeak"], metavar="ENGINE",
                   help="synthesisers: espeak (the demo: eSpeak NG's voices), flite (Flite's five voices built "
                        "from recorded speakers; tools/install_flite.sh installs it) or pico (SVOX Pico's two, "
                        "the held-out engine; tools/install_pico.sh); several share each split's speakers")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), metavar="SPLIT",
                   help="splits to make (a held-out test set: --splits tt; counts of other splits are ignored)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="rebuild from scratch: first delete what this script made in --out (only that)")
    return p


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    t0 = time.perf_counter()
    try:
        if args.force:
            for path in remove_demo_corpus(args.out):
                print(f"--force: removed {path}", file=sys.stderr)
        summary = prepare_demo(
            args.out, seed=args.seed, n_speakers=args.n_speakers,
            utts_per_speaker=args.utts_per_speaker, n_mixtures=args.n_mixtures,
            sample_rates=args.sample_rates, modes=args.modes, nj=args.nj, progress=not args.quiet,
            engine=args.engine, splits=args.splits,
        )
    except ValueError as err:
        parser.error(str(err))
    except (FliteError, PicoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
