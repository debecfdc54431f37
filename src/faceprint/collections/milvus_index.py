"""The scale-out `VectorIndex`: one Milvus collection (via pymilvus) per faceprint collection.

`uri` is a Milvus server (`http://host:19530`) or a milvus-lite file (`/path/milvus.db`, used in tests).
Milvus keeps the vectors itself, so `save()` only writes a small pointer file (magic line + JSON: uri,
collection, dim, index type) that `vector_index.load_index` recognises. Distances are recomputed exactly
from the stored raw vectors returned with each hit (quantized index types fetch 4x the candidates first).
milvus-lite builds FLAT, HNSW, HNSW_SQ, IVF_FLAT and IVF_SQ8; it silently brute-forces IVF_PQ, DISKANN
and SCANN, so those are refused here.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import numpy as np

from faceprint.collections.vector_index import IndexFileError
from faceprint.extras import require
from faceprint.files import write_atomically

_pymilvus = require("pymilvus", "cluster", "the Milvus backend")
DataType, MilvusClient = _pymilvus.DataType, _pymilvus.MilvusClient

MILVUS_MAGIC = b"FPMILVUS1\n"
INDEX_PARAMS: dict[str, dict[str, int]] = {
    "FLAT": {},
    "HNSW": {"M": 32, "efConstruction": 200},
    "HNSW_SQ": {"M": 32, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
}
_QUANTIZED = {"HNSW_SQ", "IVF_SQ8"}
_MAX_LIMIT = 16384  # Milvus' top-k limit
_BATCH = 5000  # rows per insert / delete request

_clients: dict[str, MilvusClient] = {}
_clients_lock = threading.Lock()


def is_local_uri(uri: str) -> bool:
    """Whether `uri` names a milvus-lite file rather than a server (pymilvus' own rule)."""
    return urlparse(uri).scheme.lower() not in ("unix", "http", "https", "tcp", "grpc")


def _client(uri: str) -> MilvusClient:
    """One client per URI and process (a milvus-lite file starts one local server)."""
    if is_local_uri(uri):
        require("milvus_lite", "cluster", "a Milvus file URI (milvus-lite)")
    with _clients_lock:
        if uri not in _clients:
            _clients[uri] = MilvusClient(uri)
        return _clients[uri]


class MilvusIndex:
    """`VectorIndex` backed by one Milvus collection (INT64 primary key `id`, FLOAT_VECTOR `vector`, L2)."""

    # dlib descriptors need deep searches (bench/search.py: an IVF must probe ~1/4 of its lists, faiss
    # HNSW32 reached recall@1 0.93 at efSearch 256 on 1M); not measured on Milvus itself
    search_params: ClassVar[dict[str, dict[str, int]]] = {
        "HNSW": {"ef": 512},
        "HNSW_SQ": {"ef": 512},
        "IVF_FLAT": {"nprobe": 256},
        "IVF_SQ8": {"nprobe": 256},
        "FLAT": {},
    }

    def __init__(self, dim: int, uri: str, collection: str | None = None, index_type: str = "HNSW") -> None:
        if index_type not in INDEX_PARAMS:
            raise ValueError(f"index_type must be one of {sorted(INDEX_PARAMS)} (milvus-lite builds these)")
        self.dim, self.uri, self.index_type = int(dim), str(uri), index_type
        self.collection = collection or f"faceprint_{uuid.uuid4().hex}"
        self._client = _client(self.uri)
        self._lock = threading.Lock()
        if not self._client.has_collection(self.collection):
            self._create()
        self._count = self._query_count()

    def _create(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self._client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type=self.index_type,
            metric_type="L2",
            params=INDEX_PARAMS[self.index_type],
        )
        self._client.create_collection(
            self.collection, schema=schema, index_params=params, consistency_level="Strong"
        )

    def _query_count(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (
            f"MilvusIndex(dim={self.dim}, n={self._count}, collection={self.collection!r}, {self.index_type})"
        )

    def _present(self, ids: np.ndarray) -> np.ndarray:
        found: list[int] = []
        for s in range(0, len(ids), _BATCH):
            part = ids[s : s + _BATCH].tolist()
            found += [
                int(r["id"]) for r in self._client.query(self.collection, ids=part, output_fields=["id"])
            ]
        return np.asarray(found, dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(np.unique(ids)) != len(ids) or not np.isfinite(vectors).all():
            raise ValueError("ids must be unique and vectors finite")
        if len(ids) == 0:
            return
        with self._lock:
            known = self._present(ids)
            if len(known):
                raise ValueError(f"ids already in the index: {known[:10].tolist()}")
            for s in range(0, len(ids), _BATCH):
                rows = [
                    {"id": int(i), "vector": v}
                    for i, v in zip(ids[s : s + _BATCH], vectors[s : s + _BATCH], strict=True)
                ]
                self._client.insert(self.collection, rows)
            self._count = self._query_count()

    def remove(self, ids: np.ndarray) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(ids) == 0:
            return
        with self._lock:
            for s in range(0, len(ids), _BATCH):
                self._client.delete(self.collection, ids=ids[s : s + _BATCH].tolist())
            self._count = self._query_count()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {np.shape(queries)}")
        dist = np.full((len(q), max(k, 0)), np.inf, dtype=np.float32)
        out = np.full((len(q), max(k, 0)), -1, dtype=np.int64)
        if k <= 0 or len(q) == 0 or self._count == 0:
            return dist, out
        limit = min(_MAX_LIMIT, k * (4 if self.index_type in _QUANTIZED else 1))
        params: dict[str, Any] = {"metric_type": "L2", "params": dict(self.search_params[self.index_type])}
        if "ef" in params["params"]:
            params["params"]["ef"] = max(params["params"]["ef"], limit)
        hits = self._client.search(
            self.collection, data=q.tolist(), limit=limit, output_fields=["vector"], search_params=params
        )
        for row, found in enumerate(hits):
            if not found:
                continue
            ids = np.asarray([h["id"] for h in found], dtype=np.int64)
            vecs = np.asarray([h["entity"]["vector"] for h in found], dtype=np.float32)
            exact = np.linalg.norm(vecs.astype(np.float64) - q[row].astype(np.float64), axis=1)
            order = np.argsort(exact, kind="stable")[:k]
            dist[row, : len(order)] = exact[order]
            out[row, : len(order)] = ids[order]
        return dist, out

    def save(self, path: Path) -> None:
        """Flush Milvus, then atomically write the pointer file."""
        self._client.flush(self.collection)
        meta = {
            "uri": self.uri,
            "collection": self.collection,
            "dim": self.dim,
            "index_type": self.index_type,
        }
        write_atomically(path, lambda fh: fh.write(MILVUS_MAGIC + json.dumps(meta).encode() + b"\n"))

    def drop(self) -> None:
        """Delete the Milvus collection (when its faceprint collection is deleted)."""
        self._client.drop_collection(self.collection)
        self._count = 0

    @classmethod
    def from_pointer(cls, data: bytes) -> MilvusIndex:
        """Reopen the collection a pointer file names; IndexFileError if the file or collection is bad."""
        if not data.startswith(MILVUS_MAGIC):
            raise IndexFileError("not a Milvus pointer file")
        try:
            meta = json.loads(data[len(MILVUS_MAGIC) :])
            dim, uri, name, kind = (
                int(meta["dim"]),
                str(meta["uri"]),
                str(meta["collection"]),
                meta["index_type"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFileError(f"corrupt Milvus pointer file: {exc}") from None
        if not _client(uri).has_collection(name):
            raise IndexFileError(f"Milvus collection {name} is missing at {uri}")
        return cls(dim, uri, collection=name, index_type=kind)
