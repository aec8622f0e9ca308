"""wsj0-mix style mixture creation (MERL ``create_wav_2speakers.m`` / ``_3speakers.m``).

Procedure, per line ``path1 snr1 path2 snr2 [path3 snr3]`` of a mix list:

1. read every source at its original rate ``fs`` (16 kHz for WSJ0);
2. resample to 8 kHz with ``scipy.signal.resample_poly`` (default Kaiser
   window; matches MATLAB ``resample`` to within one 16-bit step);
3. measure each 8 kHz source with ITU-T P.56 method B
   (:func:`local.p56.activlev`, voicebox ``activlev(s, 8000, 'n')``) giving
   its active level ``lev_k``; ``p56_pad_zeros=True`` appends 0.35 s of zeros
   before measuring, as voicebox rev. 9407 does (the ``activlev.m`` that MERL
   ships inside ``create-speaker-mixtures.zip``); the default is rev. 2516;
4. per-source gain ``g_k = 10**(snr_k/20) / sqrt(lev_k)``;
5. ``min`` mode truncates every scaled source to the shortest, ``max``
   zero-pads to the longest;
6. mixture = sum of the sources;
7. mixture and sources are multiplied together by
   ``0.9 / max(|mixture|, |s_1|, ..., |s_n|)`` (so the peak is exactly 0.9;
   MERL never clips and, unlike pywsj0-mix, also scales *up*);
8. files are written as 16-bit PCM (``int16(round(2^15 x))``).

What the reference does for the 16 kHz version (checked against MERL's
``create_wav_2speakers.m``): after finishing the 8 kHz mixture it computes
``s1_16k = weight_1 * s1 / sqrt(lev1)`` on the *original* 16 kHz signal ``s1``
(no resampling), with ``lev1`` the level measured on the 8 kHz resampled
signal, then applies its own min/max length handling on the 16 kHz lengths
and its own ``0.9 / max_amp_16k`` peak scaling.  So the P.56 level is always
measured at 8 kHz, and both versions share the per-source gains ``g_k`` but
not the final peak factor.  :func:`mix_sources` generalises this: for every
target rate the sources are the original signals if the rate equals ``fs``,
otherwise ``resample_poly(s, rate, fs)``; the gains always come from the
8 kHz measurement (:data:`P56_RATE`).

Mixture names: ``<utt1>_<snr1>_<utt2>_<snr2>[...]`` where ``utt`` is the
source basename without extension and ``snr`` is the SNR string *exactly as
written in the list*.  MATLAB builds it with ``num2str`` of the parsed
number (``%g`` with ``max(1, floor(log10|x|)+1) + 4`` significant digits, i.e.
5 for |snr| < 10, trailing zeros dropped), so a list entry written with more
digits or trailing zeros (``1.2340``) would be named differently by MATLAB
(``1.234``); the published wsj0-2mix/3mix lists are written in that same
short form, so the two agree there.

Output layout: ``out_root/wav{8k,16k}/{min,max}/{split}/{mix,s1,s2[,s3]}/<name>.wav``
plus asteroid's ``mix.json``/``s1.json``/... in each split folder
(:mod:`local.metadata`).
"""
from __future__ import annotations

import math
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.signal import resample_poly

from .audio_io import read_audio, write_wav_atomic
from .metadata import rate_dir_name, split_path, write_split_metadata
from .p56 import active_level

__all__ = [
    "P56_RATE",
    "PEAK",
    "MODES",
    "MixEntry",
    "parse_mix_list",
    "write_mix_list",
    "format_mix_line",
    "mix_sources",
    "create_mixtures",
    "output_paths",
]

#: Rate at which the P.56 active level is measured (as in MERL's scripts).
P56_RATE = 8000
#: Peak absolute value of mixture and sources after the final scaling.
PEAK = 0.9
#: Supported length modes.
MODES = ("min", "max")

PathLike = Union[str, "os.PathLike[str]"]
_FLOAT_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


# ---------------------------------------------------------------------------
# Mix lists
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MixEntry:
    """One line of a mix list: ``((path1, snr1), (path2, snr2), ...)``.

    Paths are kept as written (relative to the source root, or absolute);
    SNRs are kept as the original strings so that names are reproducible.
    """

    sources: Tuple[Tuple[str, str], ...]

    def __post_init__(self) -> None:
        srcs = tuple((str(p), str(s)) for p, s in self.sources)
        if not srcs:
            raise ValueError("MixEntry needs at least one source")
        for p, s in srcs:
            if not p or any(c.isspace() for c in p):
                raise ValueError(f"MixEntry: invalid source path {p!r}")
            if not _FLOAT_RE.match(s):
                raise ValueError(f"MixEntry: SNR {s!r} of {p!r} is not a number")
        object.__setattr__(self, "sources", srcs)

    @property
    def n_src(self) -> int:
        return len(self.sources)

    @property
    def paths(self) -> Tuple[str, ...]:
        return tuple(p for p, _ in self.sources)

    @property
    def snrs(self) -> Tuple[float, ...]:
        return tuple(float(s) for _, s in self.sources)

    @property
    def name(self) -> str:
        """Mixture base name (no ``.wav``): ``utt1_snr1_utt2_snr2...``."""
        parts = []
        for p, s in self.sources:
            base = p.replace("\\", "/").rsplit("/", 1)[-1]
            parts += [os.path.splitext(base)[0], s]
        return "_".join(parts)


def format_mix_line(entry: MixEntry) -> str:
    return " ".join(f"{p} {s}" for p, s in entry.sources)


def parse_mix_list(path: PathLike, n_src: int = 2, name: Optional[str] = None) -> List[MixEntry]:
    """Read a mix list (``path1 snr1 path2 snr2 ...`` per line, whitespace separated).

    Blank lines are ignored.  A malformed line raises
    ``ValueError("<name>:<lineno>: ...")``; ``name`` (default ``path``) is how
    the list is named in errors, e.g. the user's file that ``path`` is a copy of.
    """
    where = path if name is None else name
    if n_src < 1:
        raise ValueError(f"n_src must be >= 1, got {n_src}")
    entries: List[MixEntry] = []
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 * n_src:
                raise ValueError(
                    f"{where}:{lineno}: expected {2 * n_src} fields (path snr) x {n_src}, "
                    f"found {len(fields)}: {line.strip()!r}"
                )
            pairs = []
            for k in range(n_src):
                p, s = fields[2 * k], fields[2 * k + 1]
                if not _FLOAT_RE.match(s) or not math.isfinite(float(s)):
                    raise ValueError(f"{where}:{lineno}: SNR of source {k + 1} is not a number: {s!r}")
                pairs.append((p, s))
            entries.append(MixEntry(tuple(pairs)))
    return entries


def write_mix_list(path: PathLike, entries: Iterable[MixEntry]) -> None:
    """Write ``entries`` in the mix-list format (atomically: temp file + ``os.replace``)."""
    from .stage_state import atomic_write_text

    atomic_write_text(path, "".join(format_mix_line(e) + "\n" for e in entries))


# ---------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------
def _resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float64)
    g = math.gcd(int(fs_in), int(fs_out))
    return resample_poly(np.asarray(x, dtype=np.float64), int(fs_out) // g, int(fs_in) // g)


def _check_inputs(sources: Sequence[np.ndarray], fs: int, snrs: Sequence[float]) -> List[np.ndarray]:
    if len(sources) == 0:
        raise ValueError("mix_sources: no sources given")
    if len(sources) != len(snrs):
        raise ValueError(f"mix_sources: {len(sources)} sources but {len(snrs)} SNRs")
    if int(fs) != fs or fs <= 0:
        raise ValueError(f"mix_sources: invalid sample rate {fs!r}")
    out = []
    for k, s in enumerate(sources):
        a = np.asarray(s, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"mix_sources: source {k + 1} must be a non-empty 1-D array, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"mix_sources: source {k + 1} contains NaN/inf")
        if not math.isfinite(float(snrs[k])):
            raise ValueError(f"mix_sources: SNR of source {k + 1} is not finite: {snrs[k]!r}")
        out.append(a)
    return out


def source_gains(
    sources: Sequence[np.ndarray], fs: int, snrs: Sequence[float], *, p56_pad_zeros: bool = False,
    names: Optional[Sequence[str]] = None,
) -> List[float]:
    """Per-source gains ``10**(snr_k/20) / sqrt(lev_k)``, ``lev_k`` = P.56 level at 8 kHz.

    ``p56_pad_zeros=True`` measures ``lev_k`` like voicebox ``activlev`` rev. 9407
    (the copy MERL ships in ``create-speaker-mixtures.zip``), which appends 0.35 s
    of zeros first; the default measures the signal as is (rev. 2516).
    ``names`` (the source files) name a silent source in the error, else its number.
    """
    srcs = _check_inputs(sources, fs, snrs)
    gains = []
    for k, (s, snr) in enumerate(zip(srcs, snrs)):
        try:
            lev, _, _ = active_level(_resample(s, int(fs), P56_RATE), P56_RATE, pad_zeros=p56_pad_zeros)
            if not lev > 0:
                raise ValueError("cannot normalise a silent (all-zero) signal: its active level is 0")
        except ValueError as err:
            what = f"source file {names[k]}" if names is not None else f"source {k + 1}"
            raise ValueError(f"mix_sources: {what}: {err}") from err
        gains.append(10.0 ** (float(snr) / 20.0) / math.sqrt(lev))
    return gains


def _combine(scaled: List[np.ndarray], mode: str) -> Tuple[np.ndarray, List[np.ndarray]]:
    if mode == "min":
        n = min(len(s) for s in scaled)
        srcs = [s[:n].copy() for s in scaled]
    elif mode == "max":
        n = max(len(s) for s in scaled)
        srcs = [np.concatenate([s, np.zeros(n - len(s))]) for s in scaled]
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    mix = np.sum(srcs, axis=0)
    peak = max(float(np.max(np.abs(mix))), *(float(np.max(np.abs(s))) for s in srcs))
    if not peak > 0:
        raise ValueError("mix_sources: mixture and sources are all zero")
    scale = PEAK / peak
    return mix * scale, [s * scale for s in srcs]


def _scaled_at_rates(
    srcs: List[np.ndarray], fs: int, gains: Sequence[float], target_rates: Iterable[int]
) -> Dict[int, List[np.ndarray]]:
    out: Dict[int, List[np.ndarray]] = {}
    for rate in target_rates:
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"mix_sources: invalid target rate {rate!r}")
        rate = int(rate)
        out[rate] = [g * _resample(s, int(fs), rate) for s, g in zip(srcs, gains)]
    return out


def mix_sources(
    sources: List[np.ndarray],
    fs: int,
    snrs: List[float],
    mode: str,
    target_rates: Sequence[int] = (8000, 16000),
    *,
    p56_pad_zeros: bool = False,
) -> Dict[int, Tuple[np.ndarray, List[np.ndarray]]]:
    """MERL's mixing procedure on in-memory signals (no I/O).

    ``sources`` are 1-D float arrays at rate ``fs``; ``snrs`` the per-source
    SNRs in dB; ``mode`` is ``"min"`` or ``"max"``.  Returns
    ``{rate: (mixture, [scaled sources])}`` for every ``rate`` in
    ``target_rates``; at each rate ``mixture == sum(sources)`` and
    ``max(|mixture|, |sources|) == 0.9``.  Gains are shared across rates (see
    the module docstring); a rate equal to ``fs`` uses the original signals.
    ``p56_pad_zeros`` selects the activlev revision (see :func:`source_gains`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    srcs = _check_inputs(sources, fs, snrs)
    gains = source_gains(srcs, fs, snrs, p56_pad_zeros=p56_pad_zeros)
    scaled = _scaled_at_rates(srcs, fs, gains, target_rates)
    return {rate: _combine(s, mode) for rate, s in scaled.items()}


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def output_paths(
    entry: MixEntry, out_root: PathLike, split: str, rate: int, mode: str
) -> List[Path]:
    """``[mix, s1, s2, ...]`` output paths of ``entry`` for one (rate, mode)."""
    d = split_path(Path(out_root), rate, mode, split)
    fname = entry.name + ".wav"
    return [d / "mix" / fname] + [d / f"s{k + 1}" / fname for k in range(entry.n_src)]


def _resolve(source_root: PathLike, p: str) -> Path:
    pp = Path(p)
    return pp if pp.is_absolute() else Path(source_root) / pp


def _mix_job(job: dict) -> str:
    """Worker: read, mix and write one mixture for every (rate, mode)."""
    signals = []
    fs = None
    for path in job["paths"]:
        x, sr = read_audio(path)
        if fs is None:
            fs = sr
        elif sr != fs:
            raise ValueError(
                f"mixture {job['name']}: sources have different sample rates "
                f"({job['paths'][0]}: {fs} Hz, {path}: {sr} Hz)"
            )
        signals.append(x)
    gains = source_gains(signals, fs, job["snrs"], p56_pad_zeros=job.get("p56_pad_zeros", False),
                         names=job["paths"])
    scaled = _scaled_at_rates(signals, fs, gains, job["rates"])
    for rate in job["rates"]:
        for mode in job["modes"]:
            mix, srcs = _combine(scaled[rate], mode)
            paths = job["outputs"][(rate, mode)]
            for out, sig in zip(paths[1:], srcs):
                write_wav_atomic(out, sig, rate)
            write_wav_atomic(paths[0], mix, rate)
    return job["name"]


def create_mixtures(
    entries: Sequence[MixEntry],
    source_root: PathLike,
    out_root: PathLike,
    split: str,
    sample_rates: Sequence[int] = (8000, 16000),
    modes: Sequence[str] = ("min",),
    nj: int = 1,
    progress: bool = True,
    p56_pad_zeros: bool = False,
) -> None:
    """Create the wav files of ``entries`` and the metadata JSON of the split.

    Writes ``out_root/wav{8k,16k}/{min,max}/{split}/{mix,s1,...}/<name>.wav``
    then ``mix.json``/``s*.json`` in every ``(rate, mode, split)`` folder.
    Checks first that every source exists (one ``FileNotFoundError`` listing
    all missing files); skips mixtures whose outputs all exist already
    (resume); runs ``nj`` worker processes (``nj=1``: in this process; the
    platform's default start method is used, i.e. ``fork`` on Linux, and the
    workers only need numpy/scipy/soundfile; ``p56_pad_zeros`` as in
    :func:`source_gains`).  A failure in one mixture
    raises ``RuntimeError`` naming it; files already written stay valid
    (every file is written atomically), so a rerun resumes.
    """
    from tqdm import tqdm  # local import: only needed here

    entries = list(entries)
    modes = tuple(dict.fromkeys(modes))
    rates = tuple(dict.fromkeys(int(r) for r in sample_rates))
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes!r}")
    if not rates or any(r <= 0 for r in rates):
        raise ValueError(f"invalid sample_rates {sample_rates!r}")
    if not split or "/" in split or split in (".", ".."):
        raise ValueError(f"invalid split name {split!r}")
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    if not entries:
        raise ValueError("create_mixtures: no mixtures given")
    n_src = entries[0].n_src
    bad = [e.name for e in entries if e.n_src != n_src]
    if bad:
        raise ValueError(f"all mixtures must have {n_src} sources; these do not: {', '.join(bad[:10])}")
    seen: Dict[str, int] = {}
    dups = []
    for e in entries:
        seen[e.name] = seen.get(e.name, 0) + 1
        if seen[e.name] == 2:
            dups.append(e.name)
    if dups:
        raise ValueError(f"duplicate mixture names (outputs would collide): {', '.join(dups)}")

    missing = []
    for e in entries:
        for p in e.paths:
            rp = _resolve(source_root, p)
            if not rp.is_file():
                missing.append(str(rp))
    if missing:
        missing = list(dict.fromkeys(missing))
        raise FileNotFoundError(
            f"{len(missing)} source file(s) missing under {source_root}:\n  " + "\n  ".join(missing)
        )

    out_root = Path(out_root)
    jobs = []
    for e in entries:
        outputs = {(r, m): output_paths(e, out_root, split, r, m) for r in rates for m in modes}
        if all(p.is_file() for ps in outputs.values() for p in ps):
            continue
        jobs.append({
            "name": e.name,
            "paths": [str(_resolve(source_root, p)) for p in e.paths],
            "snrs": list(e.snrs),
            "rates": rates,
            "modes": modes,
            "p56_pad_zeros": bool(p56_pad_zeros),
            "outputs": outputs,
        })

    desc = f"mixing {split}"
    if jobs:
        with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="mix") as bar:
            if nj == 1 or len(jobs) == 1:
                for job in jobs:
                    try:
                        _mix_job(job)
                    except Exception as err:
                        raise RuntimeError(f"failed to create mixture {job['name']}: {err}") from err
                    bar.update(1)
            else:
                with ProcessPoolExecutor(max_workers=min(nj, len(jobs))) as ex:
                    futures = {ex.submit(_mix_job, job): job["name"] for job in jobs}
                    try:
                        for fut in as_completed(futures):
                            try:
                                fut.result()
                            except Exception as err:
                                raise RuntimeError(
                                    f"failed to create mixture {futures[fut]}: {err}"
                                ) from err
                            bar.update(1)
                    except BaseException:
                        ex.shutdown(wait=True, cancel_futures=True)
                        raise

    for r in rates:
        for m in modes:
            write_split_metadata(split_path(out_root, r, m, split), n_src)
