"""The Starlette application: the Rekognition endpoint (`POST /`), the REST API, `/healthz`, `/metrics`.

`create_app` is a uvicorn factory (`uvicorn faceprint.server.app:create_app --factory`); settings come
from the environment so that every worker process builds the same app. Request processing (SigV4, JSON,
image decoding, the face work, the audit append) runs in a bounded thread pool, never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from faceprint.errors import FaceprintError
from faceprint.server import kinesis, rest, rest_console, wire
from faceprint.server import metrics as metrics_mod
from faceprint.server.dispatch import Identity
from faceprint.server.errors import RequestTimeoutError
from faceprint.server.guard import CrossOriginGuard
from faceprint.server.handlers import REGISTRY
from faceprint.server.runtime import Server, modeled
from faceprint.server.settings import ServerSettings
from faceprint.server.sigv4 import SignedRequest

log = logging.getLogger("faceprint.server")

# The web console (GET /, its script and style sheet): plain files, no build step, no external assets.
WEB = resources.files("faceprint") / "web"
WEB_PAGE = (WEB / "index.html").read_text(encoding="utf-8")
WEB_ASSETS = {
    "console.js": ("text/javascript", (WEB / "console.js").read_text(encoding="utf-8")),
    "console.css": ("text/css", (WEB / "console.css").read_text(encoding="utf-8")),
}
# The console loads nothing from elsewhere and is never framed.
CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
        "frame-ancestors 'none'"  # inline styles: the audit report, opened from the console as a blob
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _metric_name(target: str | None) -> str:
    if target and target.startswith(kinesis.TARGET_PREFIX):
        name = target[len(kinesis.TARGET_PREFIX) :]
        return f"kinesis:{name}" if name in kinesis.REQUESTS else "Unknown"
    try:
        name = wire.operation_name(target)
    except FaceprintError:
        return "Unknown"
    return name if name in REGISTRY else "Unknown"


def create_app(settings: ServerSettings | None = None) -> Starlette:
    """Build the app for one server process."""
    server = Server(settings or ServerSettings.from_env())

    def process(req: SignedRequest, identity: Identity, request_id: str) -> bytes:
        target = req.header("x-amz-target") or ""
        try:
            if target.startswith(kinesis.TARGET_PREFIX):  # a Kinesis consumer reading processor output
                name = kinesis.operation_name(target)
            else:
                name = wire.operation_name(target)
            params = wire.decode_body(req.body)
        except FaceprintError as exc:  # refused before reaching the core: audited here
            server.dispatcher.refused(req, exc, request_id, claimed=identity.key_id)
            raise
        if target.startswith(kinesis.TARGET_PREFIX):
            return wire.encode(kinesis.invoke(server.dispatcher, name, params, identity, request_id))
        return wire.encode(server.dispatcher.invoke(name, params, identity, request_id, via="aws"))

    dispatcher = server.dispatcher

    async def aws_endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        operation = _metric_name(request.headers.get("x-amz-target"))
        try:
            async with server.authenticated(
                request, dispatcher.authenticate_headers, dispatcher.authenticate
            ) as (req, identity):
                payload = await server.run(process, req, identity, request_id)
            response, code = wire.success(payload, request_id), "OK"
        except Exception as exc:
            error = modeled(exc, request_id)
            response, code = wire.error(error, request_id), error.code
            if isinstance(error, RequestTimeoutError):
                response.headers["connection"] = "close"
        server.metrics.observe("aws", operation, code, time.perf_counter() - start)
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "auth": server.settings.auth,
                "operations": sorted(REGISTRY),
                "uptime_seconds": round(time.time() - server.metrics.started, 3),
            }
        )

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(server.metrics.render(), media_type=metrics_mod.CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if server.settings.video_worker:
            await server.run(server.dispatcher.services.start_video_worker)
        if server.settings.stream_runner:
            await server.run(server.dispatcher.services.start_stream_runner)
        yield
        await server.run(server.dispatcher.close)

    async def web_page(request: Request) -> Response:
        return HTMLResponse(WEB_PAGE, headers=CONSOLE_HEADERS)

    async def web_asset(request: Request) -> Response:
        kind, text = WEB_ASSETS[request.url.path.rsplit("/", 1)[-1]]
        return Response(text, media_type=kind, headers=CONSOLE_HEADERS)

    routes = [
        Route("/", aws_endpoint, methods=["POST"]),
        Route("/", web_page, methods=["GET"]),
        *(Route(f"/console/{name}", web_asset, methods=["GET"]) for name in WEB_ASSETS),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *rest.routes(server),
        *rest_console.routes(server),
    ]

    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = str(uuid.uuid4())
        error = modeled(exc, request_id)
        if request.url.path == "/":
            return wire.error(error, request_id)
        return rest.error_response(error, request_id)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(CrossOriginGuard, allowed_origins=server.settings.allowed_origins)],
        exception_handlers={Exception: unexpected},
    )
    app.state.server = server
    return app
