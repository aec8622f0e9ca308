"""Build wsj0-2mix (or wsj0-3mix) from WSJ0, or index an existing copy, in the standard layout.

Usage (``run.sh`` stage 0 calls it through ``prepare.sh``)::

    # from the LDC corpus (SPHERE .wv1, needs sph2pipe) or a wav copy of it
    .venv/bin/python egs/wsj0-2mix/prepare.py --out data/wsj0-2mix --wsj0 /corpora/LDC93S6A --nj 2
    # wsj0-3mix, 8 and 16 kHz, min and max
    .venv/bin/python egs/wsj0-2mix/prepare.py --out data/wsj0-3mix --wsj0 /corpora/wsj0 --n-src 3 \\
        --sample-rates 8000 16000 --modes min max
    # an existing wsj0-2mix folder (asteroid / MERL layout): validate it, write the metadata only
    .venv/bin/python egs/wsj0-2mix/prepare.py --out data/wsj0-2mix --wsj0-2mix /corpora/wsj0-mix/2speakers

Build steps (``--wsj0``), each resumable:

1. **lists**: MERL's ``mix_<n>_spk_{tr,cv,tt}.txt`` from ``--mix-lists`` (folder or
   ``create-speaker-mixtures.zip``) or downloaded from MERL, copied to ``OUT/mix_lists/`` and
   checked (:mod:`merl_lists`: format with file:line, 20000/5000/3000 lines, official content).
2. **sources**: every utterance the lists need is found under ``--wsj0`` (LDC disc layout or a
   copy) and its header checked; *all* missing/unusable files are reported before anything is
   written.  Then ``WAV_CACHE/wsj0/<subset>/<spk>/<utt>.wav`` is made for each (a symlink to a
   ready 16-bit wav, otherwise a converted copy; shorten SPHERE through ``sph2pipe``)
   (:mod:`wsj0_sources`).
3. **mix**: :func:`local.mixing.create_mixtures` (MERL's ``create_wav_{2,3}speakers.m``
   procedure, atomic writes, skips finished files) for every split x rate x mode, then
   ``mix.json``/``s<k>.json``.  A ``.done`` marker per folder records the list checksum and the
   activlev revision; a marker with other settings stops the run (use ``--force``).
4. **check**: per split, the number of mixtures and hours of audio; a count that differs from
   the official one (20000/5000/3000) is an error unless ``--allow-partial``.

With ``--wsj0-2mix PATH`` only the folder is validated (folders, official file names, equal
lengths, sample rate) and the metadata written under ``--out`` (``OUT/wav8k/min/tr/mix`` is a
symlink to ``PATH/wav8k/min/tr/mix``; nothing is written inside PATH unless ``--out`` is PATH).
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    # Parallelism comes from processes (--nj): one BLAS/OpenMP thread each. Must be set before
    # numpy is imported so that the forked workers inherit it.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import merl_lists  # noqa: E402
import wsj0_sources  # noqa: E402
from local.metadata import rate_dir_name, read_split_metadata, split_path, stem_names, write_split_metadata  # noqa: E402
from local.mixing import MixEntry, create_mixtures  # noqa: E402

__all__ = [
    "SPLITS",
    "ACTIVLEV_REVISIONS",
    "PrepareError",
    "prepare_wsj0_mix",
    "final_check",
    "snr_convention",
    "main",
]

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = merl_lists.SPLITS
#: voicebox activlev revision -> zero padding (see local.p56); 9407 is the copy in MERL's zip.
ACTIVLEV_REVISIONS = {"9407": True, "2516": False}
_FORMAT = 1
_OWNER = ".wsj0_mix_prepare.json"


class PrepareError(RuntimeError):
    """A user-facing failure: the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def _write_json_atomic(path: Path, obj) -> None:
    from local.stage_state import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _grid(rates: Sequence[int], modes: Sequence[str]) -> List[Tuple[int, str]]:
    return [(r, m) for r in rates for m in modes]


def snr_convention(entries: Dict[str, List[MixEntry]], n_src: int) -> str:
    """A few lines explaining what the SNR numbers mean, with the ranges found in the lists."""
    lines = [
        "SNR convention (MERL create_wav_%dspeakers.m): each source is normalised to unit ITU-T P.56 "
        "active level (measured on the 8 kHz signal) and multiplied by 10^(snr_k/20); the numbers in "
        "a mix list line and in the file name <utt1>_<snr1>_<utt2>_<snr2>%s.wav are these per-source "
        "gains in dB, not a signal-to-noise ratio. The level of source k relative to source j is "
        "snr_k - snr_j dB; then mixture and sources are scaled together to a 0.9 peak." % (
            n_src, "_<utt3>_<snr3>" if n_src == 3 else ""),
    ]
    all_entries = [e for split in SPLITS for e in (entries.get(split) or [])]
    if n_src == 2 and all_entries and all(abs(e.snrs[0] + e.snrs[1]) < 1e-9 for e in all_entries):
        lines.append("  Applied here: speaker 1 at +snr dB and speaker 2 at -snr dB (the two numbers of every "
                     "line are opposite), so s1 is 2*snr dB louder than s2 (quieter when snr < 0).")
    for split in SPLITS:
        ents = entries.get(split) or []
        if not ents:
            continue
        rel = [e.snrs[0] - e.snrs[-1] for e in ents]
        first = [e.snrs[0] for e in ents]
        lines.append(
            f"  {split}: snr1 in [{min(first):.4g}, {max(first):.4g}] dB; s1 relative to s{n_src}: "
            f"[{min(rel):.4g}, {max(rel):.4g}] dB"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# final check
# ---------------------------------------------------------------------------
def final_check(
    out: PathLike,
    n_src: int,
    rates: Sequence[int],
    modes: Sequence[str],
    expected: Optional[Dict[str, int]] = None,
    allow_partial: bool = False,
    log: Callable[[str], None] = print,
) -> Dict[str, dict]:
    """Count mixtures and hours per split from the metadata; fail loudly on wrong counts.

    ``expected`` (split -> count, default the official 20000/5000/3000) must
    match unless ``allow_partial``.  Returns ``{"wav8k/min/tr": {"mixtures":
    .., "hours": ..}, ...}``.  Raises :class:`PrepareError` listing every
    mismatch.
    """
    out = Path(out)
    official = merl_lists.OFFICIAL_COUNTS
    report: Dict[str, dict] = {}
    bad: List[str] = []
    log(f"{'folder':<20} {'mixtures':>9} {'official':>9} {'hours':>8}")
    for rate, mode in _grid(rates, modes):
        for split in SPLITS:
            key = f"{rate_dir_name(rate)}/{mode}/{split}"
            try:
                meta = read_split_metadata(out / key, n_src)
            except (ValueError, FileNotFoundError) as err:
                raise PrepareError(f"FINAL CHECK FAILED: {err}") from err
            n = len(meta)
            hours = sum(m["n_samples"] for m in meta) / rate / 3600.0
            report[key] = {"mixtures": n, "hours": round(hours, 3)}
            flag = "" if n == official[split] else "  <-- differs from the official count"
            log(f"{key:<20} {n:>9} {official[split]:>9} {hours:>8.2f}{flag}")
            if expected is not None and n != expected[split]:
                bad.append(f"{key}: {n} mixtures, the mix list has {expected[split]}")
            if n != official[split] and not allow_partial:
                bad.append(f"{key}: {n} mixtures, wsj0-{n_src}mix has {official[split]}")
    if bad:
        raise PrepareError("FINAL CHECK FAILED:\n  " + "\n  ".join(bad))
    total = sum(v["hours"] for v in report.values())
    log(f"final check passed: {len(report)} folder(s), {total:.2f} hours of mixtures in all")
    return report


# ---------------------------------------------------------------------------
# ownership of the output folder
# ---------------------------------------------------------------------------
def _check_output(out: Path, mode: str, n_src: int, in_place: bool = False) -> None:
    """Refuse an --out that holds data this script did not make, or made differently.

    ``in_place``: --wsj0-2mix with --out equal to that folder (the metadata goes next to the wavs).
    """
    info = _read_json(out / _OWNER)
    has_data = any((out / rate_dir_name(r)).exists() for r in (8000, 16000))
    if info is None:
        if has_data and not (mode == "reuse" and in_place):
            raise PrepareError(
                f"{out} already holds wav8k/ or wav16k/ folders that this script did not make. To use an "
                f"existing wsj0-{n_src}mix folder pass it with --wsj0-2mix; otherwise choose another --out."
            )
    else:
        if info.get("n_src") != n_src:
            raise PrepareError(f"{out} holds wsj0-{info.get('n_src')}mix; choose another --out for --n-src {n_src}")
        if info.get("mode") != mode and has_data:
            raise PrepareError(
                f"{out} was made with {'--wsj0' if info.get('mode') == 'build' else '--wsj0-2mix'}; "
                "use --force to replace it, or choose another --out"
            )


def _claim_output(out: Path, mode: str, n_src: int, source: str, in_place: bool = False) -> None:
    _check_output(out, mode, n_src, in_place)
    _write_json_atomic(out / _OWNER, {"mode": mode, "n_src": n_src, "source": source})


def _force_clean(out: Path, n_src: int) -> List[str]:
    """``--force``: remove what an earlier run of this script made (never a user's wsj0-mix data)."""
    info = _read_json(out / _OWNER)
    removed = []
    if info is None:
        return removed  # nothing of ours there (_claim_output refuses foreign data)
    if info.get("n_src") not in (None, n_src):
        raise PrepareError(f"--force: {out} holds wsj0-{info.get('n_src')}mix, not wsj0-{n_src}mix; not touching it")
    for rd in ("wav8k", "wav16k"):
        d = out / rd
        if not d.exists():
            continue
        if info.get("mode") == "build":
            shutil.rmtree(d)
            removed.append(str(d))
        else:  # reuse: only our links (into the source folder) and JSON files; the audio is the user's
            source = os.path.realpath(info.get("source") or "/nonexistent")
            in_place = os.path.realpath(out) == source or source.startswith(os.path.realpath(out) + os.sep)
            for split_dir in sorted(d.glob("*/*")):
                if not split_dir.is_dir() or split_dir.is_symlink():
                    continue
                for p in sorted(split_dir.iterdir()):
                    if p.is_symlink():
                        if not in_place and os.path.realpath(p).startswith(source + os.sep):
                            p.unlink()
                    elif p.is_file() and p.suffix == ".json":
                        p.unlink()
            removed.append(f"{d} (links and metadata)")
    for n in (merl_lists.list_name(n_src, s) for s in SPLITS):
        p = out / "mix_lists" / n
        if p.exists():
            p.unlink()
    return removed


# ---------------------------------------------------------------------------
# build from WSJ0
# ---------------------------------------------------------------------------
def _sph2pipe_for(resolved, out: Path, sph2pipe, sph2pipe_src, log) -> Optional[Path]:
    n_shn = sum(1 for r in resolved.values() if r.kind == "shorten")
    if not n_shn:
        return None
    tools = out / "tools"
    found = wsj0_sources.find_sph2pipe(sph2pipe, tools_dir=tools)
    if found is None:
        log(f"{n_shn} source(s) are shorten-compressed SPHERE and sph2pipe is not on PATH: "
            f"building it in {tools}")
        found = wsj0_sources.build_sph2pipe(tools, source=sph2pipe_src)
    log(f"using sph2pipe: {found}")
    return found


def _check_sources(out: Path, wsj0: Path, check: "merl_lists.ListCheck", nj: int, log) -> dict:
    """Find and check every source of the three lists; nothing is written unless one is missing
    (then the full list goes to ``OUT/logs/missing_sources.txt``)."""
    try:
        index = wsj0_sources.index_wsj0(wsj0)
    except (ValueError, FileNotFoundError) as err:
        raise PrepareError(str(err)) from err
    log(f"WSJ0 under {wsj0}: {index.describe()}")
    all_paths = [p for split in SPLITS for e in check.entries[split] for p in e.paths]
    try:
        resolved = wsj0_sources.resolve_sources(all_paths, index, nj=nj)
    except wsj0_sources.SourceProblems as err:
        report = out / "logs" / "missing_sources.txt"
        err.write_report(report)
        raise PrepareError(f"{err}\nFull list: {report}\nNo mixture was written.") from err
    kinds: Dict[str, int] = {}
    for r in resolved.values():
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    log(f"all {len(resolved)} source files found and readable: "
        + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
    return resolved


def _build(
    out: Path, resolved: dict, n_src: int, lists: Dict[str, Path], check: "merl_lists.ListCheck",
    rates: List[int], modes: List[str], nj: int, wav_cache: Optional[PathLike], sph2pipe,
    sph2pipe_src, activlev_rev: str, progress: bool, log,
) -> Dict[str, str]:
    sph = _sph2pipe_for(resolved, out, sph2pipe, sph2pipe_src, log)
    cache = Path(wav_cache) if wav_cache else out / "wsj0_wav"
    t0 = time.perf_counter()
    counts = wsj0_sources.materialise_sources(resolved, cache, sph2pipe=sph, nj=nj, progress=progress)
    log(f"sources in {cache}: {counts['link']} linked, {counts['converted']} converted, "
        f"{counts['kept']} already there ({time.perf_counter() - t0:.1f} s)")

    steps: Dict[str, str] = {}
    pad = ACTIVLEV_REVISIONS[activlev_rev]
    log(f"mixing with voicebox activlev rev. {activlev_rev} ("
        + ("0.35 s zero padding, as the activlev.m shipped in MERL's zip" if pad else "no zero padding") + ")")
    for split in SPLITS:
        entries = [MixEntry(tuple((resolved[p].target, s) for p, s in e.sources)) for e in check.entries[split]]
        digest = merl_lists.normalised_sha256(lists[split])
        todo = []
        for rate, mode in _grid(rates, modes):
            d = split_path(out, rate, mode, split)
            cfg = {"format": _FORMAT, "n_src": n_src, "mix_list_sha256": digest, "activlev": activlev_rev,
                   "rate": rate, "mode": mode}
            marker = _read_json(d / ".done") if (d / ".done").is_file() else None
            if marker is not None:
                if marker.get("config") == cfg:
                    steps[str(d.relative_to(out))] = "skipped"
                    continue
                raise PrepareError(
                    f"{d} was made with other settings ({marker.get('config')}) than requested ({cfg}); "
                    "re-run with --force to rebuild it"
                )
            todo.append((rate, mode, d, cfg))
        if not todo:
            continue
        t_rates = list(dict.fromkeys(t[0] for t in todo))
        t_modes = list(dict.fromkeys(t[1] for t in todo))
        groups = ([(t_rates, t_modes, todo)] if len(todo) == len(t_rates) * len(t_modes)
                  else [([t[0]], [t[1]], [t]) for t in todo])
        for g_rates, g_modes, items in groups:
            t0 = time.perf_counter()
            create_mixtures(entries, source_root=cache, out_root=out, split=split, sample_rates=tuple(g_rates),
                            modes=tuple(g_modes), nj=nj, progress=progress, p56_pad_zeros=pad)
            dt = time.perf_counter() - t0
            for _, _, d, cfg in items:
                _write_json_atomic(d / ".done", {"config": cfg, "n_mixtures": len(entries)})
                steps[str(d.relative_to(out))] = "done"
            log(f"{split}: {len(entries)} mixtures x {len(items)} folder(s) in {dt:.1f} s")
    return steps


# ---------------------------------------------------------------------------
# reuse an existing wsj0-mix folder
# ---------------------------------------------------------------------------
def _locate_mix_root(path: Path, n_src: int) -> Path:
    cands = [path, path / f"{n_src}speakers", path / "wsj0-mix" / f"{n_src}speakers"]
    if path.name in ("wav8k", "wav16k"):
        cands.insert(0, path.parent)
    for c in cands:
        if (c / "wav8k").is_dir() or (c / "wav16k").is_dir():
            return c
    raise PrepareError(
        f"--wsj0-2mix {path}: no wav8k/ or wav16k/ folder found (looked in {', '.join(str(c) for c in cands)}); "
        f"expected the MERL/asteroid layout {n_src}speakers/wav8k/min/tr/mix/*.wav"
    )


def _reuse(
    out: Path, src_path: Path, n_src: int, rates: List[int], modes: List[str],
    check: Optional["merl_lists.ListCheck"], allow_partial: bool, log,
) -> Dict[str, str]:
    import soundfile as sf

    base = _locate_mix_root(src_path.expanduser(), n_src)
    stems = stem_names(n_src)
    in_place = out.resolve() == base.resolve()
    problems: List[str] = []
    plan = []
    for rate, mode in _grid(rates, modes):
        for split in SPLITS:
            rel = Path(rate_dir_name(rate)) / mode / split
            sdir = base / rel
            missing = [st for st in stems if not (sdir / st).is_dir()]
            if missing:
                problems.append(f"{sdir}: missing folder(s) {', '.join(m + '/' for m in missing)}")
                continue
            names = sorted(p.name for p in (sdir / "mix").iterdir() if p.suffix.lower() == ".wav"
                           and not p.name.startswith("."))
            if check is not None:
                want = sorted(e.name + ".wav" for e in check.entries[split])
                if names != want:
                    extra, lack = sorted(set(names) - set(want)), sorted(set(want) - set(names))
                    problems.append(f"{sdir / 'mix'}: {len(lack)} mixture(s) of the list missing"
                                    + (f" (e.g. {lack[0]})" if lack else "")
                                    + f", {len(extra)} not in the list" + (f" (e.g. {extra[0]})" if extra else ""))
            elif merl_lists.names_sha256(names) != merl_lists.OFFICIAL_NAMES_SHA256[(n_src, split)]:
                msg = (f"{sdir / 'mix'}: {len(names)} files whose names are not the official wsj0-{n_src}mix "
                       f"{split} set ({merl_lists.OFFICIAL_COUNTS[split]} files)")
                if allow_partial:
                    log("warning (--allow-partial): " + msg)
                else:
                    problems.append(msg)
            # spot-check format on a sample (first, last, every 100th)
            for name in names[::100] + names[-1:]:
                for st in stems:
                    f = sdir / st / name
                    try:
                        info = sf.info(str(f))
                    except Exception as err:
                        problems.append(f"{f}: unreadable ({err})")
                        continue
                    if info.samplerate != rate or info.channels != 1:
                        problems.append(f"{f}: {info.samplerate} Hz x {info.channels} ch, expected {rate} Hz mono")
            plan.append((rel, sdir))
    if problems:
        raise PrepareError(f"--wsj0-2mix {base} is not a usable wsj0-{n_src}mix folder:\n  " + "\n  ".join(problems))
    steps: Dict[str, str] = {}
    for rel, sdir in plan:
        odir = out / rel
        if not in_place:
            odir.mkdir(parents=True, exist_ok=True)
            for st in stems:
                link = odir / st
                if link.is_symlink():
                    if os.path.realpath(link) == os.path.realpath(sdir / st):
                        continue
                    link.unlink()
                elif link.exists():
                    raise PrepareError(f"{link} exists and is not a link made by this script; use another --out")
                tmp = odir / f".{st}.{os.getpid()}.tmp"
                os.symlink(os.path.abspath(sdir / st), tmp)
                os.replace(tmp, link)
        try:
            write_split_metadata(odir, n_src)
        except (ValueError, FileNotFoundError) as err:
            raise PrepareError(f"--wsj0-2mix {base}: {err}") from err
        steps[str(rel)] = "indexed"
    log(f"indexed {base} -> {out}" + (" (in place)" if in_place else " (symlinked folders)"))
    return steps


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------
def prepare_wsj0_mix(
    out_dir: PathLike,
    wsj0: Optional[PathLike] = None,
    wsj0_mix: Optional[PathLike] = None,
    n_src: int = 2,
    mix_lists: Optional[PathLike] = None,
    mix_lists_url: str = merl_lists.MERL_URL,
    sample_rates: Sequence[int] = (8000,),
    modes: Sequence[str] = ("min",),
    nj: int = 1,
    wav_cache: Optional[PathLike] = None,
    sph2pipe: Optional[PathLike] = None,
    sph2pipe_src: Optional[PathLike] = None,
    activlev_rev: str = "9407",
    allow_partial: bool = False,
    force: bool = False,
    progress: bool = True,
    fetch: Optional[Callable] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Make ``out_dir/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,..}.json``; see the module docstring.

    Exactly one of ``wsj0`` (build) and ``wsj0_mix`` (reuse) is given.
    Returns a summary dict (``report`` holds the per-folder counts and hours).
    Raises :class:`PrepareError` (and ``ValueError`` for bad arguments) with
    messages meant for the user.
    """
    if (wsj0 is None) == (wsj0_mix is None):
        raise ValueError("give exactly one of --wsj0 (build from WSJ0) and --wsj0-2mix (use an existing folder)")
    if n_src not in (2, 3):
        raise ValueError(f"--n-src must be 2 or 3, got {n_src}")
    rates = list(dict.fromkeys(int(r) for r in sample_rates))
    if not rates or any(r not in (8000, 16000) for r in rates):
        raise ValueError(f"--sample-rates must be 8000 and/or 16000, got {list(sample_rates)}")
    modes = list(dict.fromkeys(modes))
    if not modes or any(m not in ("min", "max") for m in modes):
        raise ValueError(f"--modes must be min and/or max, got {list(modes)}")
    if nj < 1:
        raise ValueError(f"--nj must be >= 1, got {nj}")
    if activlev_rev not in ACTIVLEV_REVISIONS:
        raise ValueError(f"--activlev-rev must be one of {sorted(ACTIVLEV_REVISIONS)}, got {activlev_rev!r}")
    out = Path(out_dir).expanduser()
    t_start = time.perf_counter()
    mode = "build" if wsj0 is not None else "reuse"
    if mode == "build":
        root = Path(wsj0).expanduser()
        if not root.is_dir():
            raise PrepareError(f"--wsj0 {root}: no such folder (the LDC WSJ0 corpus, or a wav copy of it)")
    else:
        root = Path(wsj0_mix).expanduser()
        if not root.is_dir():
            raise PrepareError(f"--wsj0-2mix {root}: no such folder")
    out.mkdir(parents=True, exist_ok=True)
    removed = _force_clean(out, n_src) if force else []
    for r in removed:
        log(f"--force: removed {r}")
    in_place = mode == "reuse" and out.resolve() == _locate_mix_root(root, n_src).resolve()
    _check_output(out, mode, n_src, in_place)

    check = None
    lists: Dict[str, Path] = {}
    if mode == "build" or mix_lists is not None:
        kwargs = {"fetch": fetch} if fetch is not None else {}
        try:
            lists = merl_lists.obtain_lists(n_src, out / "mix_lists", source=mix_lists, url=mix_lists_url, **kwargs)
        except merl_lists.ListsUnavailable as err:
            raise PrepareError(str(err)) from err
        try:
            check = merl_lists.check_lists(lists, n_src, allow_partial=allow_partial)
        except ValueError as err:
            raise PrepareError(str(err)) from err
        for w in check.warnings:
            log("warning: " + w)
        log("mix lists: " + ", ".join(
            f"{s}={len(check.entries[s])}{'' if check.official[s] else ' (NOT official)'}" for s in SPLITS))
        log(snr_convention(check.entries, n_src))
    else:
        log("SNR convention (MERL create_wav_%dspeakers.m): the numbers in a file name <utt1>_<snr1>_<utt2>_<snr2>"
            ".wav are per-source gains in dB over each source's ITU-T P.56 active level (speaker 1 at +snr dB, "
            "speaker 2 at -snr dB), not a signal-to-noise ratio: s1 is snr1 - snr2 dB louder than s2" % n_src)

    resolved = _check_sources(out, root, check, nj, log) if mode == "build" else None
    _claim_output(out, mode, n_src, str(root.resolve()), in_place)
    if mode == "build":
        steps = _build(out, resolved, n_src, lists, check, rates, modes, nj, wav_cache, sph2pipe, sph2pipe_src,
                       activlev_rev, progress, log)
        expected = {s: len(check.entries[s]) for s in SPLITS}
    else:
        steps = _reuse(out, root, n_src, rates, modes, check, allow_partial, log)
        expected = {s: len(check.entries[s]) for s in SPLITS} if check is not None else None
    report = final_check(out, n_src, rates, modes, expected=expected, allow_partial=allow_partial, log=log)
    summary = {
        "out_dir": str(out),
        "mode": mode,
        "source": str(root),
        "n_src": n_src,
        "activlev": activlev_rev if mode == "build" else None,
        "mix_lists": {s: str(p) for s, p in lists.items()},
        "official_lists": check.all_official if check is not None else None,
        "steps": steps,
        "report": report,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    _write_json_atomic(out / "prepare_summary.json", summary)
    return summary


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="egs/wsj0-2mix/prepare.py",
        description="Build wsj0-2mix / wsj0-3mix from WSJ0 exactly like MERL's scripts, or index an existing "
        "copy, into OUT/wav{8k,16k}/{min,max}/{tr,cv,tt}/ with asteroid's JSON metadata. Re-running resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder, e.g. data/wsj0-2mix")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wsj0", help="WSJ0 root: the LDC discs (SPHERE .wv1) or a wav copy (wsj0/si_tr_s/...)")
    src.add_argument("--wsj0-2mix", "--wsj0-mix", dest="wsj0_mix",
                     help="existing wsj0-mix folder (…/2speakers with wav8k/min/tr/mix/…): validate, write metadata")
    p.add_argument("--n-src", type=int, default=2, choices=(2, 3), help="2: wsj0-2mix, 3: wsj0-3mix")
    p.add_argument("--mix-lists", help="folder with mix_<n>_spk_{tr,cv,tt}.txt, or create-speaker-mixtures.zip "
                   "[default: download from MERL, or reuse OUT/mix_lists]")
    p.add_argument("--mix-lists-url", default=merl_lists.MERL_URL, help="where to download MERL's zip from")
    p.add_argument("--sample-rates", type=int, nargs="+", default=[8000], metavar="HZ", help="8000 and/or 16000")
    p.add_argument("--modes", nargs="+", default=["min"], metavar="MODE", help="min and/or max")
    p.add_argument("--nj", type=int, default=min(os.cpu_count() or 1, 8), help="parallel processes")
    p.add_argument("--wav-cache", help="where the 16 kHz wav sources go (shareable between 2mix and 3mix) "
                   "[default: OUT/wsj0_wav]")
    p.add_argument("--sph2pipe", default=os.environ.get("SPH2PIPE") or None,
                   help="sph2pipe executable [default: $SPH2PIPE, PATH, OUT/tools/sph2pipe, else built]")
    p.add_argument("--sph2pipe-src", help="sph2pipe_v2.5.tar.gz to build sph2pipe from offline")
    p.add_argument("--activlev-rev", default="9407", choices=sorted(ACTIVLEV_REVISIONS),
                   help="voicebox activlev revision: 9407 = the copy in MERL's zip (pads 0.35 s of zeros), "
                   "2516 = older voicebox")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept lists or folders that are not the official ones (other counts or content)")
    p.add_argument("--force", action="store_true",
                   help="rebuild the mixtures (converted sources are kept) / rewrite the metadata")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(None if argv is None else list(argv))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"{parser.prog} " + " ".join(sys.argv[1:] if argv is None else list(argv)))
    try:
        summary = prepare_wsj0_mix(
            args.out, wsj0=args.wsj0, wsj0_mix=args.wsj0_mix, n_src=args.n_src, mix_lists=args.mix_lists,
            mix_lists_url=args.mix_lists_url, sample_rates=args.sample_rates, modes=args.modes, nj=args.nj,
            wav_cache=args.wav_cache, sph2pipe=args.sph2pipe, sph2pipe_src=args.sph2pipe_src,
            activlev_rev=args.activlev_rev, allow_partial=args.allow_partial, force=args.force,
            progress=not args.quiet, log=log,
        )
    except (PrepareError, wsj0_sources.Sph2pipeMissing, wsj0_sources.SphereError, FileNotFoundError,
            RuntimeError) as err:
        log(f"error: {err}")
        return 1
    except ValueError as err:
        parser.error(str(err))
        log(f"error: {err}")
        return 1
    print(json.dumps({k: summary[k] for k in ("out_dir", "mode", "n_src", "official_lists", "report", "seconds")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
