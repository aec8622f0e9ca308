"""Finding, checking and converting the WSJ0 utterances that a mix list needs.

WSJ0 (LDC93S6A/B) comes on CD-ROM "discs" (``11-1.1/wsj0/si_tr_s/01t/01to030v.wv1``,
``11-6.1/wsj0/si_dt_05/...``, ``11-14.1/wsj0/si_et_05/...``, sometimes under
``csr_1/``, sometimes in upper case), as NIST SPHERE files whose samples are
"embedded-shorten" compressed.  Many labs also keep a converted copy
(``wsj0/si_tr_s/01t/01to030v.wav``, the layout MERL's scripts read).

* :func:`index_wsj0` walks a root folder, finds every ``si_tr_s`` /
  ``si_dt_05`` / ``si_et_05`` folder wherever the disc layout puts it and
  indexes the utterances by ``(subset, utterance id)``, case-insensitively.
  Secondary-microphone recordings (``.wv2``, or any path component or file
  name carrying a ``wv2`` token, or a SPHERE file not named ``.wv1`` whose
  header's ``microphone`` is not the Sennheiser close-talking one) are kept
  apart: wsj0-2mix is made from the ``.wv1`` channel only.
* :func:`resolve_sources` maps mix-list paths (``wsj0/si_tr_s/01t/01to030v.wav``)
  to files and checks every one of them (exists, readable header, 16 kHz,
  mono, 16 bit; a converted wav copy whose SPHERE original lies in the same
  tree also has its length checked against the header's ``sample_count``)
  *before* anything is written; all problems are reported at once
  (:class:`SourceProblems`).
* :func:`materialise_sources` builds the tree MERL's script expects,
  ``<cache>/wsj0/<subset>/<spk>/<utt>.wav``: a symlink for a file that is
  already a 16-bit PCM wav, a converted copy otherwise (uncompressed SPHERE
  with the small reader below, shorten-compressed SPHERE with ``sph2pipe``,
  FLAC with libsndfile).  Every conversion is written atomically and checked
  against the SPHERE header (sample count and ``sample_checksum``), so a
  re-run skips finished files and never trusts a truncated one.
* :func:`find_sph2pipe` / :func:`build_sph2pipe` locate ``sph2pipe`` or build
  it from its C source (LDC's ``sph2pipe_v2.5.tar.gz``), from a local tarball
  or a download, and fail with a message naming what to install or pass.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "SUBSETS",
    "SOURCE_RATE",
    "SPH2PIPE_URLS",
    "SPH2PIPE_SHA256",
    "SphereHeader",
    "SphereError",
    "ShortenCompressed",
    "SourceProblems",
    "Sph2pipeMissing",
    "Wsj0Index",
    "read_sphere_header",
    "read_sphere",
    "sphere_checksum",
    "index_wsj0",
    "split_list_path",
    "resolve_sources",
    "materialise_sources",
    "find_sph2pipe",
    "build_sph2pipe",
]

PathLike = Union[str, "os.PathLike[str]"]

#: WSJ0 subsets that wsj0-2mix / wsj0-3mix draw from (tr and cv: si_tr_s; tt: si_dt_05 + si_et_05).
SUBSETS = ("si_tr_s", "si_dt_05", "si_et_05")
#: WSJ0 sample rate; a source at any other rate is refused.
SOURCE_RATE = 16000
#: Where sph2pipe's source is published (tried in order); checked against SPH2PIPE_SHA256.
SPH2PIPE_URLS = (
    "https://www.openslr.org/resources/3/sph2pipe_v2.5.tar.gz",
    "https://www.ldc.upenn.edu/sites/default/files/sph2pipe_v2.5.tar.gz",
)
SPH2PIPE_SHA256 = "5be236dc94ed0a301c5c8a369f849f76799ec7e70f25dfc0521068d9d1d4d3e3"

_AUDIO_SUFFIXES = {".wv1", ".wv2", ".wav", ".flac", ".sph", ".nist"}
_SPHERE_SUFFIXES = {".wv1", ".sph", ".nist"}
_WV2_TOKEN = re.compile(r"(^|[^a-z0-9])wv2([^a-z0-9]|$)")
_MAX_DISCOVERY_DEPTH = 8


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
class SphereError(ValueError):
    """A file is not a SPHERE file we can read (names the file)."""


class ShortenCompressed(SphereError):
    """The SPHERE file is shorten-compressed: it needs ``sph2pipe``."""


class Sph2pipeMissing(RuntimeError):
    """``sph2pipe`` is needed but cannot be found or built."""


class SourceProblems(RuntimeError):
    """Some sources are missing or unusable; ``problems`` lists them all.

    ``problems`` is a list of ``(list_path, reason)``.  The message shows the
    first :attr:`SHOWN` of them; :meth:`write_report` writes every one.
    """

    SHOWN = 50

    def __init__(self, problems: List[Tuple[str, str]], hint: str = ""):
        self.problems = sorted(problems)
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        lines = [f"{n} source file(s) needed by the mix lists are missing or unusable:"]
        lines += [f"  {p}: {why}" for p, why in self.problems[: self.SHOWN]]
        if n > self.SHOWN:
            lines.append(f"  ... and {n - self.SHOWN} more")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)

    def write_report(self, path: PathLike) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"{a}\t{b}\n" for a, b in self.problems), encoding="utf-8")


# ---------------------------------------------------------------------------
# NIST SPHERE
# ---------------------------------------------------------------------------
@dataclass
class SphereHeader:
    """The fields of a NIST SPHERE header (``NIST_1A``) that matter here."""

    header_size: int
    fields: Dict[str, Union[int, float, str]]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    @property
    def sample_rate(self) -> Optional[int]:
        v = self.fields.get("sample_rate")
        return int(v) if v is not None else None

    @property
    def channels(self) -> int:
        return int(self.fields.get("channel_count", 1))

    @property
    def sample_count(self) -> Optional[int]:
        v = self.fields.get("sample_count")
        return int(v) if v is not None else None

    @property
    def n_bytes(self) -> int:
        return int(self.fields.get("sample_n_bytes", 2))

    @property
    def coding(self) -> str:
        return str(self.fields.get("sample_coding", "pcm")).strip().lower()

    @property
    def shorten(self) -> bool:
        return "shorten" in self.coding

    @property
    def byte_order(self) -> str:
        """``"<"`` (SPHERE ``01``, little endian) or ``">"`` (``10``)."""
        v = str(self.fields.get("sample_byte_format", "01")).strip()
        if v in ("01", "1"):
            return "<"
        if v == "10":
            return ">"
        raise SphereError(f"unsupported sample_byte_format {v!r}")

    @property
    def secondary_microphone(self) -> bool:
        """True when the header names a microphone that is not WSJ's Sennheiser (channel 1)."""
        mic = self.fields.get("microphone")
        return isinstance(mic, str) and bool(mic.strip()) and "sennheiser" not in mic.lower()


def _parse_header_text(text: str, path: PathLike) -> Dict[str, Union[int, float, str]]:
    fields: Dict[str, Union[int, float, str]] = {}
    for raw in text.split("\n")[2:]:
        line = raw.rstrip("\r")
        if line.strip() == "end_head":
            return fields
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise SphereError(f"{path}: malformed SPHERE header line {line!r}")
        name, typ, rest = parts
        try:
            if typ == "-i":
                fields[name] = int(rest.split()[0])
            elif typ == "-r":
                fields[name] = float(rest.split()[0])
            elif typ.startswith("-s"):
                n = int(typ[2:])
                fields[name] = rest[:n]
            else:
                raise ValueError(typ)
        except (ValueError, IndexError):
            raise SphereError(f"{path}: malformed SPHERE header line {line!r}") from None
    raise SphereError(f"{path}: SPHERE header has no end_head")


def read_sphere_header(path: PathLike) -> SphereHeader:
    """Parse the ASCII header of a NIST SPHERE file (``SphereError`` naming the file if invalid)."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(1024)
        if not head.startswith(b"NIST_1A"):
            raise SphereError(f"{p}: not a NIST SPHERE file (no NIST_1A magic)")
        try:
            size = int(head[8:16].decode("ascii").strip())
        except ValueError:
            raise SphereError(f"{p}: bad SPHERE header size field {head[8:16]!r}") from None
        if size < 16 or size > 1 << 20:
            raise SphereError(f"{p}: implausible SPHERE header size {size}")
        if size > len(head):
            head += fh.read(size - len(head))
    if len(head) < size:
        raise SphereError(f"{p}: file shorter than its SPHERE header ({len(head)} < {size} bytes)")
    return SphereHeader(size, _parse_header_text(head[:size].decode("latin-1"), p))


def read_sphere(path: PathLike) -> Tuple[np.ndarray, int, SphereHeader]:
    """Read an *uncompressed* 16-bit PCM SPHERE file.

    Returns ``(samples, rate, header)`` with ``samples`` int16 of shape
    ``(n,)`` (mono) or ``(n, channels)``.  Raises :class:`ShortenCompressed`
    for shorten-compressed files (use ``sph2pipe``) and :class:`SphereError`
    for anything else it cannot read (other codings, truncated data).
    """
    p = Path(path)
    hdr = read_sphere_header(p)
    if hdr.shorten:
        raise ShortenCompressed(f"{p}: SPHERE samples are shorten-compressed ({hdr.coding}); "
                                "converting it needs sph2pipe")
    if hdr.coding not in ("pcm", "") and not hdr.coding.startswith("pcm"):
        raise SphereError(f"{p}: unsupported SPHERE sample_coding {hdr.coding!r} (only 16-bit PCM)")
    if hdr.n_bytes != 2:
        raise SphereError(f"{p}: unsupported sample_n_bytes {hdr.n_bytes} (only 16-bit PCM)")
    if not hdr.sample_rate:
        raise SphereError(f"{p}: SPHERE header has no sample_rate")
    ch = hdr.channels
    n = hdr.sample_count
    raw = np.fromfile(p, dtype=np.dtype(hdr.byte_order + "i2"), offset=hdr.header_size)
    if n is None:
        n = raw.size // ch
    if raw.size < n * ch:
        raise SphereError(f"{p}: truncated: header says {n} samples x {ch} channel(s), "
                          f"file holds {raw.size // ch}")
    data = raw[: n * ch].astype(np.int16)
    if ch > 1:
        data = data.reshape(n, ch)
    return data, int(hdr.sample_rate), hdr


def sphere_checksum(samples: np.ndarray) -> int:
    """SPHERE ``sample_checksum``: the sum of all 16-bit samples modulo 2**16."""
    return int(np.asarray(samples, dtype=np.int64).sum() % 65536)


# ---------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------
def _sniff(path: Path) -> str:
    """``"wav"`` (RIFF/WAVE), ``"sphere"``, ``"flac"`` or ``"unknown"`` from the first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return "unreadable"
    if head.startswith(b"NIST_1A"):
        return "sphere"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    return "unknown"


@dataclass
class Wsj0Index:
    """Utterances found under a WSJ0 root, keyed by ``(subset, utterance id)`` (lower case)."""

    root: Path
    subset_dirs: Dict[str, List[Path]] = field(default_factory=dict)
    primary: Dict[Tuple[str, str], Path] = field(default_factory=dict)
    secondary: Dict[Tuple[str, str], Path] = field(default_factory=dict)
    duplicates: int = 0
    #: the primary-channel SPHERE original of each utterance, when one is there (even if a
    #: converted wav copy is the file used): converted copies are checked against its sample_count
    sphere: Dict[Tuple[str, str], Path] = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        for s in SUBSETS:
            dirs = self.subset_dirs.get(s, [])
            n = sum(1 for k in self.primary if k[0] == s)
            parts.append(f"{s}: {n} utterance(s) in {len(dirs)} folder(s)")
        if self.secondary:
            parts.append(f"{len(self.secondary)} secondary-microphone (.wv2) file(s) ignored")
        return "; ".join(parts)


def _rank(path: Path) -> int:
    """Preference between two copies of one utterance: ready wav first, SPHERE last."""
    suf = path.suffix.lower()
    return {".wav": 0, ".flac": 1}.get(suf, 2)


def _utt_and_flags(name: str) -> Tuple[str, bool]:
    """``"01to030v.wv1"`` -> ``("01to030v", False)``; ``"01to030v.wv2.wav"`` -> (…, True)."""
    low = name.lower()
    stem = low.split(".", 1)[0]
    secondary = bool(_WV2_TOKEN.search(low))
    for suffix in ("_wv2", "-wv2", "_wv1", "-wv1"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem, secondary


def _find_subset_dirs(root: Path) -> Dict[str, List[Path]]:
    found: Dict[str, List[Path]] = {}
    if root.name.lower() in SUBSETS:
        found.setdefault(root.name.lower(), []).append(root)
        return found
    seen = set()
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            real = d.resolve()
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if not is_dir:
                continue
            low = e.name.lower()
            if low in SUBSETS:
                found.setdefault(low, []).append(Path(e.path))
            elif depth + 1 < _MAX_DISCOVERY_DEPTH:
                stack.append((Path(e.path), depth + 1))
    return found


def index_wsj0(root: PathLike) -> Wsj0Index:
    """Index the utterances of ``si_tr_s``, ``si_dt_05`` and ``si_et_05`` under ``root``.

    Works on the LDC disc layout (``11-1.1/wsj0/si_tr_s/<spk>/<utt>.wv1``,
    any case, any depth up to 8 folders), on MERL's merged layout
    (``wsj0/si_tr_s/<spk>/<utt>.wav``) and on flat copies.  Raises
    ``FileNotFoundError`` when ``root`` does not exist and ``ValueError``
    when none of the three subsets is found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"WSJ0 folder not found: {root} (give --wsj0 the folder holding the "
                                "LDC discs, e.g. .../csr_1, or a wav copy containing wsj0/si_tr_s)")
    subset_dirs = _find_subset_dirs(root)
    if not subset_dirs:
        raise ValueError(
            f"no {', '.join(SUBSETS)} folder found under {root} (searched {_MAX_DISCOVERY_DEPTH} levels). "
            "--wsj0 must point to the LDC WSJ0 corpus (disc folders such as 11-1.1/wsj0/si_tr_s) "
            "or to a converted copy containing wsj0/si_tr_s, wsj0/si_dt_05 and wsj0/si_et_05"
        )
    idx = Wsj0Index(root=root, subset_dirs=subset_dirs)
    for subset, dirs in subset_dirs.items():
        for sd in dirs:
            # components between root and the subset folder (e.g. a "wsj0_wv2" copy)
            try:
                above = [c.lower() for c in sd.relative_to(root).parts[:-1]]
            except ValueError:
                above = []
            tree_secondary = any(_WV2_TOKEN.search(c) for c in above)
            for dirpath, dirnames, filenames in os.walk(sd, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel_dirs = [c.lower() for c in Path(dirpath).relative_to(sd).parts]
                dir_secondary = tree_secondary or any(_WV2_TOKEN.search(c) for c in rel_dirs)
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    p = Path(dirpath) / fn
                    if p.suffix.lower() not in _AUDIO_SUFFIXES:
                        continue
                    utt, secondary = _utt_and_flags(fn)
                    key = (subset, utt)
                    if secondary or dir_secondary:
                        idx.secondary.setdefault(key, p)
                        continue
                    if p.suffix.lower() in _SPHERE_SUFFIXES:
                        idx.sphere.setdefault(key, p)
                    old = idx.primary.get(key)
                    if old is None:
                        idx.primary[key] = p
                    else:
                        idx.duplicates += 1
                        if _rank(p) < _rank(old):
                            idx.primary[key] = p
    return idx


def split_list_path(path: str) -> Tuple[str, str, str]:
    """``"wsj0/si_tr_s/01t/01to030v.wav"`` -> ``("si_tr_s", "01t", "01to030v")``.

    Raises ``ValueError`` when the path names none of :data:`SUBSETS`.
    """
    parts = [c for c in path.replace("\\", "/").split("/") if c]
    low = [c.lower() for c in parts]
    for i in range(len(low) - 2, -1, -1):
        if low[i] in SUBSETS:
            utt = low[-1].split(".", 1)[0]
            spk = low[i + 1] if i + 2 < len(low) else utt[:3]
            return low[i], spk, utt
    raise ValueError(f"{path!r} is not a WSJ0 {'/'.join(SUBSETS)} path")


# ---------------------------------------------------------------------------
# checking the sources a list needs
# ---------------------------------------------------------------------------
@dataclass
class ResolvedSource:
    list_path: str          # as written in the mix list
    target: str             # relative path in the materialised tree (== list path, normalised)
    path: Path              # the file found under --wsj0
    kind: str               # "wav" (link), "sphere", "shorten", "flac"
    sample_count: Optional[int] = None
    checksum: Optional[int] = None


def _check_one(list_path: str, path: Path) -> Tuple[Optional[ResolvedSource], Optional[str]]:
    """Inspect one file's header; returns (resolved, None) or (None, reason)."""
    import soundfile as sf

    target = list_path.replace("\\", "/").lstrip("/")
    kind = _sniff(path)
    if kind == "unreadable":
        return None, f"cannot open {path}"
    if kind == "sphere":
        try:
            hdr = read_sphere_header(path)
        except (SphereError, OSError) as err:
            return None, str(err)
        if hdr.secondary_microphone and path.suffix.lower() != ".wv1":
            # an LDC .wv1 is channel 1 by definition; a renamed copy is judged by its header
            return None, (f"{path} was recorded with microphone {hdr.get('microphone')!r}, not the "
                          "Sennheiser close-talking one (.wv1): secondary-microphone (.wv2) data is refused "
                          "(if it really is the channel-1 recording, name it .wv1)")
        if hdr.sample_rate != SOURCE_RATE:
            return None, f"{path}: sample rate {hdr.sample_rate} Hz, WSJ0 is {SOURCE_RATE} Hz"
        if hdr.channels != 1 or hdr.n_bytes != 2:
            return None, f"{path}: {hdr.channels} channel(s) x {hdr.n_bytes} byte(s); expected mono 16-bit"
        csum = hdr.get("sample_checksum")
        res = ResolvedSource(list_path, target, path, "shorten" if hdr.shorten else "sphere",
                             hdr.sample_count, int(csum) if isinstance(csum, int) else None)
        if not hdr.shorten:
            if not (hdr.coding == "pcm" or hdr.coding.startswith("pcm")):
                return None, f"{path}: unsupported SPHERE sample_coding {hdr.coding!r}"
            if hdr.sample_count is not None:
                need = hdr.header_size + 2 * hdr.sample_count
                size = path.stat().st_size
                if size < need:
                    return None, f"{path}: truncated ({size} bytes, header promises {need})"
        return res, None
    if kind in ("wav", "flac"):
        try:
            info = sf.info(str(path))
        except Exception as err:  # libsndfile errors
            return None, f"cannot read {path}: {err}"
        if info.samplerate != SOURCE_RATE:
            return None, f"{path}: sample rate {info.samplerate} Hz, WSJ0 is {SOURCE_RATE} Hz"
        if info.channels != 1:
            return None, f"{path}: {info.channels} channels, expected mono"
        if info.frames <= 0:
            return None, f"{path}: no samples"
        if kind == "wav" and info.subtype != "PCM_16":
            kind = "flac"  # not 16-bit PCM: decode and rewrite rather than link
        return ResolvedSource(list_path, target, path, kind, int(info.frames)), None
    return None, f"{path}: neither a wav, FLAC nor NIST SPHERE file"


def _check_against_sphere(
    list_path: str, path: Path, sphere: Optional[Path]
) -> Tuple[Optional[ResolvedSource], Optional[str]]:
    """:func:`_check_one`, and for a converted copy (wav/FLAC) whose SPHERE original is there too,
    its length against that header's ``sample_count`` (a truncated or resampled conversion is refused)."""
    res, why = _check_one(list_path, path)
    if res is None or sphere is None or res.kind not in ("wav", "flac") or sphere == path:
        return res, why
    try:
        hdr = read_sphere_header(sphere)
    except (SphereError, OSError):
        return res, None  # an unreadable original does not make the copy wrong
    if hdr.sample_count is not None and res.sample_count is not None and hdr.sample_count != res.sample_count:
        return None, (f"{path} has {res.sample_count} samples but its SPHERE original {sphere} says "
                      f"sample_count {hdr.sample_count}: a truncated or wrong conversion (convert it again "
                      "with sph2pipe, or point --wsj0 at the LDC discs)")
    return res, None


def resolve_sources(
    list_paths: Iterable[str], index: Wsj0Index, nj: int = 1
) -> Dict[str, ResolvedSource]:
    """Find and check every source a set of mix lists needs.

    Returns ``{list_path: ResolvedSource}``.  Raises :class:`SourceProblems`
    listing *every* missing, secondary-microphone-only or unreadable file.
    Only headers are read, so this is quick even for all 28,000 mixtures.
    """
    wanted = list(dict.fromkeys(list_paths))
    problems: List[Tuple[str, str]] = []
    todo: List[Tuple[str, Path, Optional[Path]]] = []
    for lp in wanted:
        try:
            subset, _, utt = split_list_path(lp)
        except ValueError as err:
            problems.append((lp, str(err)))
            continue
        p = index.primary.get((subset, utt))
        if p is None:
            sec = index.secondary.get((subset, utt))
            if sec is not None:
                problems.append((lp, f"only a secondary-microphone recording was found ({sec}); "
                                     "wsj0-2mix uses the .wv1 (Sennheiser) channel"))
            else:
                problems.append((lp, f"not found under {index.root}"))
            continue
        todo.append((lp, p, index.sphere.get((subset, utt))))
    resolved: Dict[str, ResolvedSource] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(nj, 8))) as ex:
        for (lp, _, _), (res, why) in zip(todo, ex.map(lambda t: _check_against_sphere(*t), todo)):
            if why:
                problems.append((lp, why))
            else:
                resolved[lp] = res
    if problems:
        hint = ""
        n_missing = sum(1 for _, why in problems if why.startswith("not found"))
        if n_missing > len(wanted) // 2:
            hint = (f"Most sources are missing: is --wsj0 {index.root} the right folder? "
                    f"Found: {index.describe()}.")
        raise SourceProblems(problems, hint)
    return resolved


# ---------------------------------------------------------------------------
# sph2pipe
# ---------------------------------------------------------------------------
def _install_hint(tools_dir: Optional[Path]) -> str:
    where = f" (it will be placed in {tools_dir})" if tools_dir else ""
    return (
        "sph2pipe is needed to decompress the shorten-compressed WSJ0 SPHERE (.wv1) files, and it is not "
        "on PATH. Either:\n"
        "  * install it and put it on PATH (Kaldi ships it in tools/sph2pipe_v2.5; or build LDC's "
        "sph2pipe_v2.5.tar.gz: tar xzf sph2pipe_v2.5.tar.gz && cd sph2pipe_v2.5 && cc -o sph2pipe *.c -lm),\n"
        "  * or pass --sph2pipe /path/to/sph2pipe,\n"
        f"  * or pass --sph2pipe-src /path/to/sph2pipe_v2.5.tar.gz to build it here offline{where} "
        "(needs a C compiler),\n"
        "  * or convert WSJ0 to wav yourself and pass that copy to --wsj0."
    )


def find_sph2pipe(explicit: Optional[PathLike] = None, tools_dir: Optional[PathLike] = None) -> Optional[Path]:
    """``explicit`` if given (must be executable), else ``sph2pipe`` on PATH, else a previous build
    in ``tools_dir``; ``None`` when there is none."""
    if explicit:
        p = Path(explicit).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return p.resolve()
        found = shutil.which(str(explicit))
        if found:
            return Path(found)
        raise Sph2pipeMissing(f"--sph2pipe {explicit}: not an executable file")
    found = shutil.which("sph2pipe")
    if found:
        return Path(found)
    if tools_dir:
        p = Path(tools_dir) / "sph2pipe"
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Fetch ``url`` to ``dest`` (atomically). Raises ``urllib.error.URLError``/``OSError``."""
    from local.stage_state import atomic_file

    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_file(dest) as fh:
        shutil.copyfileobj(resp, fh)


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    download(url, dest, timeout=timeout)  # the sph2pipe fetch; tests replace it to simulate being offline


def build_sph2pipe(
    tools_dir: PathLike,
    source: Optional[PathLike] = None,
    urls: Sequence[str] = SPH2PIPE_URLS,
    sha256: Optional[str] = SPH2PIPE_SHA256,
    fetch: Optional[Callable[[str, Path], None]] = None,
) -> Path:
    """Build ``sph2pipe`` into ``tools_dir`` from its C source tarball.

    ``source`` is a local ``sph2pipe_v2.5.tar.gz`` (offline); without it the
    tarball is downloaded from ``urls``.  A tarball whose SHA-256 differs from
    ``sha256`` is refused (pass ``sha256=None`` to skip the check).  Raises
    :class:`Sph2pipeMissing` with install instructions when the tarball
    cannot be had or no C compiler is found.
    """
    tools = Path(tools_dir)
    tools.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise Sph2pipeMissing("no C compiler (cc/gcc/clang) to build sph2pipe.\n" + _install_hint(tools))
    with tempfile.TemporaryDirectory(dir=tools, prefix=".build-") as tmpd:
        tmp = Path(tmpd)
        tarball = tmp / "sph2pipe.tar.gz"
        if source:
            src = Path(source).expanduser()
            if not src.is_file():
                raise Sph2pipeMissing(f"--sph2pipe-src {src}: no such file")
            shutil.copyfile(src, tarball)
        else:
            errors = []
            for url in urls:
                try:
                    (fetch or _download)(url, tarball)
                    break
                except (urllib.error.URLError, OSError, ValueError) as err:
                    errors.append(f"{url}: {getattr(err, 'reason', err)}")
            else:
                raise Sph2pipeMissing(
                    "could not download the sph2pipe source (offline?):\n  " + "\n  ".join(errors)
                    + "\n" + _install_hint(tools)
                )
        if sha256:
            digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
            if digest != sha256:
                raise Sph2pipeMissing(f"sph2pipe tarball has SHA-256 {digest}, expected {sha256}; refusing to build it")
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp / "src", filter="data")
        except (tarfile.TarError, OSError) as err:
            raise Sph2pipeMissing(f"cannot unpack the sph2pipe source: {err}") from err
        c_files = sorted((tmp / "src").rglob("*.c"))
        if not c_files:
            raise Sph2pipeMissing("the sph2pipe tarball contains no C source")
        src_dir = c_files[0].parent
        out = tmp / "sph2pipe"
        cmd = [cc, "-O2", "-w", "-o", str(out)] + [str(c) for c in sorted(src_dir.glob("*.c"))] + ["-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise Sph2pipeMissing(f"building sph2pipe failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        final = tools / "sph2pipe"
        os.replace(out, final)
        final.chmod(0o755)
    return final


# ---------------------------------------------------------------------------
# materialising the wav tree MERL's script reads
# ---------------------------------------------------------------------------
def _tmp_for(dst: Path) -> Path:
    from local.stage_state import temporary_path

    return temporary_path(dst)


def _verify_pcm(path: Path, res: ResolvedSource) -> None:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="int16", always_2d=True)
    if sr != SOURCE_RATE or data.shape[1] != 1:
        raise ValueError(f"{res.path}: converted file is {sr} Hz x {data.shape[1]} channel(s)")
    if res.sample_count is not None and data.shape[0] != res.sample_count:
        raise ValueError(f"{res.path}: converted file has {data.shape[0]} samples, header says {res.sample_count}")
    if res.checksum is not None and sphere_checksum(data[:, 0]) != res.checksum:
        raise ValueError(f"{res.path}: sample checksum mismatch after conversion "
                         f"({sphere_checksum(data[:, 0])} != header {res.checksum}): corrupt file?")


def _materialise_one(res: ResolvedSource, dst: Path, sph2pipe: Optional[Path]) -> str:
    """Create ``dst`` for one source; returns what was done ("link", "converted", "kept")."""
    from local.audio_io import read_audio, write_wav_atomic

    if dst.is_symlink():
        if os.path.realpath(dst) == os.path.realpath(res.path) and res.kind == "wav":
            return "kept"
        dst.unlink()  # a link of ours to another copy: redo
    elif dst.exists():
        # A regular file is never removed: either a conversion of ours (written atomically and
        # verified when it was made) or, with --wav-cache pointing into a wav copy, the source itself.
        return "kept"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if res.kind == "wav":
        tmp = _tmp_for(dst)
        os.symlink(os.path.abspath(res.path), tmp)
        os.replace(tmp, dst)
        return "link"
    if res.kind == "sphere":
        data, sr, _ = read_sphere(res.path)
        if res.checksum is not None and sphere_checksum(data) != res.checksum:
            raise ValueError(f"{res.path}: sample checksum {sphere_checksum(data)} != header {res.checksum}")
        write_wav_atomic(dst, data, sr)
        return "converted"
    if res.kind == "flac":
        x, sr = read_audio(res.path)
        write_wav_atomic(dst, x, sr)
        return "converted"
    if res.kind == "shorten":
        if sph2pipe is None:
            raise Sph2pipeMissing(_install_hint(None))
        tmp = _tmp_for(dst)
        try:
            proc = subprocess.run([str(sph2pipe), "-f", "wav", str(res.path), str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not tmp.is_file():
                raise ValueError(f"sph2pipe failed on {res.path}: {proc.stderr.strip()[-500:]}")
            _verify_pcm(tmp, res)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dst)
        finally:
            if tmp.exists():
                tmp.unlink()
        return "converted"
    raise ValueError(f"{res.path}: unknown source kind {res.kind!r}")


def materialise_sources(
    resolved: Dict[str, ResolvedSource],
    cache_root: PathLike,
    sph2pipe: Optional[PathLike] = None,
    nj: int = 1,
    progress: bool = True,
) -> Dict[str, int]:
    """Make ``cache_root/<list path>`` a 16-bit 16 kHz wav for every resolved source.

    Links ready wavs, converts everything else (``sph2pipe`` only for
    shorten-compressed SPHERE), skips what an earlier run finished.  Returns
    counts ``{"link": .., "converted": .., "kept": ..}``.  Conversion runs in
    ``nj`` threads (the work is in ``sph2pipe`` subprocesses and libsndfile).
    """
    from tqdm import tqdm

    cache = Path(cache_root)
    sph = Path(sph2pipe) if sph2pipe else None
    if sph is None and any(r.kind == "shorten" for r in resolved.values()):
        raise Sph2pipeMissing(_install_hint(None))
    counts = {"link": 0, "converted": 0, "kept": 0}
    items = sorted(resolved.values(), key=lambda r: r.target)

    def work(res: ResolvedSource) -> str:
        try:
            return _materialise_one(res, cache / res.target, sph)
        except Sph2pipeMissing:
            raise
        except Exception as err:
            raise RuntimeError(f"cannot prepare source {res.list_path} from {res.path}: {err}") from err

    with tqdm(total=len(items), desc="preparing WSJ0 sources", unit="file", disable=not progress,
              file=sys.stderr) as bar:
        if nj <= 1:
            for r in items:
                counts[work(r)] += 1
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=nj) as ex:
                for what in ex.map(work, items):
                    counts[what] += 1
                    bar.update(1)
    return counts
