"""Atomic file writes: the index, key and model files all go through `write_atomically`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from faceprint.files import write_atomically


def test_write_replaces_the_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    assert write_atomically(path, lambda fh: fh.write(b"one")) == path
    write_atomically(path, lambda fh: fh.write(b"two"))
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "index.faiss"
    path.write_bytes(b"old")

    def fail(fh) -> None:  # type: ignore[no-untyped-def]
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]
