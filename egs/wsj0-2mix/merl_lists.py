"""MERL's wsj0-mix lists: where they come from and how they are checked.

The official lists ship in MERL's ``create-speaker-mixtures.zip``
(:data:`MERL_URL`, the archive asteroid's and ESPnet's wsj0-mix recipes
download): ``mix_2_spk_{tr,cv,tt}.txt`` for wsj0-2mix and
``mix_3_spk_{tr,cv,tt}.txt`` for wsj0-3mix, one mixture per line,
``path1 snr1 path2 snr2 [path3 snr3]``, with 20000 / 5000 / 3000 lines.

:func:`obtain_lists` takes them from ``--mix-lists`` (a folder holding the
``.txt`` files or the zip itself) or downloads the zip, then copies the
lists into the output folder, recording where each copy came from
(:data:`ORIGINS_FILE`).  :func:`check_lists` validates them: format
errors name the file and line (via :func:`local.mixing.parse_mix_list`) of
the user's original (``--mix-lists`` file, or ``zip:member``), not of the copy,
paths must be WSJ0 ``si_tr_s``/``si_dt_05``/``si_et_05`` paths, the line
counts must be the official ones and the content must equal the official
lists (SHA-256 of the whitespace-normalised text, :data:`OFFICIAL_SHA256`);
``allow_partial=True`` turns the last two into warnings.  SNR fields
written differently from MATLAB's ``num2str`` (which MERL uses for the file
names) are reported, because the names would then differ from MERL's.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import urllib.error
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from local.stage_state import atomic_file
from wsj0_sources import download, split_list_path  # one direction: the sources module imports nothing of this one

__all__ = [
    "MERL_URL",
    "SPLITS",
    "OFFICIAL_COUNTS",
    "OFFICIAL_SHA256",
    "OFFICIAL_NAMES_SHA256",
    "ListsUnavailable",
    "ListCheck",
    "list_name",
    "matlab_num2str",
    "normalised_sha256",
    "names_sha256",
    "obtain_lists",
    "origin_of",
    "check_lists",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Written by obtain_lists next to the copies: ``{list name: [origin, sha256 of the copy]}``.
ORIGINS_FILE = ".origins.json"
#: MERL's public archive with the mixing scripts and the mix lists (used by asteroid and ESPnet).
MERL_URL = "https://www.merl.com/demos/deep-clustering/create-speaker-mixtures.zip"
SPLITS = ("tr", "cv", "tt")
#: Mixtures per split of wsj0-2mix and wsj0-3mix.
OFFICIAL_COUNTS = {"tr": 20000, "cv": 5000, "tt": 3000}
#: SHA-256 of each official list after whitespace normalisation (see :func:`normalised_sha256`),
#: computed from the lists in create-speaker-mixtures.zip (files dated 2016-04-27).
OFFICIAL_SHA256 = {
    "mix_2_spk_tr.txt": "3d6239ff1204d14ad46541559a13e9f5c0535d105581a18ba7ac26fcfc9b2e77",
    "mix_2_spk_cv.txt": "a7bb57086c8e1eb2042e8ce5c16035fabd35805d79447acf7900437afc228516",
    "mix_2_spk_tt.txt": "ed3d5b9072f5680651aa7446f5ad2250502dbcc70a545fc8ddeb4f5d880f228b",
    "mix_3_spk_tr.txt": "d057e1e4bcb26d0c37a11e80f91f43d71deb659004e62c01860533be7fe34b05",
    "mix_3_spk_cv.txt": "56bd31fa9fdf6f011b4020e32829a698adbd2507f3182fd402be77ea1a51500b",
    "mix_3_spk_tt.txt": "b728041b16bc0e9ac9e60fc4ba7f7b8fb08c9bdfbd277cc49fb516662b891af8",
}
#: SHA-256 of the sorted official wav file names of each split (:func:`names_sha256`), so that an
#: existing wsj0-mix folder can be checked without the lists.
OFFICIAL_NAMES_SHA256 = {
    (2, "tr"): "67e1caf3661992f9b82902b10c6034a076f0ca7d507b8caa1e317a741df17902",
    (2, "cv"): "d1d890f51230c5d62eb8d8548d1982e57ed8e977c2d01dd0f6e3483ba283efa1",
    (2, "tt"): "1aa624680fff6bcdc4cabbe53a0c7ab1a1292314c8ae88e5c629627548f91a5e",
    (3, "tr"): "1e31501b1caf8fa07f3a13abb7a04b1b7f07bd87250bf55e8b1a535a9adca19d",
    (3, "cv"): "d0e55fd5f05711213f68eefbe9f19546f85d7df6c0718d14084a50fddd856001",
    (3, "tt"): "a1d7c8bcf5b0d166f1ed066208d5944558deb2dc0eda4f9ef6d7bfb347369912",
}


class ListsUnavailable(RuntimeError):
    """The mix lists could be neither found locally nor downloaded."""


def list_name(n_src: int, split: str) -> str:
    return f"mix_{n_src}_spk_{split}.txt"


def matlab_num2str(x: float) -> str:
    """MATLAB ``num2str`` of a real scalar, as MERL's script uses it in file names.

    Integers print as integers; other values with ``%.{p}g``,
    ``p = max(floor(log10|x|) + 5, 5)`` significant digits (so 5 for
    |x| < 10): ``num2str(1.9857) == "1.9857"``, ``num2str(0.059714) == "0.059714"``.
    """
    x = float(x)
    if not math.isfinite(x):
        return {math.inf: "Inf", -math.inf: "-Inf"}.get(x, "NaN")
    if x == int(x):
        return str(int(x))
    digits = max(math.floor(math.log10(abs(x))) + 5, 5)
    return f"{x:.{digits}g}"


def _normalised_lines(path: PathLike) -> List[str]:
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        return [" ".join(line.split()) for line in fh if line.split()]


def normalised_sha256(path: PathLike) -> str:
    """SHA-256 of a list with every line's whitespace collapsed and blank lines dropped."""
    text = "".join(line + "\n" for line in _normalised_lines(path))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def names_sha256(file_names: Sequence[str]) -> str:
    """SHA-256 of sorted wav file names (``<name>.wav``), one per line."""
    return hashlib.sha256(("\n".join(sorted(file_names)) + "\n").encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------
# obtaining the lists
# ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_origins(dest: Path, origins: Dict[str, str]) -> None:
    """Remember where each copy in ``dest`` came from, so that errors can name the user's file."""
    from local.stage_state import atomic_write_text

    record = {n: [origin, _sha256(dest / n)] for n, origin in origins.items()}
    atomic_write_text(dest / ORIGINS_FILE, json.dumps(record, indent=2) + "\n")


def origin_of(path: PathLike) -> str:
    """The user's file a list copy in ``OUT/mix_lists`` was made from, else ``path`` itself.

    The record counts only while the copy is unchanged (same SHA-256): an
    edited copy is then the file to name.
    """
    path = Path(path)
    try:
        record = json.loads((path.parent / ORIGINS_FILE).read_text(encoding="utf-8"))
        origin, digest = record[path.name]
    except (OSError, ValueError, KeyError, TypeError):
        return str(path)
    return str(origin) if digest == _sha256(path) else str(path)


def _from_zip(zip_path: Path, names: Sequence[str], dest: Path) -> Dict[str, Path]:
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ListsUnavailable(f"{zip_path}: not a readable zip archive ({err})") from err
    with zf:
        members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
        missing = [n for n in names if n not in members]
        if missing:
            raise ListsUnavailable(f"{zip_path} does not contain {', '.join(missing)}")
        out = {}
        for n in names:
            target = dest / n
            with zf.open(members[n]) as src, atomic_file(target) as fh:
                shutil.copyfileobj(src, fh)
            out[n] = target
    _record_origins(dest, {n: f"{zip_path}:{members[n]}" for n in names})
    return out


def obtain_lists(
    n_src: int,
    dest: PathLike,
    source: Optional[PathLike] = None,
    url: str = MERL_URL,
    fetch: Optional[Callable[[str, Path], None]] = None,
) -> Dict[str, Path]:
    """Put ``mix_<n>_spk_{tr,cv,tt}.txt`` into ``dest`` and return ``{split: path}``.

    ``source`` may be a folder holding the three lists or MERL's zip.  With no
    ``source``, lists already in ``dest`` are reused; otherwise the zip is
    downloaded from ``url`` with ``fetch`` (kept as ``dest/create-speaker-mixtures.zip``).
    Raises :class:`ListsUnavailable` with instructions when that fails.
    """
    dest = Path(dest)
    names = [list_name(n_src, s) for s in SPLITS]
    if source is not None:
        src = Path(source).expanduser()
        if src.is_dir():
            missing = [n for n in names if not (src / n).is_file()]
            if missing:
                raise ListsUnavailable(f"--mix-lists {src}: missing {', '.join(missing)}")
            dest.mkdir(parents=True, exist_ok=True)
            for n in names:
                if (src / n).resolve() != (dest / n).resolve():
                    with open(src / n, "rb") as fin, atomic_file(dest / n) as fh:
                        shutil.copyfileobj(fin, fh)
            _record_origins(dest, {n: str((src / n).resolve()) for n in names})
            return {s: dest / list_name(n_src, s) for s in SPLITS}
        if src.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            _from_zip(src, names, dest)
            return {s: dest / list_name(n_src, s) for s in SPLITS}
        raise ListsUnavailable(f"--mix-lists {src}: no such file or folder")
    if all((dest / n).is_file() for n in names):
        return {s: dest / list_name(n_src, s) for s in SPLITS}
    dest.mkdir(parents=True, exist_ok=True)
    zip_path = dest / Path(url.split("?")[0]).name
    if not zip_path.name.endswith(".zip"):
        zip_path = dest / "create-speaker-mixtures.zip"
    if not zip_path.is_file():
        try:
            (fetch or download)(url, zip_path)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise ListsUnavailable(
                f"could not download MERL's mix lists from {url}: {reason}\n"
                "This machine seems to be offline (or the URL moved). Download "
                "create-speaker-mixtures.zip on a machine with network access and pass it with "
                "--mix-lists /path/to/create-speaker-mixtures.zip (or unzip it and pass the folder "
                f"holding {', '.join(names)})."
            ) from err
    _from_zip(zip_path, names, dest)
    return {s: dest / list_name(n_src, s) for s in SPLITS}


# ---------------------------------------------------------------------------
# checking the lists
# ---------------------------------------------------------------------------
@dataclass
class ListCheck:
    """Result of :func:`check_lists`."""

    entries: Dict[str, list]                      # split -> [MixEntry]
    official: Dict[str, bool]                     # split -> content equals the official list
    warnings: List[str] = field(default_factory=list)

    @property
    def all_official(self) -> bool:
        return all(self.official.values())


def check_lists(
    lists: Dict[str, PathLike], n_src: int, allow_partial: bool = False
) -> ListCheck:
    """Parse and validate the three lists; see the module docstring.

    Raises ``ValueError`` (``file:line: ...`` for format errors, or a summary
    of wrong counts / non-official content unless ``allow_partial``).
    """
    from local.mixing import parse_mix_list

    entries: Dict[str, list] = {}
    official: Dict[str, bool] = {}
    warnings: List[str] = []
    errors: List[str] = []
    for split in SPLITS:
        path = Path(lists[split])
        shown = origin_of(path)  # the user's file, not our copy of it
        ents = parse_mix_list(path, n_src=n_src, name=shown)  # ValueError "<shown>:<line>: ..."
        lineno = 0
        with open(path, "r", encoding="utf-8") as fh:
            line_of = [i for i, line in enumerate(fh, start=1) if line.split()]
        for k, e in enumerate(ents):
            lineno = line_of[k]
            for p, s in e.sources:
                try:
                    split_list_path(p)
                except ValueError as err:
                    raise ValueError(f"{shown}:{lineno}: {err}") from None
                if matlab_num2str(float(s)) != s:
                    warnings.append(
                        f"{shown}:{lineno}: SNR written as {s!r}; MATLAB's num2str gives "
                        f"{matlab_num2str(float(s))!r}, so MERL's file name would differ from ours"
                    )
        seen: Dict[str, int] = {}
        for k, e in enumerate(ents):
            if e.name in seen:
                raise ValueError(f"{shown}:{line_of[k]}: mixture {e.name} repeats line {line_of[seen[e.name]]}")
            seen[e.name] = k
        if not ents:
            raise ValueError(f"{shown}: empty mix list")
        entries[split] = ents
        official[split] = normalised_sha256(path) == OFFICIAL_SHA256.get(list_name(n_src, split))
        want = OFFICIAL_COUNTS[split]
        if len(ents) != want:
            errors.append(f"{shown}: {len(ents)} mixtures, the official list has {want}")
        elif not official[split]:
            errors.append(f"{shown}: {want} lines but not the official MERL list (content differs)")
    if len(warnings) > 20:
        extra = len(warnings) - 20
        warnings = warnings[:20] + [f"... and {extra} more SNR fields not in num2str form"]
    if errors:
        if not allow_partial:
            raise ValueError(
                "the mix lists are not the official ones:\n  " + "\n  ".join(errors)
                + "\nUse MERL's lists (--mix-lists or the download), or pass --allow-partial to "
                "build from these lists anyway (the result is then not the published wsj0-mix)."
            )
        warnings = ["--allow-partial: " + e for e in errors] + warnings
    return ListCheck(entries, official, warnings)
