"""Per-process server state and the request plumbing both APIs use (body limits, thread pool)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

from faceprint.errors import InvalidParameterError
from faceprint.server.dispatch import Dispatcher
from faceprint.server.errors import ThrottlingError
from faceprint.server.settings import ServerSettings
from faceprint.server.sigv4 import SignedRequest

T = TypeVar("T")


class Server:
    """Per-process state shared by the routes."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.dispatcher = Dispatcher(settings)
        self.metrics = self.dispatcher.metrics
        self.limiter = anyio.CapacityLimiter(settings.threads)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the worker threads."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Count a request in flight; beyond `max_inflight`, ThrottlingException."""
        if self.metrics.inflight >= self.settings.max_inflight:
            raise ThrottlingError("Rate exceeded")
        self.metrics.inflight += 1
        try:
            yield
        finally:
            self.metrics.inflight -= 1


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidParameterError(f"request body of {int(declared):,} bytes exceeds {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidParameterError(f"request body exceeds {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def signed_request(request: Request, body: bytes) -> SignedRequest:
    scope = request.scope
    return SignedRequest(
        method=scope["method"],
        raw_path=scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
    )
