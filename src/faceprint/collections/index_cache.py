"""The per-process cache of vector indexes, kept in step with the `Store` through its change log.

Each face addition or removal appends a row to the store's change log (a global, never reused sequence)
and moves its collection's `last_seq`: the indexes here replay this log to catch up, and rebuild from
the store's faces when they cannot. Index files under `<home>/collections/index/` are caches only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.collections.port import Store
from faceprint.errors import ResourceNotFoundError
from faceprint.files import private_dir

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    index: object | None  # a vector_index.VectorIndex, None while the collection is empty
    seq: int  # change-log sequence the index reflects
    saved_seq: int  # sequence of the newest file this process saved or loaded
    pending: int = 0  # changes applied since then


class IndexCache:
    """Vector indexes of collections, kept in step with the store through the change log.

    Before each search the index replays the log entries after its sequence number (adds and removes),
    and falls back to the newest persisted file (`<home>/index/c<collection>-<seq>.index`) or a full
    rebuild from the `faces` table when it cannot. Index files are caches: a crash can leave an old or
    half-written one, never a wrong answer, because callers keep only hits whose rows the store still holds.
    """

    def __init__(
        self, store: Store, folder: Path, persist_every: int = 2000, trim_every: int = 20000
    ) -> None:
        self.store = store
        self.folder = Path(folder)
        self.persist_every = persist_every
        self.trim_every = trim_every
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.RLock()
        self._save_failed = False  # logged once

    def search(
        self, collection_id: int, queries: np.ndarray, k: int, model: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """(L2 distances ascending, vector ids) of the `k` nearest faces, -1 ids for padding (`model`
        names the Milvus backend's collection; one FAISS index serves a collection here)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        index = self.sync(collection_id).index  # the index itself is safe for parallel searches
        if index is None or len(index) == 0 or k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return index.search(queries, min(int(k), len(index)))

    def sync(self, collection_id: int) -> _Entry:
        """Bring this collection's index up to date with the store (replay, reload or rebuild)."""
        with self._lock:
            entry = self._entries.get(collection_id)
            if entry is not None and not self._catch_up(collection_id, entry):
                entry = None
            if entry is None:
                entry = self._load_newest(collection_id)
                if entry is not None and not self._catch_up(collection_id, entry):
                    entry = None
            if entry is None:
                entry = self._rebuild(collection_id)
            self._entries[collection_id] = entry
            if entry.pending >= self.persist_every:
                self._persist(collection_id, entry)
            return entry

    def written(self, collection_id: int, model: str = "", undo: Callable[[], None] | None = None) -> None:
        """Nothing to do before a write is acknowledged: this cache replays the log at the next search."""

    def flush(self) -> None:
        """Persist every index that has changes not yet on disk."""
        with self._lock:
            for cid, entry in list(self._entries.items()):
                if entry.seq != entry.saved_seq:
                    self._persist(cid, entry)

    def _persist(self, collection_id: int, entry: _Entry) -> None:
        """Save an index file; one that cannot be written (a read-only or broken folder, a directory where
        the file belongs) leaves the in-memory index, built from SQLite, serving. Logged once."""
        try:
            self._save(collection_id, entry)
        except OSError as exc:
            entry.pending = 0  # retried after another `persist_every` changes, not on every search
            if not self._save_failed:
                self._save_failed = True
                log.warning(
                    "vector index cache %s cannot be written (%s); searching from the in-memory index "
                    "rebuilt from the database instead",
                    self.folder,
                    exc,
                )

    def forget(self, collection_id: int) -> None:
        """Drop a deleted collection's index from memory and disk (and from Milvus, for that backend)."""
        with self._lock:
            entry = self._entries.pop(collection_id, None)
            indexes = [] if entry is None or entry.index is None else [entry.index]
            for path, _seq in self._files(collection_id):
                # best effort: a cache file that is already gone is fine
                with contextlib.suppress(Exception), path.open("rb") as fh:
                    if fh.read(8) == b"FPMILVUS":
                        from faceprint.collections.vector_index import load_index

                        indexes.append(load_index(path))
                with contextlib.suppress(OSError):  # e.g. a directory where the file belongs
                    path.unlink(missing_ok=True)
            for index in indexes:
                if hasattr(index, "drop"):
                    with contextlib.suppress(Exception):
                        index.drop()

    # -- internals ------------------------------------------------------------------------------------

    def _files(self, collection_id: int) -> list[tuple[Path, int]]:
        out = []
        try:
            found = list(self.folder.glob(f"c{collection_id}-*.index"))
        except OSError:  # an unreadable folder: no cache files
            found = []
        for path in found:
            seq = path.name[len(f"c{collection_id}-") : -len(".index")]
            if seq.isdigit():
                out.append((path, int(seq)))
        return sorted(out, key=lambda p: p[1])

    def _load_newest(self, collection_id: int) -> _Entry | None:
        from faceprint.collections.vector_index import load_index

        for path, seq in reversed(self._files(collection_id)):
            try:
                index = load_index(path)
            except Exception:  # a corrupt or vanished cache file: try the next, or rebuild
                continue
            return _Entry(index=index, seq=seq, saved_seq=seq)
        return None

    def _catch_up(self, collection_id: int, entry: _Entry) -> bool:
        """Apply the log to `entry`; False when it cannot be made exact (the caller rebuilds)."""
        delta = self.store.index_delta(collection_id, entry.seq)
        if delta is None:
            return False
        if len(delta.remove_ids) and entry.index is not None:
            entry.index.remove(delta.remove_ids)
        if delta.add_vectors is not None:
            if entry.index is None:
                entry.index = self._new_index(delta.add_vectors.shape[1])
            if entry.index.dim != delta.add_vectors.shape[1]:
                return False
            entry.index.remove(delta.add_ids)  # idempotent replay: never hold an id twice
            entry.index.add(delta.add_ids, delta.add_vectors)
        entry.pending += len(delta.add_ids) + len(delta.remove_ids)
        entry.seq = delta.last_seq
        size = 0 if entry.index is None else len(entry.index)
        return size == delta.face_count

    def _rebuild(self, collection_id: int) -> _Entry:
        seq, ids, vectors = self.store.snapshot(collection_id)
        entry = _Entry(index=None, seq=seq, saved_seq=-1)
        if vectors is not None:
            entry.index = self._new_index(vectors.shape[1])
            entry.index.add(ids, vectors)
            entry.pending = self.persist_every  # a rebuild is worth keeping
        return entry

    @staticmethod
    def _new_index(dim: int) -> object:
        from faceprint.collections.vector_index import open_index

        return open_index(None, int(dim))

    def _save(self, collection_id: int, entry: _Entry) -> None:
        if entry.index is None:
            return
        private_dir(self.folder)
        entry.index.save(self.folder / f"c{collection_id}-{entry.seq}.index")
        entry.saved_seq, entry.pending = entry.seq, 0
        for path, seq in self._files(collection_id):
            if seq < entry.seq:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        try:
            coll_floor = self._floor(collection_id)
        except ResourceNotFoundError:
            return
        if entry.seq - coll_floor >= self.trim_every:
            self.store.trim_log(collection_id, entry.seq)

    def _floor(self, collection_id: int) -> int:
        return self.store.log_floor(collection_id)
