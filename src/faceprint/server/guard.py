"""The cross-origin guard: a browser on another site cannot make the server change anything.

A state-changing request (any method but GET, HEAD, OPTIONS), on any path, is refused with HTTP 403 and
AccessDeniedException when its `Origin` is present and is neither the server's own origin
(scheme://host[:port] of the request) nor one of `FACEPRINT_ALLOWED_ORIGINS`, or when `Sec-Fetch-Site`
says `cross-site` or `same-site`. No CORS headers are ever sent, so cross-origin reads stay closed too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSED_SITES = frozenset({"cross-site", "same-site"})
_MESSAGE = "Cross-origin request refused: state-changing requests must come from the server's own origin"


class CrossOriginGuard:
    """Pure ASGI middleware (it runs before any body is read)."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o.strip().rstrip("/").lower() for o in allowed_origins if o.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or not self._refused(scope):
            await self.app(scope, receive, send)
            return
        await _deny(scope, send)

    def _refused(self, scope: Scope) -> bool:
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get(b"sec-fetch-site", "").strip().lower() in REFUSED_SITES:
            return True
        origin = headers.get(b"origin")
        if origin is None:
            return False
        origin = origin.strip().rstrip("/").lower()
        own = f"{scope.get('scheme', 'http')}://{headers.get(b'host', '')}".lower()
        return origin != own and origin not in self.allowed


async def _deny(scope: Scope, send: Send) -> None:
    request_id = str(uuid.uuid4())
    if scope["path"] == "/":  # the Rekognition endpoint: AWS JSON 1.1 error
        body = {"__type": "AccessDeniedException", "Message": _MESSAGE}
        headers = [
            (b"content-type", b"application/x-amz-json-1.1"),
            (b"x-amzn-requestid", request_id.encode()),
            (b"x-amzn-errortype", b"AccessDeniedException"),
        ]
    else:  # the REST API's error shape
        body = {"error": {"code": "AccessDeniedException", "message": _MESSAGE}, "request_id": request_id}
        headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]
    data = json.dumps(body).encode()
    headers += [(b"content-length", str(len(data)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": data})
