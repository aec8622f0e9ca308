"""Use an existing LibriMix folder (Libri2Mix / Libri3Mix) as the recipe's corpus, without copying audio.

Usage (``run.sh`` stage 0 calls it through ``prepare.sh``)::

    .venv/bin/python -m egs.librimix.prepare --out data/librimix --librimix /corpora/Libri2Mix
    # 16 kHz, min and max, the smaller training set, Libri3Mix
    .venv/bin/python -m egs.librimix.prepare --out data/libri3mix --librimix /corpora/Libri3Mix \\
        --sample-rates 16000 --modes min max --train-set train-100

LibriMix (Cosentino et al. 2020, made with https://github.com/JorisCos/LibriMix) is the
free alternative to wsj0-2mix: no LDC licence is needed. Its layout::

    Libri2Mix/wav8k|wav16k/min|max/train-360|train-100|dev|test/mix_clean|mix_both|s1|s2[|s3]|noise/*.wav
    Libri2Mix/wav8k|wav16k/min|max/metadata/mixture_<split>_mix_clean.csv

This script maps it onto the standard layout that training and evaluation read:

    OUT/wav8k/min/tr/{mix,s1,s2}  ->  symlinks to .../train-360/{mix_clean,s1,s2}   (--train-set)
    OUT/wav8k/min/cv/...          ->  .../dev/...
    OUT/wav8k/min/tt/...          ->  .../test/...

and writes ``mix.json``, ``s1.json`` ... there (:func:`local.metadata.write_split_metadata`).
Validation, as for an existing wsj0-2mix folder (``egs/wsj0-2mix/prepare.py --wsj0-2mix``),
happens before anything is written and reports every problem at once:

- each needed folder exists; the mix and source folders hold the same file names;
- the number of mixtures is the official one (below) unless ``--allow-partial``; when
  LibriMix's ``metadata/mixture_<split>_<mix>.csv`` is there, the file names are exactly
  its ``mixture_ID`` column;
- a sample of files (first, last, every 100th) is readable, mono, at the folder's rate;
- then every mixture's files have equal lengths (while the metadata is written).

``--mix-type clean`` (default) uses ``mix_clean``; ``both`` uses ``mix_both`` (speech +
WHAM! noise; the references stay the clean sources). Nothing is ever written inside the
LibriMix folder. A ``.done`` marker per split records what it was made from; re-running
skips finished splits, ``--force`` redoes them (only this script's links and JSON files are
removed, never audio).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from local.metadata import rate_dir_name, read_split_metadata, stem_names, write_split_metadata

__all__ = ["OFFICIAL_COUNTS", "LIBRIMIX_SPLITS", "PrepareError", "locate_librimix", "prepare_librimix", "main"]


#: (n_src, LibriMix split) -> number of mixtures in the official Libri2Mix / Libri3Mix.
OFFICIAL_COUNTS = {
    (2, "train-360"): 50800, (2, "train-100"): 13900, (2, "dev"): 3000, (2, "test"): 3000,
    (3, "train-360"): 33900, (3, "train-100"): 12000, (3, "dev"): 3000, (3, "test"): 3000,
}
LIBRIMIX_SPLITS = ("train-360", "train-100", "dev", "test")
TRAIN_SETS = ("train-360", "train-100")
MIX_TYPES = {"clean": "mix_clean", "both": "mix_both"}
_OWNER = ".librimix_prepare.json"
_FORMAT = 1


class PrepareError(RuntimeError):
    """A user-facing failure: the message says what is wrong and what to do."""


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_json_atomic(path: Path, obj) -> None:
    from local.stage_state import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def locate_librimix(path: Path, n_src: Optional[int]) -> tuple[Path, int]:
    """The ``Libri<n>Mix`` root (the folder holding ``wav8k/`` or ``wav16k/``) and its n_src.

    ``path`` may be that folder, its parent (then ``Libri<n_src>Mix`` inside it), or one
    of its ``wav8k`` / ``wav16k`` folders. ``n_src`` None: from the folder name
    (``Libri3Mix`` -> 3), else 2.
    """
    path = path.expanduser()
    if not path.is_dir():
        raise PrepareError(f"--librimix {path}: no such folder")
    names = [f"Libri{n_src}Mix"] if n_src else ["Libri2Mix", "Libri3Mix"]
    cands = [path.parent] if path.name in ("wav8k", "wav16k") else []
    cands += [path] + [path / n for n in names]
    for c in cands:
        if (c / "wav8k").is_dir() or (c / "wav16k").is_dir():
            found = n_src
            if found is None:
                found = 3 if c.resolve().name.lower() == "libri3mix" else 2
            return c, found
    raise PrepareError(
        f"--librimix {path}: no wav8k/ or wav16k/ folder found (looked in {', '.join(str(c) for c in cands)}); "
        "expected the LibriMix layout Libri2Mix/wav8k/min/train-360/mix_clean/*.wav"
    )


def _metadata_names(root: Path, split: str, mix_folder: str) -> Optional[List[str]]:
    """``mixture_ID`` column of LibriMix's ``metadata/mixture_<split>_<mix>.csv`` (None if absent)."""
    import csv

    path = root / "metadata" / f"mixture_{split}_{mix_folder}.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "mixture_ID" not in reader.fieldnames:
            raise PrepareError(f"{path}: no mixture_ID column (not a LibriMix metadata file?)")
        return sorted(row["mixture_ID"] + ".wav" for row in reader)


def _wav_names(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))


def _validate(base: Path, n_src: int, rate: int, mode: str, split_map: Dict[str, str], mix_folder: str,
              allow_partial: bool, log) -> List[str]:
    """Every problem of the folders that ``split_map`` (ours -> LibriMix) needs, as messages."""
    import soundfile as sf

    problems: List[str] = []
    root = base / rate_dir_name(rate) / mode
    sources = stem_names(n_src)[1:]
    for ours, theirs in split_map.items():
        sdir = root / theirs
        folders = [mix_folder] + sources
        missing = [f for f in folders if not (sdir / f).is_dir()]
        if missing:
            problems.append(f"{sdir}: missing folder(s) {', '.join(m + '/' for m in missing)}")
            continue
        names = _wav_names(sdir / mix_folder)
        if not names:
            problems.append(f"{sdir / mix_folder}: no wav files")
            continue
        for src in sources:
            got = _wav_names(sdir / src)
            if got != names:
                lack, extra = sorted(set(names) - set(got)), sorted(set(got) - set(names))
                problems.append(f"{sdir / src}: {len(lack)} file(s) of {mix_folder}/ missing"
                                + (f" (e.g. {lack[0]})" if lack else "")
                                + f", {len(extra)} not in {mix_folder}/" + (f" (e.g. {extra[0]})" if extra else ""))
        listed = _metadata_names(root, theirs, mix_folder)
        if listed is not None and listed != names:
            lack, extra = sorted(set(listed) - set(names)), sorted(set(names) - set(listed))
            problems.append(f"{sdir / mix_folder}: differs from {root / 'metadata'}/mixture_{theirs}_{mix_folder}.csv: "
                            f"{len(lack)} listed mixture(s) missing" + (f" (e.g. {lack[0]})" if lack else "")
                            + f", {len(extra)} not listed" + (f" (e.g. {extra[0]})" if extra else ""))
        official = OFFICIAL_COUNTS[(n_src, theirs)]
        if len(names) != official:
            msg = f"{sdir / mix_folder}: {len(names)} mixtures, Libri{n_src}Mix {theirs} has {official}"
            if allow_partial:
                log("warning (--allow-partial): " + msg)
            else:
                problems.append(msg + " (pass --allow-partial to use a partial or custom LibriMix)")
        for name in names[::100] + names[-1:]:
            for folder in folders:
                f = sdir / folder / name
                try:
                    info = sf.info(str(f))
                except Exception as err:  # libsndfile errors
                    problems.append(f"{f}: unreadable ({err})")
                    continue
                if info.samplerate != rate or info.channels != 1:
                    problems.append(f"{f}: {info.samplerate} Hz x {info.channels} ch, expected {rate} Hz mono")
    return problems


def _check_output(out: Path, base: Path, force: bool = False) -> None:
    info = _read_json(out / _OWNER)
    has_data = any((out / rate_dir_name(r)).exists() for r in (8000, 16000))
    if info is None and has_data:
        raise PrepareError(f"{out} already holds wav8k/ or wav16k/ folders that this script did not make; "
                           "choose another --out")
    other_source = info is not None and os.path.realpath(info.get("source", "")) != os.path.realpath(base)
    if other_source and has_data and not force:
        raise PrepareError(f"{out} was made from {info.get('source')}, not {base}; use --force to redo it, "
                           "or choose another --out")


def _force_clean(out: Path) -> List[str]:
    """Remove this script's links, JSON files and markers under ``out`` (never audio)."""
    if _read_json(out / _OWNER) is None:
        return []
    removed = []
    for rd in ("wav8k", "wav16k"):
        for split_dir in sorted((out / rd).glob("*/*")):
            if split_dir.is_symlink() or not split_dir.is_dir():
                continue
            for p in sorted(split_dir.iterdir()):
                if p.is_symlink() or (p.is_file() and (p.suffix == ".json" or p.name == ".done")):
                    p.unlink()
            removed.append(str(split_dir))
    return removed


def prepare_librimix(
    out_dir,
    librimix,
    n_src: Optional[int] = None,
    sample_rates: Sequence[int] = (8000,),
    modes: Sequence[str] = ("min",),
    train_set: str = "train-360",
    mix_type: str = "clean",
    allow_partial: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Index a LibriMix folder into ``out_dir/wav{8k,16k}/{min,max}/{tr,cv,tt}/``; see the module docstring.

    Returns a summary dict (``report``: mixtures and hours per folder). Raises
    :class:`PrepareError` (every validation problem at once) and ``ValueError``
    for bad arguments.
    """
    if n_src not in (None, 2, 3):
        raise ValueError(f"--n-src must be 2 or 3, got {n_src}")
    rates = list(dict.fromkeys(int(r) for r in sample_rates))
    if not rates or any(r not in (8000, 16000) for r in rates):
        raise ValueError(f"--sample-rates must be 8000 and/or 16000, got {list(sample_rates)}")
    modes = list(dict.fromkeys(modes))
    if not modes or any(m not in ("min", "max") for m in modes):
        raise ValueError(f"--modes must be min and/or max, got {list(modes)}")
    if train_set not in TRAIN_SETS:
        raise ValueError(f"--train-set must be one of {TRAIN_SETS}, got {train_set!r}")
    if mix_type not in MIX_TYPES:
        raise ValueError(f"--mix-type must be one of {sorted(MIX_TYPES)}, got {mix_type!r}")
    t0 = time.perf_counter()
    base, n_src = locate_librimix(Path(librimix), n_src)
    out = Path(out_dir).expanduser()
    mix_folder = MIX_TYPES[mix_type]
    split_map = {"tr": train_set, "cv": "dev", "tt": "test"}
    log(f"Libri{n_src}Mix at {base}: tr={train_set}, cv=dev, tt=test, mixtures from {mix_folder}/")

    problems = []
    for rate in rates:
        for mode in modes:
            if not (base / rate_dir_name(rate) / mode).is_dir():
                problems.append(f"{base / rate_dir_name(rate) / mode}: no such folder (LibriMix generated with "
                                "other --freqs/--modes? pass the ones you have with --sample-rates/--modes)")
                continue
            problems += _validate(base, n_src, rate, mode, split_map, mix_folder, allow_partial, log)
    if problems:
        raise PrepareError(f"--librimix {base} is not a usable Libri{n_src}Mix folder:\n  " + "\n  ".join(problems))

    real_out, real_base = os.path.realpath(out), os.path.realpath(base)
    if real_out == real_base or real_out.startswith(real_base + os.sep):
        raise PrepareError(f"--out {out} is inside the LibriMix folder {base}: nothing is written there, "
                           "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if force:
        for r in _force_clean(out):
            log(f"--force: removed the links and metadata of {r}")
    _check_output(out, base, force)
    _write_json_atomic(out / _OWNER, {"corpus": "librimix", "source": str(base.resolve()), "n_src": n_src})
    stems = stem_names(n_src)
    steps: Dict[str, str] = {}
    report: Dict[str, dict] = {}
    for rate in rates:
        for mode in modes:
            for ours, theirs in split_map.items():
                rel = Path(rate_dir_name(rate)) / mode / ours
                odir, sdir = out / rel, base / rate_dir_name(rate) / mode / theirs
                cfg = {"format": _FORMAT, "source": str(sdir.resolve()), "mix": mix_folder, "n_src": n_src}
                marker = _read_json(odir / ".done") or {}
                if marker.get("config") == cfg and (odir / "mix.json").is_file():
                    steps[str(rel)] = "skipped"
                else:
                    odir.mkdir(parents=True, exist_ok=True)
                    (odir / ".done").unlink(missing_ok=True)
                    for stem, folder in zip(stems, [mix_folder] + stems[1:]):
                        link, target = odir / stem, os.path.abspath(sdir / folder)
                        if link.is_symlink():
                            if os.path.realpath(link) == os.path.realpath(target):
                                continue
                            link.unlink()
                        elif link.exists():
                            raise PrepareError(f"{link} exists and is not a link made by this script; "
                                               "choose another --out")
                        tmp = odir / f".{stem}.{os.getpid()}.tmp"
                        os.symlink(target, tmp)
                        os.replace(tmp, link)
                    try:
                        write_split_metadata(odir, n_src)
                    except (ValueError, FileNotFoundError) as err:
                        raise PrepareError(f"--librimix {base}: {err}") from err
                    _write_json_atomic(odir / ".done", {"config": cfg})
                    steps[str(rel)] = "indexed"
                meta = read_split_metadata(odir, n_src)
                hours = sum(m["n_samples"] for m in meta) / rate / 3600.0
                report[str(rel)] = {"from": theirs, "mixtures": len(meta), "hours": round(hours, 3)}
                log(f"{str(rel):<16} <- {theirs:<10} {len(meta):>7} mixtures {hours:8.2f} h  ({steps[str(rel)]})")
    summary = {"out_dir": str(out), "source": str(base), "n_src": n_src, "train_set": train_set,
               "mix": mix_folder, "steps": steps, "report": report,
               "seconds": round(time.perf_counter() - t0, 2)}
    _write_json_atomic(out / "prepare_summary.json", summary)
    return summary


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m egs.librimix.prepare",
        description="Validate an existing LibriMix folder (Libri2Mix/Libri3Mix) and write the recipe's standard "
        "layout OUT/wav{8k,16k}/{min,max}/{tr,cv,tt}/ (symlinks + JSON metadata, no audio copied).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder, e.g. data/librimix")
    p.add_argument("--librimix", required=True,
                   help="the Libri2Mix or Libri3Mix folder (holding wav8k/ or wav16k/), or its parent")
    p.add_argument("--n-src", type=int, choices=(2, 3), default=None,
                   help="2 or 3 speakers [default: from the folder name, Libri3Mix -> 3, else 2]")
    p.add_argument("--sample-rates", "--sample-rate", type=int, nargs="+", default=[8000], metavar="HZ",
                   help="8000 and/or 16000")
    p.add_argument("--modes", nargs="+", default=["min"], metavar="MODE", help="min and/or max")
    p.add_argument("--train-set", choices=TRAIN_SETS, default="train-360", help="LibriMix split used as tr")
    p.add_argument("--mix-type", choices=sorted(MIX_TYPES), default="clean",
                   help="clean: mix_clean (speech only); both: mix_both (speech + WHAM! noise)")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept other mixture counts than the official Libri2Mix/Libri3Mix ones")
    p.add_argument("--force", action="store_true", help="rewrite the links and metadata")
    p.add_argument("--nj", type=int, default=1, help="accepted for the corpus contract; indexing is serial")
    return p


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(None if argv is None else list(argv))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        summary = prepare_librimix(args.out, args.librimix, n_src=args.n_src, sample_rates=args.sample_rates,
                                   modes=args.modes, train_set=args.train_set, mix_type=args.mix_type,
                                   allow_partial=args.allow_partial, force=args.force, log=log)
    except PrepareError as err:
        log(f"error: {err}")
        return 1
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps({k: summary[k] for k in ("out_dir", "n_src", "train_set", "report", "seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
