"""local.stage_state.atomic_file: the one crash-safe write of the recipe."""

import os
import stat

import pytest

from local.stage_state import TMP_MARK, atomic_file, atomic_write_bytes, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_file(target, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_a_write_replaces_the_file_creates_the_folder_and_follows_the_umask(tmp_path):
    target = tmp_path / "sub" / "b.bin"
    old = os.umask(0o022)
    try:
        atomic_write_bytes(target, b"\x00\x01")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600
    atomic_write_text(target, "ünïcode")
    assert target.read_text(encoding="utf-8") == "ünïcode" and os.listdir(target.parent) == ["b.bin"]


def test_the_temporary_is_hidden_beside_its_target_and_recognisable(tmp_path):
    target = tmp_path / "c.ckpt"
    with atomic_file(target) as fh:
        (name,) = [n for n in os.listdir(tmp_path)]
        assert name.startswith(".c.ckpt" + TMP_MARK)
        fh.write(b"x")
    assert os.listdir(tmp_path) == ["c.ckpt"]
