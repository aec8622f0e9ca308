"""Stage bookkeeping: 'done' markers that know which inputs they were made from.

A stage writes its marker only after all of its outputs are in place. The
marker records size and modification time of the stage's input files, so a
stage is skipped only when it finished *and* its inputs have not changed
since (re-training invalidates the evaluation, for example).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import IO, Iterable, Iterator


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


#: Temporary files of :func:`atomic_file` are ``.<name>.tmp-<pid>-<random>`` beside their target,
#: so that a killed write's leftover is recognisable (``local.callbacks.remove_stale_temporaries``).
TMP_MARK = ".tmp-"


def temporary_path(path: str | Path) -> Path:
    """A fresh hidden temporary name in ``path``'s folder (``os.replace`` is atomic only within one file system)."""
    path = Path(path)
    return path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file to write ``path`` through: readers see the old file or the whole new one, never a part.

    The one implementation of a crash-safe write in the recipe (text, audio, checkpoints, lists,
    downloads). The folder is created; the temporary file (:func:`temporary_path`) gets the
    umask's mode (``mkstemp`` would force 0600 on the final file), is flushed and fsync'ed before
    the rename, and is removed if anything fails; the folder is fsync'ed after the rename, where
    the platform allows, so that the rename survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)