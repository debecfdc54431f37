"""Per-process server state and the request plumbing both APIs use: authentication before admission,
body limits and deadlines, the thread pool.

A request's life: its headers are checked first; if they alone prove who is calling (authentication off,
HTTP Basic, or SigV4 over a declared `x-amz-content-sha256`) it is admitted and its body streamed in.
Otherwise its body is read under the unauthenticated budget (`max_unauthenticated_bytes`, summed over
connections, each reserving its Content-Length) and within `body_timeout`, then verified. Only an
authenticated request counts against `max_inflight`, so connections without a key cannot fill it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from faceprint.errors import FaceprintError, InternalServerError, InvalidParameterError
from faceprint.server import memory, sigv4
from faceprint.server.dispatch import Dispatcher, Identity
from faceprint.server.errors import RequestTimeoutError, ThrottlingError
from faceprint.server.settings import ServerSettings
from faceprint.server.sigv4 import SignedRequest

T = TypeVar("T")
log = logging.getLogger("faceprint.server")
HeaderCheck = Callable[[SignedRequest], "Identity | None"]
BodyCheck = Callable[[SignedRequest], Identity]


class Server:
    """Per-process state shared by the routes."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.dispatcher = Dispatcher(settings)
        self.metrics = self.dispatcher.metrics
        self.limiter = anyio.CapacityLimiter(settings.threads)
        # Verifying a signature (an HMAC, a body hash) is short work that must not queue behind face work.
        self.auth_limiter = anyio.CapacityLimiter(max(2, settings.threads))
        self.unauthenticated_bytes = 0  # only touched on the event loop
        self.trimmer = memory.Trimmer()
        memory.configure()

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the worker threads."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)

    async def verify(self, func: Callable[..., T], *args: Any) -> T:
        """Run an authentication step in its own threads."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.auth_limiter)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Count an authenticated request in flight; beyond `max_inflight`, ThrottlingException."""
        if self.metrics.inflight >= self.settings.max_inflight:
            raise ThrottlingError("Rate exceeded")
        self.metrics.inflight += 1
        try:
            yield
        finally:
            self.metrics.inflight -= 1

    @contextlib.contextmanager
    def unauthenticated(self, size: int) -> Iterator[None]:
        """Reserve `size` bytes of the unauthenticated-body budget; ThrottlingException when it is spent."""
        if self.unauthenticated_bytes + size > self.settings.max_unauthenticated_bytes:
            raise ThrottlingError("Rate exceeded: too many request bodies awaiting authentication")
        self.unauthenticated_bytes += size
        try:
            yield
        finally:
            self.unauthenticated_bytes -= size

    @contextlib.asynccontextmanager
    async def authenticated(
        self, request: Request, headers_check: HeaderCheck, body_check: BodyCheck
    ) -> AsyncIterator[tuple[SignedRequest, Identity]]:
        """The request with its body, and who sent it; admitted (in flight) while the block runs.

        `headers_check` returns the caller from the headers alone, or None if the body is needed;
        `body_check` authenticates the whole request.
        """
        head = signed_request(request, b"")
        limit = self.settings.max_body_bytes
        identity = await self.verify(headers_check, head)
        size = 0
        try:
            if identity is not None:
                with self.admitted():
                    body = await read_body(request, limit, self.settings.body_timeout)
                    size = len(body)
                    req = dataclasses.replace(head, body=body)
                    if req.header("x-amz-content-sha256") is not None:
                        await self.verify(sigv4.check_payload, req)
                    yield req, identity
                return
            with self.unauthenticated(_reservation(request, limit)):
                body = await read_body(request, limit, self.settings.body_timeout)
                size = len(body)
                req = dataclasses.replace(head, body=body)
                identity = await self.verify(body_check, req)
            with self.admitted():
                yield req, identity
        finally:
            if size and self.trimmer.released(size):
                await anyio.to_thread.run_sync(memory.trim)


def modeled(exc: Exception, request_id: str) -> FaceprintError:
    """The error to answer: a FaceprintError as it is, anything else a logged InternalServerError."""
    if isinstance(exc, FaceprintError):
        return exc
    log.error("request %s failed", request_id, exc_info=exc)
    return InternalServerError(f"Internal server error (request {request_id}): {type(exc).__name__}")


def _reservation(request: Request, limit: int) -> int:
    """Bytes a body may take: its Content-Length, or the limit when it is sent chunked."""
    declared = request.headers.get("content-length", "")
    return min(int(declared), limit) if declared.isdigit() else limit


async def read_body(request: Request, limit: int, timeout: float = math.inf) -> bytes:
    """The request body, refusing more than `limit` bytes or taking longer than `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidParameterError(f"request body of {int(declared):,} bytes exceeds {limit:,} bytes")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise InvalidParameterError(f"request body exceeds {limit:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(f"the request body did not arrive within {timeout:g} seconds") from None
    except ClientDisconnect:
        raise RequestTimeoutError("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def signed_request(request: Request, body: bytes) -> SignedRequest:
    scope = request.scope
    return SignedRequest(
        method=scope["method"],
        raw_path=scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
        client=scope["client"][0] if scope.get("client") else None,
    )
