"""Split metadata in asteroid's wsj0-mix JSON format.

A split folder (e.g. ``.../wav8k/min/tr``) holds ``mix/``, ``s1/``, ``s2/``
[, ``s3/`` ...] with identically named wav files.  Next to them, *inside* the
split folder, this module writes ``mix.json``, ``s1.json``, ``s2.json`` ...:
each a JSON list of ``[absolute_wav_path, n_samples]`` sorted by file name,
aligned across the files (entry ``i`` of every file is the same mixture), as
asteroid's ``preprocess_wsj0mix.py`` produces and
``asteroid.data.Wsj0mixDataset(json_dir=split_dir, ...)`` reads.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Union

import soundfile as sf

__all__ = ["write_split_metadata", "read_split_metadata", "stem_names", "CorpusChanged", "REINDEX_HINT",
           "parse_mixture_name", "speaker_of", "source_speakers"]

PathLike = Union[str, "os.PathLike[str]"]

#: What to do when the files a split's JSON names are gone (every corpus's prepare rewrites the JSON).
REINDEX_HINT = ("re-run data preparation for the corpus where it is now "
                "(./run.sh --stage 0 --stop-stage 0 --data-dir <corpus folder>, with --force if stage 0 "
                "says it is up to date), which rewrites the JSON metadata")


class CorpusChanged(FileNotFoundError):
    """A file named by a split's JSON metadata is gone: the corpus was moved or deleted since it was indexed."""



def rate_dir_name(rate: int) -> str:
    """The rate folder of the wsj0-mix layout: ``8000 -> "wav8k"``, ``16000 -> "wav16k"``; other rates ``"wav22050"``."""
    rate = int(rate)
    return f"wav{rate // 1000}k" if rate % 1000 == 0 else f"wav{rate}"


def split_path(corpus_dir: Union[str, Path], rate: int, mode: str, split: str) -> Path:
    """``<corpus_dir>/wav8k/min/tr``: the one place the split folder's path is built."""
    return Path(corpus_dir) / rate_dir_name(rate) / mode / split

def stem_names(n_src: int) -> List[str]:
    """``["mix", "s1", ..., "s<n_src>"]``."""
    if n_src < 1:
        raise ValueError(f"n_src must be >= 1, got {n_src}")
    return ["mix"] + [f"s{k + 1}" for k in range(n_src)]


# ---------------------------------------------------------------------------------------
# What a mixture's file name says: <utt1>_<snr1>_<utt2>_<snr2>[...], as MERL's lists name them
# ---------------------------------------------------------------------------------------
_SNR = re.compile(r"^-?\d+\.\d+(e-?\d+)?$")


def parse_mixture_name(name: str) -> Optional[List[tuple]]:
    """``<utt1>_<snr1>_<utt2>_<snr2>`` -> ``[(utt1, snr1), (utt2, snr2)]``, or None.

    The SNRs are the numbers with a decimal point (utterance ids may contain
    ``_`` and digits, as the demo's ``d321_002`` does).
    """
    out, parts = [], []
    for tok in name.split("_"):
        if parts and _SNR.match(tok):
            out.append(("_".join(parts), float(tok)))
            parts = []
        else:
            parts.append(tok)
    return out if out and not parts else None


def speaker_of(utt: str) -> str:
    """Speaker id of an utterance id: the part before ``_`` (demo), else the first 3 characters (WSJ0)."""
    return utt.split("_")[0] if "_" in utt else utt[:3]


def source_speakers(name: str, n_src: int) -> Optional[List[str]]:
    """Speakers of ``s1 .. s<n_src>`` of a mixture (``s<k>`` is the k-th utterance of its name), or None.

    None when the name is not ``<utt1>_<snr1>_..`` with ``n_src`` utterances
    (LibriMix, or a corpus named otherwise): the speakers are then unknown.
    """
    parsed = parse_mixture_name(name)
    if parsed is None or len(parsed) != n_src:
        return None
    return [speaker_of(utt) for utt, _ in parsed]


def _write_json_atomic(path: Path, obj) -> None:
    from .stage_state import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=4) + "\n")


def _wavs(folder: Path) -> Dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()
            and not p.name.startswith(".")}


def write_split_metadata(split_dir: PathLike, n_src: int) -> None:
    """Write ``mix.json``, ``s1.json``, ... inside ``split_dir``.

    Raises ``FileNotFoundError`` if a ``mix``/``s<k>`` folder is missing and
    ``ValueError`` if the folders do not hold the same file names, or if the
    files of one mixture differ in length.
    """
    split = Path(os.path.abspath(split_dir))
    stems = stem_names(n_src)
    listing: Dict[str, Dict[str, Path]] = {}
    for st in stems:
        folder = split / st
        if not folder.is_dir():
            raise FileNotFoundError(f"{split}: missing folder {st}/")
        listing[st] = _wavs(folder)
    names = sorted(listing["mix"])
    if not names:
        raise ValueError(f"{split / 'mix'}: no wav files")
    ref = set(names)
    problems = []
    for st in stems[1:]:
        got = set(listing[st])
        if got != ref:
            only_mix = sorted(ref - got)
            only_src = sorted(got - ref)
            msg = f"{split / st}: "
            if only_mix:
                msg += f"{len(only_mix)} file(s) of mix/ missing (e.g. {only_mix[0]})"
            if only_src:
                msg += ("; " if only_mix else "") + f"{len(only_src)} file(s) not in mix/ (e.g. {only_src[0]})"
            problems.append(msg)
    if problems:
        raise ValueError("metadata: folders are not aligned:\n  " + "\n  ".join(problems))

    tables: Dict[str, list] = {st: [] for st in stems}
    for name in names:
        lens = {}
        for st in stems:
            path = listing[st][name]
            try:
                lens[st] = int(sf.info(str(path)).frames)
            except Exception as err:
                raise ValueError(f"cannot read audio file {path}: {err}") from err
            tables[st].append([str(path), lens[st]])
        if len(set(lens.values())) != 1:
            detail = ", ".join(f"{st}={n}" for st, n in lens.items())
            raise ValueError(f"{split}: length mismatch for {name}: {detail}")
    for st in stems:
        _write_json_atomic(split / f"{st}.json", tables[st])


def _check_first_exists(json_file: Path, data: list) -> None:
    if data and not os.path.exists(data[0][0]):
        raise CorpusChanged(f"{json_file} names {data[0][0]}, which does not exist: the corpus was moved or "
                            f"deleted since it was indexed; {REINDEX_HINT}")


def read_split_metadata(split_dir: PathLike, n_src: int) -> List[dict]:
    """Read and validate the JSON files of a split.

    Returns one dict per mixture: ``{"name", "mix", "sources", "n_samples"}``
    (``name`` without ``.wav``, ``sources`` the list of ``n_src`` paths).
    Raises ``FileNotFoundError`` for a missing JSON file, ``ValueError``
    (naming the file) for malformed or misaligned content, and
    :class:`CorpusChanged` when the first wav a JSON file names does not exist
    (the corpus was moved: the JSON holds absolute paths). Only the first
    entry of each file is checked, so that reading a 20000-mixture split
    stays cheap; a file deleted later is reported when it is read
    (``local.data``).
    """
    split = Path(split_dir)
    stems = stem_names(n_src)
    tables = {}
    for st in stems:
        jf = split / f"{st}.json"
        if not jf.is_file():
            raise FileNotFoundError(f"metadata file not found: {jf}")
        try:
            with open(jf, "r", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{jf}: cannot parse JSON: {err}") from err
        if not isinstance(data, list):
            raise ValueError(f"{jf}: expected a JSON list of [path, n_samples]")
        for i, item in enumerate(data):
            if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str)
                    or isinstance(item[1], bool) or not isinstance(item[1], int) or item[1] < 0):
                raise ValueError(f"{jf}: entry {i} is not [path, n_samples]: {item!r}")
        _check_first_exists(jf, data)
        tables[st] = data
    n = len(tables["mix"])
    for st in stems[1:]:
        if len(tables[st]) != n:
            raise ValueError(
                f"{split / (st + '.json')}: {len(tables[st])} entries but mix.json has {n}"
            )
    out = []
    for i in range(n):
        mix_path, n_samples = tables["mix"][i]
        name = Path(mix_path).name
        sources = []
        for st in stems[1:]:
            p, ns = tables[st][i]
            if Path(p).name != name:
                raise ValueError(
                    f"{split / (st + '.json')}: entry {i} is {Path(p).name} but mix.json has {name}"
                )
            if ns != n_samples:
                raise ValueError(
                    f"{split / (st + '.json')}: entry {i} ({name}) has {ns} samples, mix has {n_samples}"
                )
            sources.append(p)
        out.append({"name": Path(name).stem, "mix": mix_path, "sources": sources, "n_samples": n_samples})
    return out
