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


def mark_done(marker: str | Path, inputs: Iterable[str | Path] = (), **info) -> None:
    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"inputs": _fingerprint(inputs), **info}, indent=2))
    os.replace(tmp, marker)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
