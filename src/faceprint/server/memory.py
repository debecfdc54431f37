"""Give freed request memory back to the operating system (glibc only; a no-op elsewhere).

glibc raises its mmap threshold after a large block is freed (up to 32 MiB), so later 5-25 MB request
bodies and decoded images come from the heap, and the heap keeps them after they are freed: a server that
once held 1 GB of bodies stays 1 GB. `configure` pins the threshold, so large blocks are mapped and
unmapped on free; `Trimmer` calls `malloc_trim` after enough large blocks were let go, for the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger("faceprint.server")
M_MMAP_THRESHOLD = -3  # from <malloc.h>
MMAP_THRESHOLD_BYTES = 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has both; musl and macOS do not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def configure() -> None:
    """Serve blocks of `MMAP_THRESHOLD_BYTES` or more from mmap, so freeing them returns them at once."""
    if _LIBC is not None and not _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.warning("mallopt(M_MMAP_THRESHOLD) failed; freed request memory may stay resident")


def trim() -> None:
    """Return free heap pages to the operating system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class Trimmer:
    """Counts bytes of finished requests; trims once `every` bytes have been released since the last trim."""

    def __init__(self, every: int = 8 * 1024 * 1024) -> None:
        self.every = every
        self._released = 0
        self._lock = threading.Lock()

    def released(self, size: int) -> bool:
        """Note `size` bytes let go; True when it is time to `trim` (run it off the event loop)."""
        with self._lock:
            self._released += size
            if self._released < self.every:
                return False
            self._released = 0
            return True
