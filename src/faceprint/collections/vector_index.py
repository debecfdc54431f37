"""The vector index of a collection: a persisted FAISS cache of its embeddings, exact L2 results.

`FaissIndex` keeps every raw float32 vector once, in dense slots (fixed blocks that are never copied).
Up to `switch_at` (50k) vectors a query scans them all: exact, ~1 ms at 50k. Past it the index adds a
shortlist, an IVF of 4-bit product-quantized codes (FAISS `IVF{nlist},PQ{dim/2}x4fs`: 32 bytes per
128-D vector, ids = slots), whose candidates are re-ranked by exact distance to the raw vectors.

Chosen on numbers measured by `bench/search.py --compare` (LFW-like dlib descriptors, 1M faces, 2
cores): dlib's genuine pairs are ~0.43 apart and impostors ~0.82, so any IVF must probe ~1/8-1/4 of
its lists for the exact top-1 to come first in >= 99% of queries. IVF-Flat then reads 512 bytes per
scanned vector: recall@1 0.992 at p50 7 ms (1M), which cannot meet 50 ms at 10M. HNSW32 took 160 s
to build 1M, +1.56x memory, reached only 0.93 recall@1 at efSearch 256, and has no real delete. The
fast-scan shortlist reads 16x less: recall@1 0.998 at p50 1.1 ms (1M) and 0.996 at p50 12 ms (10M),
with RSS 1.2x the raw vectors (codes, ids and id map add ~9%).

Deletes take effect immediately: the vector leaves its slot (the last slot moves into the hole) and
its code leaves the shortlist before `remove` returns. The shortlist is re-trained from the raw
vectors when the size moves 4x away from the size it was trained for (no second copy is ever made).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import faiss
import numpy as np
import numpy.typing as npt

from faceprint.files import write_atomically

SWITCH_AT = 50_000  # above this many vectors: shortlist + exact re-ranking; below: exact scan of all
REGROW = 4.0  # re-train the shortlist when the size moves 4x away from the size it was trained for
RERANK = 100  # candidates re-ranked exactly per query (at least 4 * k)
MIN_SCAN = 25_000  # codes scanned per query at least (small collections need a larger share probed)
BLOCK_BITS = 18  # raw vectors live in blocks of 2**18 rows (128 MiB at 128-D)
TRAIN_PER_LIST = 64  # k-means training points per inverted list
_CHUNK = 1 << 16  # vectors per step of bulk work (bounds temporary memory)
_MAGIC, _END = b"FPVIDX2\n", b"FPVIEND\n"
FORMAT_VERSION = 2


class IndexFileError(ValueError):
    """An index file is corrupt, truncated or of an unknown format."""


@runtime_checkable
class VectorIndex(Protocol):
    """What the collection store needs from a vector index (Euclidean L2 on raw embeddings)."""

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, dim) float32 under new int64 ids (n,)."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Remove these ids (unknown ones are ignored); takes effect immediately."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float32 L2 ascending, ids (m, k) int64), -1 ids / inf distances pad."""
        ...

    def __len__(self) -> int: ...

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, fsync, rename)."""
        ...


def nlist_for(n: int) -> int:
    """Inverted lists of the shortlist for `n` vectors: the power of two nearest sqrt(n), with at
    least 39 training points per list (1M -> 1024, 10M -> 4096)."""
    nlist = 1 << round(math.log2(max(math.sqrt(n), 2.0)))
    while nlist > 2 and n < 39 * nlist:
        nlist //= 2
    return nlist


def nprobe_for(nlist: int, n: int) -> int:
    """Lists probed per query: a quarter of them, and enough for ~MIN_SCAN codes in small collections
    (measured on LFW-like data: recall@1 >= 0.99 against exact from 100k to 10M)."""
    return min(nlist, max(16, nlist // 4, math.ceil(MIN_SCAN * nlist / max(n, 1))))


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc `malloc_trim`) after bulk work; a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _RWLock:
    """Many concurrent readers (searches) or one writer; waiting writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _IdMap:
    """Vector id -> slot, as sorted arrays: O(log n) lookups, amortised O(1) appends of increasing
    ids (database row ids), O(n) out-of-order inserts; deleted keys are compacted lazily."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)
        self._vals = np.zeros(0, dtype=np.int64)
        self._used = 0  # keys[:used] is sorted; vals == -1 marks a deleted key
        self.live = 0

    @classmethod
    def build(cls, ids: np.ndarray, slots: np.ndarray) -> _IdMap:
        out = cls()
        order = np.argsort(ids, kind="stable")
        out._keys, out._vals = ids[order], slots[order].astype(np.int64)
        out._used = out.live = len(ids)
        return out

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of each id among the keys, whether it is there)."""
        keys = self._keys[: self._used]
        pos = np.searchsorted(keys, ids)
        hit = pos < self._used
        hit[hit] = keys[pos[hit]] == ids[hit]
        return pos, hit

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 when absent."""
        pos, hit = self._find(ids)
        out = np.full(len(ids), -1, dtype=np.int64)
        out[hit] = self._vals[pos[hit]]
        return out

    def set(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Point ids at slots; ids that are absent are added."""
        order = np.argsort(ids, kind="stable")
        ids, slots = ids[order], slots[order]
        pos, hit = self._find(ids)
        self.live += int(np.count_nonzero(self._vals[pos[hit]] < 0))
        self._vals[pos[hit]] = slots[hit]
        ids, slots, pos = ids[~hit], slots[~hit], pos[~hit]
        if not len(ids):
            return
        self.live += len(ids)
        if self._used == 0 or ids[0] > self._keys[self._used - 1]:
            need = self._used + len(ids)
            if need > len(self._keys):
                cap = need + need // 8 + 1024
                self._keys = np.concatenate([self._keys[: self._used], np.zeros(cap - self._used, np.int64)])
                self._vals = np.concatenate([self._vals[: self._used], np.zeros(cap - self._used, np.int64)])
            self._keys[self._used : need] = ids
            self._vals[self._used : need] = slots
            self._used = need
        else:
            self._keys = np.insert(self._keys[: self._used], pos, ids)
            self._vals = np.insert(self._vals[: self._used], pos, slots)
            self._used = len(self._keys)

    def drop(self, ids: np.ndarray) -> None:
        """Forget present ids (the caller checked)."""
        pos, _ = self._find(ids)
        self._vals[pos] = -1
        self.live -= len(ids)
        if self._used - self.live > max(1024, self.live // 4):
            keep = self._vals[: self._used] >= 0
            self._keys, self._vals = self._keys[: self._used][keep], self._vals[: self._used][keep]
            self._used = len(self._keys)


class _Vectors:
    """Raw vectors and their ids in dense slots 0..n-1. The vectors live in fixed blocks that are never
    reallocated (an allocated block costs resident memory only for the rows written)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.blocks: list[np.ndarray] = []
        self.ids = np.zeros(0, dtype=np.int64)
        self.rows = 1 << BLOCK_BITS

    def _write(self, start: int, vectors: np.ndarray) -> None:
        """Write vectors at slots start.. (blocks allocated as needed)."""
        done = 0
        while done < len(vectors):
            slot = start + done
            block, row = slot >> BLOCK_BITS, slot & (self.rows - 1)
            while block >= len(self.blocks):
                self.blocks.append(np.empty((self.rows, self.dim), dtype=np.float32))
            take = min(len(vectors) - done, self.rows - row)
            self.blocks[block][row : row + take] = vectors[done : done + take]
            done += take

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Store at the end; returns the first slot."""
        first, need = self.n, self.n + len(ids)
        if need > len(self.ids):
            cap = need + need // 8 + 1024
            self.ids = np.concatenate([self.ids[: self.n], np.zeros(cap - self.n, np.int64)])
        self._write(first, vectors)
        self.ids[first:need] = ids
        self.n = need
        return first

    def gather(self, slots: np.ndarray) -> np.ndarray:
        """Vectors of these slots (m, dim)."""
        block, row = slots >> BLOCK_BITS, slots & (self.rows - 1)
        if len(self.blocks) == 1:
            return self.blocks[0][row]
        out = np.empty((len(slots), self.dim), dtype=np.float32)
        for b in np.unique(block).tolist():
            sel = block == b
            out[sel] = self.blocks[b][row[sel]]
        return out

    def move(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Copy slots src -> dst (vectors and ids)."""
        vecs = self.gather(src)
        block, row = dst >> BLOCK_BITS, dst & (self.rows - 1)
        for b in np.unique(block).tolist():
            sel = block == b
            self.blocks[b][row[sel]] = vecs[sel]
        self.ids[dst] = self.ids[src]

    def truncate(self, n: int) -> None:
        """Keep slots 0..n-1; blocks past them are freed."""
        self.n = n
        del self.blocks[-(-n // self.rows) :]

    def views(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first slot, vectors) of each block's used rows."""
        for b, block in enumerate(self.blocks):
            start = b << BLOCK_BITS
            if start >= self.n:
                return
            yield start, block[: min(self.rows, self.n - start)]

    def chunks(self, size: int = _CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        for start, view in self.views():
            for s in range(0, len(view), size):
                yield start + s, view[s : s + size]

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if count >= self.n:
            return self.gather(np.arange(self.n))
        return self.gather(np.sort(rng.choice(self.n, count, replace=False)))


class _Shortlist:
    """Candidate generator: IVF over 4-bit PQ codes scanned with SIMD (ids = slots)."""

    def __init__(self, vectors: _Vectors) -> None:
        dim, n = vectors.dim, vectors.n
        self.nlist, self.trained_for = nlist_for(n), n
        pq = dim // 2 if dim % 2 == 0 else dim
        self.index = faiss.index_factory(dim, f"IVF{self.nlist},PQ{pq}x4fs", faiss.METRIC_L2)
        self.index.cp.niter = 10
        sample = vectors.sample(max(TRAIN_PER_LIST * self.nlist, 20_000), np.random.default_rng(n))
        self.index.train(sample)
        del sample
        for first, chunk in vectors.chunks():
            self.add(first, chunk)

    def add(self, first: int, vectors: np.ndarray) -> None:
        self.add_slots(np.arange(first, first + len(vectors), dtype=np.int64), vectors)

    def add_slots(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors), slots)

    def remove(self, slots: np.ndarray) -> None:
        self.index.remove_ids(faiss.IDSelectorBatch(slots.astype(np.int64)))

    def candidates(self, queries: np.ndarray, r: int, nprobe: int) -> np.ndarray:
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist))
        return self.index.search(queries, r, params=params)[1]


class FaissIndex:
    """`VectorIndex` on FAISS: exact scan up to `switch_at` vectors, shortlist + exact re-ranking beyond
    (built, re-trained and dropped automatically as the collection grows or shrinks); thread-safe."""

    def __init__(
        self, dim: int, switch_at: int = SWITCH_AT, nprobe: int | None = None, rerank: int = RERANK
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = int(dim)
        self.switch_at = int(switch_at)
        self.nprobe = nprobe  # None: nprobe_for(nlist)
        self.rerank = int(rerank)
        self._vectors = _Vectors(self.dim)
        self._ids = _IdMap()
        self._short: _Shortlist | None = None
        self._lock = _RWLock()

    def __len__(self) -> int:
        return self._vectors.n

    @property
    def kind(self) -> str:
        """`flat` (exact scan) or `ivfpq` (shortlist + exact re-ranking)."""
        return "flat" if self._short is None else "ivfpq"

    @property
    def nlist(self) -> int:
        return 1 if self._short is None else self._short.nlist

    def __repr__(self) -> str:
        return f"FaissIndex(dim={self.dim}, n={len(self)}, kind={self.kind}, nlist={self.nlist})"

    # -- the protocol -------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._check(ids, vectors)
        if len(ids) == 0:
            return
        with self._lock.write():
            known = self._ids.get(ids) >= 0
            if known.any():
                raise ValueError(f"ids already in the index: {ids[known][:10].tolist()}")
            first = self._vectors.append(ids, vectors)
            self._ids.set(ids, np.arange(first, first + len(ids), dtype=np.int64))
            if self._short is not None:
                for s in range(0, len(ids), _CHUNK):
                    self._short.add(first + s, vectors[s : s + _CHUNK])
            self._retune()
            if len(ids) >= _CHUNK:
                release_free_memory()  # the shortlist's grown lists leave freed buffers behind

    def remove(self, ids: np.ndarray) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(ids) == 0:
            return
        with self._lock.write():
            slots = self._ids.get(ids)
            present = slots >= 0
            if present.any():
                self._delete(ids[present], slots[present])
                self._retune()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {np.shape(queries)}")
        k = max(int(k), 0)
        dist = np.full((len(q), k), np.inf, dtype=np.float32)
        out = np.full((len(q), k), -1, dtype=np.int64)
        if k == 0 or len(q) == 0:
            return dist, out
        with self._lock.read():
            if len(self) == 0:
                return dist, out
            step = 64 if self._short is None else max(1, min(64, (1 << 16) // self._depth(k)))
            for s in range(0, len(q), step):  # bounds the gathered candidates to 32 MiB at 128-D
                part = slice(s, s + step)
                if self._short is None:
                    dist[part], out[part] = self._scan(q[part], k)
                else:
                    dist[part], out[part] = self._shortlisted(q[part], k)
        return dist, out

    def save(self, path: Path) -> None:
        def write(fh: BinaryIO) -> None:
            with self._lock.read():
                _write(fh, self)

        write_atomically(path, write)

    # -- internals ----------------------------------------------------------------------------------

    def _check(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite")
        return ids, vectors

    def _delete(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Empty these slots by moving the last live slots into them, keeping slots dense."""
        vec = self._vectors
        new_n = vec.n - len(slots)
        holes = np.sort(slots[slots < new_n])
        tail = np.arange(new_n, vec.n, dtype=np.int64)
        movers = tail[~np.isin(tail, slots)]  # as many as holes
        if self._short is not None:
            self._short.remove(np.concatenate([slots, movers]))
        if len(holes):
            moved = vec.ids[movers]
            vec.move(movers, holes)
            self._ids.set(moved, holes)
            if self._short is not None:
                self._short.add_slots(holes, vec.gather(holes))
        self._ids.drop(ids)
        vec.truncate(new_n)

    def _retune(self) -> None:
        """Build, re-train or drop the shortlist for the current size."""
        n, short = len(self), self._short
        if short is None:
            if n <= self.switch_at:
                return
        elif n <= self.switch_at // 2:
            self._short = None
            return
        elif not (n >= REGROW * short.trained_for or n * REGROW <= short.trained_for) or (
            nlist_for(n) == short.nlist
        ):
            return
        self._short = None  # free the old codes before building the new ones
        self._short = _Shortlist(self._vectors)
        release_free_memory()

    def _scan(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact: every vector (single-threaded SIMD distances, then a partial sort)."""
        vec = self._vectors
        kk = min(k, vec.n)
        sq = np.empty(vec.n, dtype=np.float32)
        dist = np.full((len(q), k), np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for i in range(len(q)):
            for start, view in vec.views():
                faiss.fvec_L2sqr_ny(
                    faiss.swig_ptr(sq[start:]), faiss.swig_ptr(q[i]), faiss.swig_ptr(view), vec.dim, len(view)
                )
            top = np.argpartition(sq, kk - 1)[:kk] if kk < vec.n else np.arange(vec.n)
            top = top[np.argsort(sq[top], kind="stable")]
            dist[i, :kk] = np.sqrt(np.maximum(sq[top], 0.0))
            ids[i, :kk] = vec.ids[top]
        return dist, ids

    def _depth(self, k: int) -> int:
        """Candidates to re-rank for a top-k query."""
        return min(max(self.rerank, 4 * k), self._vectors.n)

    def _shortlisted(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Shortlist candidates, re-ranked by exact distance to the raw vectors."""
        short, vec = self._short, self._vectors
        assert short is not None
        r = self._depth(k)
        nprobe = self.nprobe or nprobe_for(short.nlist, vec.n)
        slots = short.candidates(q, r, nprobe)
        want = min(k, vec.n)
        short_rows = np.flatnonzero((slots >= 0).sum(axis=1) < want)
        while len(short_rows) and nprobe < short.nlist:  # too few candidates: probe more lists
            nprobe = min(short.nlist, nprobe * 4)
            slots[short_rows] = short.candidates(q[short_rows], r, nprobe)
            short_rows = short_rows[(slots[short_rows] >= 0).sum(axis=1) < want]
        valid = slots >= 0
        cand = vec.gather(np.where(valid, slots, 0).reshape(-1)).reshape(len(q), r, self.dim)
        exact = np.sqrt(((cand - q[:, None, :]) ** 2).sum(axis=2, dtype=np.float32))
        exact[~valid] = np.inf
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(exact, order, 1)
        ids = np.where(
            np.isfinite(dist), vec.ids[np.take_along_axis(np.where(valid, slots, 0), order, 1)], -1
        )
        if dist.shape[1] < k:  # fewer vectors than k
            pad = k - dist.shape[1]
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return dist.astype(np.float32), ids.astype(np.int64)


# -- persistence ----------------------------------------------------------------------------------------


class _CrcWriter:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.crc = fh, 0

    def write(self, data: bytes | np.ndarray) -> None:
        buf = memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) else data
        self.crc = zlib.crc32(buf, self.crc)
        self.fh.write(buf)


class _CrcReader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.crc = fh, 0

    def read_into(self, out: np.ndarray) -> np.ndarray:
        view = memoryview(out).cast("B")
        if self.fh.readinto(view) != len(view):
            raise IndexFileError("index file is truncated")
        self.crc = zlib.crc32(view, self.crc)
        return out

    def read(self, dtype: npt.DTypeLike, shape: tuple[int, ...]) -> np.ndarray:
        return self.read_into(np.empty(shape, dtype=dtype))


def _write(fh: BinaryIO, index: FaissIndex) -> None:
    """Format: magic | u32 header length | JSON header | ids (n int64) | vectors (n x dim float32) |
    u64 length + FAISS shortlist bytes (0 when flat) | end marker | CRC-32 of all between magic and end."""
    vec = index._vectors
    header = {
        "version": FORMAT_VERSION,
        "dim": index.dim,
        "n": vec.n,
        "switch_at": index.switch_at,
        "nprobe": index.nprobe,
        "rerank": index.rerank,
        "trained_for": index._short.trained_for if index._short else 0,
    }
    fh.write(_MAGIC)
    out = _CrcWriter(fh)
    raw = json.dumps(header).encode()
    out.write(np.asarray([len(raw)], dtype="<u4"))
    out.write(raw)
    out.write(vec.ids[: vec.n])
    for _, view in vec.views():
        out.write(view)
    blob = faiss.serialize_index(index._short.index) if index._short else np.zeros(0, np.uint8)
    out.write(np.asarray([len(blob)], dtype="<u8"))
    out.write(blob)
    fh.write(_END)
    fh.write(np.asarray([out.crc], dtype="<u4").tobytes())


def _read(fh: BinaryIO) -> FaissIndex:
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise IndexFileError("not a faceprint vector index file (bad magic or version)")
    inp = _CrcReader(fh)
    (hlen,) = inp.read(np.dtype("<u4"), (1,))
    if hlen > 1 << 16:
        raise IndexFileError("index file header is corrupt")
    try:
        header = json.loads(inp.read(np.uint8, (int(hlen),)).tobytes())
        dim, n = int(header["dim"]), int(header["n"])
        index = FaissIndex(dim, int(header["switch_at"]), header["nprobe"], int(header["rerank"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFileError(f"index file header is corrupt: {exc}") from None
    if header.get("version") != FORMAT_VERSION or not 0 <= n < 1 << 40:
        raise IndexFileError(f"unsupported or corrupt index header {header}")
    vec = index._vectors
    ids = inp.read(np.int64, (n,))
    for start in range(0, n, vec.rows):
        vec.blocks.append(np.empty((vec.rows, dim), dtype=np.float32))
        inp.read_into(vec.blocks[-1][: min(vec.rows, n - start)])
    (blen,) = inp.read(np.dtype("<u8"), (1,))
    if blen > 1 << 40:
        raise IndexFileError("index file shortlist length is corrupt")
    blob = inp.read(np.uint8, (int(blen),))
    trailer = fh.read(len(_END) + 5)
    if len(trailer) != len(_END) + 4 or not trailer.startswith(_END):
        raise IndexFileError("index file is corrupt (bad end marker or trailing bytes)")
    if int(np.frombuffer(trailer[len(_END) :], dtype="<u4")[0]) != inp.crc:
        raise IndexFileError("index file checksum mismatch")
    vec.ids, vec.n = ids, n
    index._ids = _IdMap.build(ids, np.arange(n, dtype=np.int64))
    if len(np.unique(ids)) != n:
        raise IndexFileError("index file holds duplicate ids")
    if blen:
        short = _Shortlist.__new__(_Shortlist)
        short.index = faiss.deserialize_index(blob)  # already the concrete type (owns the C++ object)
        short.nlist, short.trained_for = int(short.index.nlist), int(header["trained_for"])
        if short.index.ntotal != n or short.index.d != dim or not isinstance(short.index, faiss.IndexIVF):
            raise IndexFileError("index file shortlist does not match its vectors")
        index._short = short
    return index


def load_index(path: Path) -> VectorIndex:
    """Load a saved FAISS index. Raises FileNotFoundError if `path` is missing and IndexFileError if it is
    corrupt (including the pointer files older releases wrote for Milvus, which is no longer cached here)."""
    with open(path, "rb", buffering=1 << 20) as fh:
        return _read(fh)


def open_index(path: Path | None, dim: int) -> VectorIndex:
    """The index saved at `path` if that file exists (its dim must match), else a new empty one."""
    if path is not None and Path(path).is_file():
        index = load_index(Path(path))
        if index.dim != dim:
            raise IndexFileError(f"{path} holds {index.dim}-D vectors, expected {dim}")
        return index
    return FaissIndex(dim)
