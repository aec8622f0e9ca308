"""Stage bookkeeping: 'done' markers that know which inputs they were made from.

A stage writes its marker only after all of its outputs are in place. The
marker records size and modification time of the stage's input files, so a
stage is skipped only when it finished *and* its inputs have not changed
since (re-training invalidates the evaluation, for example).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable


def _fingerprint(inputs: Iterable[str | Path]) -> dict:
    out = {}
    for path in inputs:
        st = os.stat(path)
        out[str(Path(path).resolve())] = [st.st_size, st.st_mtime_ns]
    return out


def is_done(marker: str | Path, inputs: Iterable[str | Path] = ()) -> bool:
    marker = Path(marker)
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    try:
        return recorded.get("inputs", {}) == _fingerprint(inputs)
    except FileNotFoundError:
        return False


def same_settings(marker: str | Path, settings: dict) -> bool:
    """Whether ``marker`` was written by ``mark_done(..., settings=settings)``."""
    try:
        return json.loads(Path(marker).read_text()).get("settings") == settings
    except (OSError, json.JSONDecodeError):
        return False


def made_from(marker: str | Path, path: str | Path):
    """Whether ``marker`` recorded ``path`` as it is now: True/False, or None when the marker is
    missing or damaged (its stage never finished)."""
    try:
        recorded = json.loads(Path(marker).read_text()).get("inputs")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(recorded, dict):
        return None
    try:
        (key, now), = _fingerprint([path]).items()
    except FileNotFoundError:
        return False
    return recorded.get(key) == now


def mark_done(marker: str | Path, inputs: Iterable[str | Path] = (), **info) -> None:
    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"inputs": _fingerprint(inputs), **info}, indent=2))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the whole new one, never a part.

    The temporary file lives in the same folder (``os.replace`` is atomic only
    within one file system), is flushed to disk before the rename, and is
    removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
