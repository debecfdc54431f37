"""Indexing many images fast: a pipelined indexer, and group commits of concurrent IndexFaces calls.

`Indexer` runs IndexFaces over a stream of images (`faceprint index`): worker threads decode, detect and
cut chips of the images ahead while earlier images are embedded, chips of several images share one
embedder call of about `batch_chips` chips, and each batch of images is stored in one durable SQLite
transaction. Results come back in input order, one batch at a time and only once that batch is committed;
an image that fails gets its error in its place and never stops the others.

`GroupRunner` does the same for callers that arrive concurrently (the server's worker threads, one
IndexFaces request each): while one batch is embedded and committed, new arrivals queue, and the next of
them takes the whole queue as one batch. A lone caller runs alone, with no added wait.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from faceprint.errors import FaceprintError, InternalServerError

if TYPE_CHECKING:
    from faceprint.collections.service import Collections
    from faceprint.engine import Face

# Embedder chips per batch of images: 8 faces of 12 views. Measured by bench/ingest.py (docs in
# bench/RESULTS.md): larger batches gain under 2% and hold more images' chips in memory.
BATCH_CHIPS = 96
WORKERS_ENV = "FACEPRINT_INDEX_WORKERS"

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class PreparedIndex:
    """An IndexFaces request decoded, detected and filtered: its kept faces wait for embedding."""

    collection: str
    external_image_id: str | None
    attributes: Any  # validated DetectionAttributes
    sha256: str
    width: int
    height: int
    kept: list[Face]  # faces to store, largest first, chips cut
    unindexed: list[tuple[Face, list[str]]]  # faces not stored and why, in detection order
    model_version: str = ""  # FaceModelVersion of the collection: the model that cuts and embeds the faces


@dataclass
class IndexResult:
    """The outcome of one image: its position in the input, its request, and a response or an error."""

    position: int
    request: dict[str, Any]
    response: dict | None = None
    error: FaceprintError | None = None


def default_workers() -> int:
    """Threads that decode, detect and embed: `FACEPRINT_INDEX_WORKERS`, else the usable CPUs."""
    env = os.environ.get(WORKERS_ENV)
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _as_error(exc: BaseException) -> FaceprintError:
    if isinstance(exc, FaceprintError):
        return exc
    return InternalServerError(f"{type(exc).__name__}: {exc}")


def _split(batch: list[IndexResult], parts: int) -> list[list[IndexResult]]:
    """`batch` in up to `parts` consecutive pieces of about equal size (none when it is empty)."""
    size = -(-len(batch) // max(1, parts)) if batch else 0
    return [batch[i : i + size] for i in range(0, len(batch), size)] if size else []


class Indexer:
    """IndexFaces over many images, pipelined; see the module docstring."""

    def __init__(
        self,
        collections: Collections,
        workers: int | None = None,
        batch_chips: int = BATCH_CHIPS,
        lookahead: int | None = None,
    ) -> None:
        self.collections = collections
        self.workers = workers or default_workers()
        self.batch_chips = max(1, batch_chips)
        self.lookahead = lookahead or 4 * self.workers + 8  # images decoded ahead, at most

    def _prepare(self, request: dict[str, Any]) -> Any:
        try:
            return self.collections.prepare_index(**request)
        except Exception as exc:  # reported in this image's place; the others go on
            return _as_error(exc)

    def _embed(self, batch: list[IndexResult], prepared: list[PreparedIndex]) -> list[IndexResult]:
        try:
            self.collections.embed_prepared(prepared)
        except Exception as exc:
            error = _as_error(exc)
            for item in batch:
                if item.error is None:
                    item.error = error
        return batch

    def run(self, requests: Iterable[dict[str, Any]]) -> Iterator[list[IndexResult]]:
        """IndexFaces for each request (keyword arguments of `Collections.index_faces`); yields each batch of
        results, in input order, once it is durably stored."""
        source = enumerate(requests)
        ahead: deque[tuple[int, dict[str, Any], Future]] = deque()
        embedding: deque[tuple[Future, dict[int, PreparedIndex]]] = deque()
        batch: list[IndexResult] = []
        prepared: dict[int, PreparedIndex] = {}
        chips = 0
        passes = self.collections.engine.model.passes  # an estimate for collections of other models
        exhausted = False
        with ThreadPoolExecutor(self.workers, thread_name_prefix="faceprint-index") as pool:

            def submit_batch(last: bool = False) -> None:
                """Queue the batch for embedding; the input's last one is split across the workers, so
                that the tail of a run does not leave all but one CPU idle."""
                nonlocal batch, prepared, chips
                for part in _split(batch, self.workers if last else 1):
                    items = {r.position: prepared[r.position] for r in part if r.position in prepared}
                    embedding.append((pool.submit(self._embed, part, list(items.values())), items))
                batch, prepared, chips = [], {}, 0

            try:
                while True:
                    while not exhausted and len(ahead) < self.lookahead:
                        item = next(source, None)
                        if item is None:
                            exhausted = True
                        else:
                            ahead.append((item[0], item[1], pool.submit(self._prepare, item[1])))
                    if ahead:
                        position, request, future = ahead.popleft()
                        outcome = future.result()
                        result = IndexResult(position, request)
                        if isinstance(outcome, FaceprintError):
                            result.error = outcome
                        else:
                            prepared[position] = outcome
                            chips += len(outcome.kept) * passes
                        batch.append(result)
                        if chips >= self.batch_chips:
                            submit_batch()
                    if not ahead:  # the input is done (refilling stops only then)
                        submit_batch(last=True)
                    # store the batches whose embedding is done (all of them once the input is done)
                    while embedding and (embedding[0][0].done() or not ahead or len(embedding) > 1):
                        future, items = embedding.popleft()
                        yield self._store(future.result(), items)
                    if not ahead and not embedding:
                        return
            finally:  # stopped early (an error, or the caller closed us): drop the work queued ahead
                pool.shutdown(wait=True, cancel_futures=True)

    def _store(self, batch: list[IndexResult], prepared: dict[int, PreparedIndex]) -> list[IndexResult]:
        todo = [r for r in batch if r.error is None]
        stored = self.collections.store_prepared([prepared[r.position] for r in todo]) if todo else []
        for result, outcome in zip(todo, stored, strict=True):
            if isinstance(outcome, FaceprintError):
                result.error = outcome
            else:
                result.response = outcome
        return batch

    def index(self, requests: Iterable[dict[str, Any]]) -> Iterator[IndexResult]:
        """`run`, one result at a time."""
        for batch in self.run(requests):
            yield from batch


class _Slot(Generic[T, R]):
    __slots__ = ("done", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | BaseException | None = None
        self.done = False


class GroupRunner(Generic[T, R]):
    """Runs `run_batch` over the items of concurrent callers, several at a time (see the module docstring).

    `run_batch` maps a list of items to one result (or exception) per item; an exception it raises is
    given to every caller of that batch.
    """

    def __init__(self, run_batch: Callable[[list[T]], list[R | BaseException]], max_items: int = 16) -> None:
        self._run_batch = run_batch
        self._max_items = max(1, max_items)
        self._queue: list[_Slot[T, R]] = []
        self._busy = False
        self._cond = threading.Condition()

    def __call__(self, item: T) -> R | BaseException:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    return slot.result  # type: ignore[return-value]
                self._busy = True
                group, self._queue = self._queue[: self._max_items], self._queue[self._max_items :]
            try:
                results: list[Any] = list(self._run_batch([s.item for s in group]))
            except BaseException as exc:  # every caller of the batch gets it
                results = [exc] * len(group)
            with self._cond:
                for s, r in zip(group, results, strict=True):
                    s.result, s.done = r, True
                self._busy = False
                self._cond.notify_all()
