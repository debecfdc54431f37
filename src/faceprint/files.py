"""Files written all at once or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write `path` through `write(file)`: into a temporary file beside it (mode 0600, as `mkstemp` makes
    it), flushed to disk, renamed over `path`, and the rename itself made durable. A crash leaves either
    the old file or the new one, never a part; a failed `write` leaves the old file and no temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) a folder only its owner can enter; tighten it if it exists."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` (empty) readable by its owner only, in a private folder, or tighten an existing one.

    Call it before SQLite opens a database: SQLite gives its -wal and -shm files the database's mode."""
    path = Path(path)
    private_dir(path.parent)
    # O_EXCL: never open (and close) a file that exists. Closing any descriptor of a file drops every POSIX
    # lock this process holds on it, so touching a database another connection of this process has open
    # would silently release that connection's SQLite locks (and let another process delete its -shm).
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if each.stat().st_mode & 0o777 != PRIVATE_FILE_MODE:
                each.chmod(PRIVATE_FILE_MODE)
    return path


def unwritable(folders: list[Path]) -> str | None:
    """Why one of `folders` (created if missing) or a file in it cannot be written, or None if all can.

    Checked by creating a temporary file in each folder, so a read-only mount, a full disk, a file where
    the folder belongs or missing permissions all show, whoever the user is."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryFile(dir=folder):
                pass
            for child in folder.iterdir():
                if child.is_file() and not os.access(child, os.W_OK):
                    return f"{child} is not writable"
        except OSError as exc:
            return f"{folder} is not writable ({exc.strerror or exc})"
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
