"""The Milvus vector backend: every node keeps its collections' vectors in one shared Milvus server.

One Milvus collection per faceprint collection and model, named `<prefix>_<collection id>_<model>` (the id is
the store's, never reused, so every node derives the same name and a re-created collection starts empty).
Nothing is kept on local disk. The store stays the source of truth: each face addition or removal is a row
of the store's change log, and a Milvus collection is that log applied up to a watermark, which is kept in
Milvus itself (the `<prefix>_meta` collection) so that every node continues from where any node stopped.

- A write is acknowledged only once its vectors are in Milvus: `written` applies the log up to the write
  before the service answers. If Milvus cannot take them, the faces just stored are taken out again and the
  caller gets `VectorIndexUnavailableError` (a modeled InternalServerError), fast (`timeout` per call).
- Deletes are applied in Milvus too; while Milvus is down they still succeed in the store (searches return
  only faces the store holds) and reach Milvus with the next catch-up.
- Searches use Strong consistency: a search on any node sees every write acknowledged before it started
  (docs/api.md gives the measured cost). Milvus' distances serve only to pick the shortlist: the service
  re-ranks it on the stored embeddings with the cohort-normalised scorer.
- Catch-up: a node that saw Milvus fail (or has not looked for `CHECK_SECONDS`) applies the log from the
  watermark before its next search; a log trimmed past the watermark means a full rebuild from the store.

`uri` may also be a milvus-lite file (one process, tests and trials): it builds FLAT only (milvus-lite
silently brute-forces IVF_PQ, so no other type is claimed there).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from faceprint.config import MilvusSettings
from faceprint.errors import InternalServerError
from faceprint.extras import require

_pymilvus = require("pymilvus", "cluster", "the Milvus backend")
DataType, MilvusClient, MilvusException = (
    _pymilvus.DataType,
    _pymilvus.MilvusClient,
    _pymilvus.MilvusException,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Index parameters, chosen on bench/cluster.py's numbers (dlib descriptors, 1M faces, the real server):
# IVF_PQ with 32 sub-quantizers of 8 bits (32 bytes a face, like the FAISS shortlist) and a quarter of the
# lists probed; HNSW for comparison. The shortlist (>= 200) is re-ranked exactly by the service.
INDEX_PARAMS: dict[str, dict[str, int]] = {
    "IVF_PQ": {"nlist": 1024, "m": 32, "nbits": 8},
    "HNSW": {"M": 16, "efConstruction": 128},
    "IVF_FLAT": {"nlist": 1024},
    "FLAT": {},
}
SEARCH_PARAMS: dict[str, dict[str, int]] = {
    "IVF_PQ": {"nprobe": 128},
    "HNSW": {"ef": 256},
    "IVF_FLAT": {"nprobe": 128},
    "FLAT": {},
}
CONSISTENCY = "Strong"
CHECK_SECONDS = 10.0  # a node looks for writes another node could not apply at least this often
TRIM_EVERY = 20_000  # log entries kept behind the watermark before trimming (a lagging node's margin)
_MAX_LIMIT = 16384  # Milvus' top-k limit
_BATCH = 5000  # rows per insert / delete request
_META_DIM = 2  # Milvus needs a vector field in every collection, the meta one included


class VectorIndexUnavailableError(InternalServerError):
    """Milvus does not answer (or failed): the request is refused rather than answered without it."""


def is_local_uri(uri: str) -> bool:
    """Whether `uri` names a milvus-lite file rather than a server (pymilvus' own rule)."""
    return urlparse(uri).scheme.lower() not in ("unix", "http", "https", "tcp", "grpc")


def collection_name(prefix: str, collection_id: int, model: str) -> str:
    """The Milvus collection of one faceprint collection and model (letters, digits and _ only)."""
    return f"{prefix}_{int(collection_id)}_{re.sub(r'[^A-Za-z0-9]', '_', model)[:64]}"


class MilvusVectors:
    """The vector indexes of every collection of a store, in one Milvus server (see the module doc).

    Speaks the `IndexCache` methods the service uses: `search`, `written`, `forget`, `flush`."""

    def __init__(self, store: Any, settings: MilvusSettings) -> None:
        self.store = store
        self.settings = settings
        self.local = is_local_uri(settings.uri)
        self.index_type = "FLAT" if self.local else settings.index_type
        self.meta = f"{settings.prefix}_meta"
        self._client: Any = None
        self._lock = threading.RLock()
        self._ready: set[str] = set()  # Milvus collections known to exist (and be loaded)
        self._checked: dict[int, float] = {}  # collection id -> monotonic time of the last catch-up
        self._dirty: set[int] = set()  # collections whose last catch-up failed
        self._trimmed: dict[int, int] = {}  # collection id -> log position this node last trimmed to

    # -- the service's calls --------------------------------------------------------------------------

    def search(
        self, collection_id: int, queries: np.ndarray, k: int, model: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        """(L2 distances ascending, vector ids) of the `k` nearest faces, -1 ids for padding."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(0, min(int(k), _MAX_LIMIT))
        dist = np.full((len(q), k), np.inf, dtype=np.float32)
        out = np.full((len(q), k), -1, dtype=np.int64)
        if k == 0 or len(q) == 0:
            return dist, out
        name = collection_name(self.settings.prefix, collection_id, model)
        due = time.monotonic() - self._checked.get(collection_id, -1e9) > CHECK_SECONDS
        if due or collection_id in self._dirty or name not in self._ready:
            self._catch_up(collection_id, model)
        if not self._exists(name):  # no face was ever added
            return dist, out
        params = {"metric_type": "L2", "params": dict(SEARCH_PARAMS[self.index_type])}
        if "ef" in params["params"]:
            params["params"]["ef"] = max(params["params"]["ef"], k)
        hits = self._call(
            "search",
            lambda c: c.search(
                name,
                data=q.tolist(),
                limit=k,
                search_params=params,
                consistency_level=CONSISTENCY,
                timeout=self.settings.timeout,
            ),
        )
        for row, found in enumerate(hits):
            n = min(len(found), k)
            out[row, :n] = [int(h["id"]) for h in found[:n]]
            dist[row, :n] = np.sqrt(np.maximum([float(h["distance"]) for h in found[:n]], 0.0))
        return dist, out

    def written(self, collection_id: int, model: str = "", undo: Callable[[], None] | None = None) -> None:
        """Apply the store's changes of a collection to Milvus before a write is acknowledged.

        When Milvus cannot take them, `undo` (which takes the just-stored faces out of the store) runs
        and VectorIndexUnavailableError is raised; without `undo` (a delete, already final in the store)
        the change is left for the next catch-up."""
        try:
            self._catch_up(collection_id, model)
        except VectorIndexUnavailableError:
            if undo is None:
                log.warning("Milvus is unavailable: collection #%s catches up later", collection_id)
                self._dirty.add(collection_id)
                return
            try:
                undo()
            finally:
                self._dirty.add(collection_id)
            raise

    def forget(self, collection_id: int) -> None:
        """Drop the Milvus collections of a deleted faceprint collection (best effort: its id is never
        reused, so a collection left behind while Milvus is down is never read again)."""
        prefix = f"{self.settings.prefix}_{int(collection_id)}_"
        with contextlib.suppress(VectorIndexUnavailableError):
            for name in self._call("list", lambda c: c.list_collections(timeout=self.settings.timeout)):
                if name.startswith(prefix):
                    self._call("drop", lambda c, n=name: c.drop_collection(n, timeout=self.settings.timeout))
                    self._ready.discard(name)
            if self._exists(self.meta):
                self._call(
                    "watermark",
                    lambda c: c.delete(
                        self.meta, filter=f'name like "{prefix}%"', timeout=self.settings.timeout
                    ),
                )
        self._checked.pop(collection_id, None)
        self._dirty.discard(collection_id)

    def flush(self) -> None:
        """Nothing to persist locally: Milvus holds the vectors and the watermark."""

    def count(self, collection_id: int, model: str = "") -> int:
        """Vectors Milvus holds for a collection (Strong consistency)."""
        name = collection_name(self.settings.prefix, collection_id, model)
        rows = self._call(
            "count",
            lambda c: c.query(
                name,
                filter="",
                output_fields=["count(*)"],
                consistency_level=CONSISTENCY,
                timeout=self.settings.timeout,
            ),
        )
        return int(rows[0]["count(*)"])

    # -- applying the log -----------------------------------------------------------------------------

    def _catch_up(self, collection_id: int, model: str) -> None:
        """Bring the Milvus collection up to the store's change log (see the module doc)."""
        name = collection_name(self.settings.prefix, collection_id, model)
        with self._lock:  # one catch-up per node at a time; other nodes' overlap is idempotent
            self._ensure_meta()
            exists = self._exists(name)
            mark = self._watermark(name) if exists else 0  # a lost collection is replayed from the start
            delta = self.store.index_delta(collection_id, mark)
            if delta is None:
                self._rebuild(collection_id, name)
            else:
                if len(delta.remove_ids) and exists:
                    ids = delta.remove_ids.tolist()
                    for s in range(0, len(ids), _BATCH):
                        part = ids[s : s + _BATCH]
                        self._call(
                            "delete",
                            lambda c, part=part: c.delete(name, ids=part, timeout=self.settings.timeout),
                        )
                if delta.add_vectors is not None:
                    if not exists:
                        self._create(name, delta.add_vectors.shape[1])
                    self._upsert(name, delta.add_ids, delta.add_vectors)
                if delta.last_seq != mark and self._exists(name):
                    self._set_watermark(name, delta.last_seq)
                if delta.last_seq - self._trimmed.get(collection_id, 0) >= 2 * TRIM_EVERY:
                    self.store.trim_log(collection_id, delta.last_seq - TRIM_EVERY)
                    self._trimmed[collection_id] = delta.last_seq - TRIM_EVERY
            self._checked[collection_id] = time.monotonic()
            self._dirty.discard(collection_id)

    def _rebuild(self, collection_id: int, name: str) -> None:
        """Re-create the Milvus collection from the store (its log no longer reaches the watermark)."""
        seq, ids, vectors = self.store.snapshot(collection_id)
        log.warning("Milvus collection %s is rebuilt from the store (%d faces)", name, len(ids))
        self._call("drop", lambda c: c.drop_collection(name, timeout=self.settings.timeout))
        self._ready.discard(name)
        if vectors is not None:
            self._create(name, vectors.shape[1])
            self._upsert(name, ids, vectors)
            self._set_watermark(name, seq)

    def _upsert(self, name: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert, not insert: a replayed or retried face is never held twice (Milvus does not enforce
        unique primary keys on insert)."""
        for s in range(0, len(ids), _BATCH):
            rows = [
                {"id": int(i), "vector": v.tolist()}
                for i, v in zip(ids[s : s + _BATCH], vectors[s : s + _BATCH], strict=True)
            ]
            self._call("upsert", lambda c, r=rows: c.upsert(name, r, timeout=self.settings.timeout))

    # -- Milvus collections ---------------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        if name in self._ready:
            return True
        found = self._call("describe", lambda c: c.has_collection(name, timeout=self.settings.timeout))
        if found:
            self._call("load", lambda c: c.load_collection(name, timeout=self.settings.timeout))
            self._ready.add(name)
        return bool(found)

    def _ensure_meta(self) -> None:
        if not self._exists(self.meta):
            self._create(self.meta, _META_DIM, meta=True)

    def _create(self, name: str, dim: int, meta: bool = False) -> None:
        """Create and load a Milvus collection (INT64 `id` or VARCHAR `name` key, FLOAT_VECTOR, L2)."""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        if meta:
            schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=255)
            schema.add_field("seq", DataType.INT64)
        else:
            schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        kind = "FLAT" if meta else self.index_type

        def create(c: Any) -> None:
            params = c.prepare_index_params()
            params.add_index(
                field_name="vector", index_type=kind, metric_type="L2", params=INDEX_PARAMS[kind]
            )
            try:
                c.create_collection(
                    name,
                    schema=schema,
                    index_params=params,
                    consistency_level=CONSISTENCY,
                    timeout=self.settings.timeout,
                )
            except MilvusException:
                if not c.has_collection(name, timeout=self.settings.timeout):
                    raise
            c.load_collection(name, timeout=self.settings.timeout)  # another node may have created it

        self._call("create", create)
        self._ready.add(name)

    def _watermark(self, name: str) -> int:
        rows = self._call(
            "watermark",
            lambda c: c.query(
                self.meta,
                filter=f'name == "{name}"',
                output_fields=["seq"],
                consistency_level=CONSISTENCY,
                timeout=self.settings.timeout,
            ),
        )
        return int(rows[0]["seq"]) if rows else 0

    def _set_watermark(self, name: str, seq: int) -> None:
        row = {"name": name, "seq": int(seq), "vector": [0.0] * _META_DIM}
        self._call("watermark", lambda c: c.upsert(self.meta, [row], timeout=self.settings.timeout))

    # -- the client -----------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run one Milvus call; any failure (down, timeout, refused) is VectorIndexUnavailableError."""
        try:
            if self._client is None:
                self._client = _connect(self.settings)
            return fn(self._client)
        except VectorIndexUnavailableError:
            raise
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors and plain ones alike
            self._ready.clear()  # a restarted server may have lost what this node knew
            raise VectorIndexUnavailableError(
                f"the vector index (Milvus) is unavailable ({what}: {_reason(exc)}); retry later"
            ) from None


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _connect(settings: MilvusSettings) -> Any:
    """One client per URI and process (a milvus-lite file starts one local server)."""
    if is_local_uri(settings.uri):
        require("milvus_lite", "cluster", "a Milvus file URI (milvus-lite)")
    with _clients_lock:
        if settings.uri not in _clients:
            _clients[settings.uri] = MilvusClient(settings.uri, timeout=settings.timeout)
        return _clients[settings.uri]


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0][:200]
