"""A native REST API for callers without an AWS SDK, documented by OpenAPI (`/openapi.json`, `/docs`).

Authentication: HTTP Basic with `AccessKeyId:SecretAccessKey` (`curl -u`), or SigV4 with service
`rekognition` (`curl --aws-sigv4 aws:amz:us-east-1:rekognition`). The same pipeline as the AWS endpoint
runs underneath (policy, validation, audit log, metrics), so a REST search is audited like any other.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import python_multipart
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from faceprint.errors import FaceprintError, InvalidParameterError
from faceprint.server.dispatch import Identity
from faceprint.server.errors import MissingAuthenticationTokenError
from faceprint.server.runtime import Server, modeled
from faceprint.server.sigv4 import SignedRequest

HTTP_STATUS = {
    "MissingAuthenticationTokenException": 401,
    "IncompleteSignatureException": 401,
    "InvalidSignatureException": 401,
    "UnrecognizedClientException": 401,
    "ExpiredTokenException": 401,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ResourceAlreadyExistsException": 409,
    "ConflictException": 409,
    "ImageTooLargeException": 413,
    "InvalidImageFormatException": 415,
    "ThrottlingException": 429,
    "InternalServerError": 500,
}
_IMAGE_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "image/heif",
    "application/octet-stream",
)


def error_response(exc: FaceprintError, request_id: str) -> JSONResponse:
    status = HTTP_STATUS.get(exc.code, 400)
    headers = {"x-request-id": request_id}  # never WWW-Authenticate: a browser would replay the login
    body = {"error": {"code": exc.code, "message": exc.message}, "request_id": request_id}
    return JSONResponse(body, status, headers=headers)


def _box(box: dict[str, Any] | None) -> dict[str, float] | None:
    if not box:
        return None
    return {
        "left": box.get("Left"),
        "top": box.get("Top"),
        "width": box.get("Width"),
        "height": box.get("Height"),
    }


def _face(face: dict[str, Any]) -> dict[str, Any]:
    out = {
        "face_id": face.get("FaceId"),
        "image_id": face.get("ImageId"),
        "external_image_id": face.get("ExternalImageId"),
        "user_id": face.get("UserId"),
        "confidence": face.get("Confidence"),
        "bounding_box": _box(face.get("BoundingBox")),
    }
    return {k: v for k, v in out.items() if v is not None}


def search_view(collection_id: str, result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """SearchFacesByImage's response in the REST API's snake_case shape."""
    return {
        "request_id": request_id,
        "collection_id": collection_id,
        "face_model_version": result.get("FaceModelVersion"),
        "searched_face": {
            "bounding_box": _box(result.get("SearchedFaceBoundingBox")),
            "confidence": result.get("SearchedFaceConfidence"),
        },
        "threshold": result.get("FaceMatchThreshold"),
        "expected_false_matches": result.get("ExpectedFalseMatches"),
        "warnings": result.get("Warnings") or [],
        "matches": [
            {
                "similarity": m.get("Similarity"),
                "estimated_false_match_rate": m.get("EstimatedFalseMatchRate"),
                **_face(m.get("Face") or {}),
            }
            for m in result.get("FaceMatches") or []
        ],
    }


def index_view(collection_id: str, result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """IndexFaces's response in the REST API's snake_case shape."""
    return {
        "request_id": request_id,
        "collection_id": collection_id,
        "face_model_version": result.get("FaceModelVersion"),
        "faces": [_face(r.get("Face") or {}) for r in result.get("FaceRecords") or []],
        "unindexed_faces": [
            {
                "reasons": u.get("Reasons") or [],
                "bounding_box": _box((u.get("FaceDetail") or {}).get("BoundingBox")),
            }
            for u in result.get("UnindexedFaces") or []
        ],
    }


def authenticate_headers(server: Server, req: SignedRequest, sessions: bool = True) -> Identity | None:
    """HTTP Basic, a console session's Bearer token (unless `sessions` is False), or SigV4 when the
    headers suffice (see `Server.authenticated`); None: read the body."""
    header = req.header("authorization") or ""
    if header[:6].lower() == "basic ":
        return server.dispatcher.authenticate_basic(header, req)
    if header[:7].lower() == "bearer " and sessions:
        return server.dispatcher.authenticate_bearer(header, req)
    if server.settings.auth and (not header or header[:7].lower() == "bearer "):
        exc = MissingAuthenticationTokenError(
            "Missing Authentication Token: use HTTP Basic (AccessKeyId:SecretAccessKey) or SigV4"
            + ("" if sessions else "; a session token cannot start another session")
        )
        server.dispatcher.refused(req, exc)  # audited before any other work
        raise exc
    return server.dispatcher.authenticate_headers(req)


def _built(
    server: Server,
    build: Callable[[SignedRequest], dict[str, Any]],
    req: SignedRequest,
    identity: Identity,
    request_id: str,
) -> dict[str, Any]:
    """The operation's parameters from the request; a malformed upload is refused before the core, audited."""
    try:
        return build(req)
    except FaceprintError as exc:
        server.dispatcher.refused(req, exc, request_id, claimed=identity.key_id)
        raise


def image_and_fields(req: SignedRequest) -> tuple[bytes, dict[str, str]]:
    """The uploaded image and the other fields: multipart (field `image`) or a raw image body; the query
    string's parameters count as fields too. Runs in a worker thread (parsing 5 MB is CPU work)."""
    content_type = req.header("content-type") or ""
    kind = content_type.split(";")[0].strip().lower()
    if kind in _IMAGE_TYPES:
        return req.body, dict(parse_qsl(req.query_string))
    if kind != "multipart/form-data":
        raise InvalidParameterError(
            "send the image as multipart/form-data (field 'image') or as an image/* body"
        )
    files, fields = form(req)
    if "image" not in files:
        raise InvalidParameterError("multipart field 'image' (a file) is required")
    return files["image"], fields


def form(req: SignedRequest) -> tuple[dict[str, bytes], dict[str, str]]:
    """A multipart/form-data body's files (the first of each name) and fields; query parameters count as
    fields too."""
    content_type = req.header("content-type") or ""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise InvalidParameterError("send the files as multipart/form-data")
    fields = dict(parse_qsl(req.query_string))
    files: dict[str, bytes] = {}

    def on_field(field: Any) -> None:
        fields[field.field_name.decode(errors="replace")] = (field.value or b"").decode(errors="replace")

    def on_file(file: Any) -> None:
        name = (file.field_name or b"").decode(errors="replace")
        if name not in files:
            file.file_object.seek(0)
            files[name] = file.file_object.read()
        file.close()

    headers = {"Content-Type": content_type.encode(), "Content-Length": str(len(req.body)).encode()}
    try:
        parser = python_multipart.create_form_parser(
            headers, on_field, on_file, config={"MAX_MEMORY_FILE_SIZE": len(req.body) + 1}
        )
        parser.write(req.body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises several kinds for malformed bodies
        raise InvalidParameterError(f"malformed multipart body: {exc}") from None
    return files, fields


def number(fields: dict[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    if name not in fields or fields[name] == "":
        return None
    try:
        return kind(fields[name])
    except ValueError:
        raise InvalidParameterError(f"'{name}' must be a number, got '{fields[name]}'") from None


class StreamEvents:
    """Follows one stream processor's records in its output stream, for one SSE client."""

    POLL_SECONDS = 0.25
    KEEPALIVE_SECONDS = 15.0

    def __init__(
        self, server: Server, identity: Identity, name: str, described: dict[str, Any], request: Request
    ) -> None:
        from faceprint.server.handlers import STREAMS_SERVICE
        from faceprint.streams.sources import data_stream_name

        self.server, self.identity, self.name, self.request = server, identity, name, request
        self.collection = described["Settings"]["FaceSearch"]["CollectionId"]
        self.output = data_stream_name(described["Output"]["KinesisDataStream"]["Arn"])
        self.store = server.dispatcher.services.instance(STREAMS_SERVICE, "DescribeStreamProcessor").store

    def start_position(self, last_event_id: str | None, start: str | None) -> int:
        """After `Last-Event-ID` (a reconnecting client), the oldest record (`?from=trim_horizon`), or now."""
        if last_event_id and last_event_id.strip().isdigit():
            return int(last_event_id) + 1
        if (start or "").lower() == "trim_horizon":
            return 0
        return self.store.next_seq(self.output)

    def _batch(self, position: int) -> tuple[list[Any], int]:
        rows = self.store.records(self.output, position, 100)
        mine = [r for r in rows if r.partition_key == self.name]
        if mine:
            from faceprint.audit import AuditEvent

            self.server.dispatcher.audit.append(
                AuditEvent(
                    operation="GetRecords",
                    key_id=self.identity.key_id,
                    collection=self.collection,
                    matches=len(mine),
                    client=self.identity.client,
                    detail={"via": "sse", "stream_processor": self.name},
                )
            )
        return mine, (rows[-1].seq + 1 if rows else position)

    async def follow(self, position: int) -> Any:
        yield b"retry: 1000\n\n"
        quiet = 0.0
        while not await self.request.is_disconnected():
            rows, position = await self.server.run(self._batch, position)
            for row in rows:
                yield b"id: %d\nevent: record\ndata: %s\n\n" % (row.seq, row.data)
            if rows:
                quiet = 0.0
                continue
            await anyio.sleep(self.POLL_SECONDS)
            quiet += self.POLL_SECONDS
            if quiet >= self.KEEPALIVE_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"


def routes(server: Server) -> list[Route]:
    """The REST routes, bound to this process's server."""

    def headers_check(req: SignedRequest) -> Identity | None:
        return authenticate_headers(server, req)

    async def call(request: Request, operation: str, build: Any, view: Any) -> Response:
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        try:
            async with server.authenticated(request, headers_check, server.dispatcher.authenticate) as (
                req,
                identity,
            ):
                params = await server.run(_built, server, build, req, identity, request_id)
                result = await server.run(
                    server.dispatcher.invoke, operation, params, identity, request_id, "rest"
                )
            response: Response = JSONResponse(view(result, request_id), headers={"x-request-id": request_id})
            code = "OK"
        except Exception as exc:
            error = modeled(exc, request_id)
            response, code = error_response(error, request_id), error.code
        server.metrics.observe("rest", operation, code, time.perf_counter() - start)
        return response

    async def search(request: Request) -> Response:
        collection_id = request.path_params["collection_id"]

        def build(req: SignedRequest) -> dict[str, Any]:
            data, fields = image_and_fields(req)
            params: dict[str, Any] = {"CollectionId": collection_id, "Image": {"Bytes": data}}
            for name, member, kind in (
                ("threshold", "FaceMatchThreshold", float),
                ("max_faces", "MaxFaces", int),
            ):
                value = number(fields, name, kind)
                if value is not None:
                    params[member] = value
            if fields.get("quality_filter"):
                params["QualityFilter"] = fields["quality_filter"]
            return params

        return await call(
            request, "SearchFacesByImage", build, lambda r, rid: search_view(collection_id, r, rid)
        )

    async def index(request: Request) -> Response:
        collection_id = request.path_params["collection_id"]

        def build(req: SignedRequest) -> dict[str, Any]:
            data, fields = image_and_fields(req)
            params: dict[str, Any] = {"CollectionId": collection_id, "Image": {"Bytes": data}}
            if fields.get("external_image_id"):
                params["ExternalImageId"] = fields["external_image_id"]
            max_faces = number(fields, "max_faces", int)
            if max_faces is not None:
                params["MaxFaces"] = max_faces
            if fields.get("quality_filter"):
                params["QualityFilter"] = fields["quality_filter"]
            return params

        return await call(request, "IndexFaces", build, lambda r, rid: index_view(collection_id, r, rid))

    async def list_collections(request: Request) -> Response:
        def build(req: SignedRequest) -> dict[str, Any]:
            query = dict(parse_qsl(req.query_string))
            params: dict[str, Any] = {}
            if query.get("next_token"):
                params["NextToken"] = query["next_token"]
            max_results = number(query, "max_results", int)
            if max_results is not None:
                params["MaxResults"] = max_results
            return params

        def view(result: dict[str, Any], request_id: str) -> dict[str, Any]:
            out = {"request_id": request_id, "collections": result.get("CollectionIds") or []}
            if result.get("NextToken"):
                out["next_token"] = result["NextToken"]
            return out

        return await call(request, "ListCollections", build, view)

    async def stream_records(request: Request) -> Response:
        """A stream processor's records as server-sent events (`event: record`, `id`: sequence number)."""
        name = request.path_params["name"]
        request_id = str(uuid.uuid4())
        try:
            async with server.authenticated(request, headers_check, server.dispatcher.authenticate) as (
                _,
                identity,
            ):
                described = await server.run(
                    server.dispatcher.invoke,
                    "DescribeStreamProcessor",
                    {"Name": name},
                    identity,
                    request_id,
                    "rest",
                )
        except Exception as exc:
            return error_response(modeled(exc, request_id), request_id)
        events = StreamEvents(server, identity, name, described, request)
        start = await server.run(
            events.start_position, request.headers.get("last-event-id"), request.query_params.get("from")
        )
        return StreamingResponse(
            events.follow(start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "x-request-id": request_id},
        )

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html(OPENAPI))

    return [
        Route("/v1/collections", list_collections, methods=["GET"]),
        Route("/v1/collections/{collection_id}/search", search, methods=["POST"]),
        Route("/v1/collections/{collection_id}/faces", index, methods=["POST"]),
        Route("/v1/stream-processors/{name}/records", stream_records, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]


# --- OpenAPI ------------------------------------------------------------------------------------------
def _image_form(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP or HEIC, at most 5 MiB",
                        },
                        **extra,
                    },
                }
            },
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }


ERRORS = {
    str(status): {
        "description": desc,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, desc in [
        (400, "Invalid parameter (InvalidParameterException), e.g. no face in the image"),
        (401, "Missing or wrong credentials"),
        (403, "The key's policy does not allow this operation or collection"),
        (404, "No such collection"),
        (413, "Image over 5 MiB or too many pixels"),
        (415, "Not a supported image format"),
    ]
}
_COLLECTION_ID = {
    "name": "collection_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-zA-Z0-9_.\\-]+$", "maxLength": 255},
}
_QUALITY = {"type": "string", "enum": ["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"]}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "faceprint REST API",
        "version": "1",
        "description": (
            "Search and index faces without an AWS SDK. The Rekognition-compatible API (AWS JSON 1.1 on "
            "`POST /`) offers every operation; this API offers the common ones with multipart uploads. "
            "Authenticate with HTTP Basic (`AccessKeyId:SecretAccessKey` from `faceprint keys create`) or "
            "SigV4 (service `rekognition`). Every search and index is written to the audit log."
        ),
    },
    "security": [{"basic": []}, {"sigv4": []}],
    "paths": {
        "/v1/collections/{collection_id}/search": {
            "post": {
                "summary": "Search a collection for the largest face in an image",
                "description": "SearchFacesByImage: matches at or above `threshold` (default 80), best first",
                "parameters": [_COLLECTION_ID],
                "requestBody": _image_form(
                    {
                        "threshold": {"type": "number", "minimum": 0, "maximum": 100, "default": 80},
                        "max_faces": {"type": "integer", "minimum": 1, "maximum": 4096},
                        "quality_filter": {**_QUALITY, "default": "NONE"},
                    }
                ),
                "responses": {
                    "200": {
                        "description": "Matches",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Search"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/v1/collections/{collection_id}/faces": {
            "post": {
                "summary": "Index the faces of an image into a collection",
                "description": "IndexFaces: up to 100 faces, largest first; the rest are listed as unindexed",
                "parameters": [_COLLECTION_ID],
                "requestBody": _image_form(
                    {
                        "external_image_id": {
                            "type": "string",
                            "pattern": "^[a-zA-Z0-9_.\\-:]+$",
                            "maxLength": 255,
                        },
                        "max_faces": {"type": "integer", "minimum": 1},
                        "quality_filter": {**_QUALITY, "default": "AUTO"},
                    }
                ),
                "responses": {
                    "200": {
                        "description": "Indexed faces",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Index"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/v1/collections": {
            "get": {
                "summary": "List collections",
                "parameters": [
                    {
                        "name": "max_results",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 4096},
                    },
                    {"name": "next_token", "in": "query", "schema": {"type": "string", "maxLength": 255}},
                ],
                "responses": {
                    "200": {
                        "description": "Collection ids",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "collections": {"type": "array", "items": {"type": "string"}},
                                        "next_token": {"type": "string"},
                                        "request_id": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "401": ERRORS["401"],
                },
            }
        },
        "/v1/stream-processors/{name}/records": {
            "get": {
                "summary": "Follow a stream processor's records (server-sent events)",
                "description": (
                    "text/event-stream: one `record` event per record the processor writes (the JSON "
                    "document a Rekognition stream processor writes to Kinesis), `id` its sequence number. "
                    "Starts now, "
                    "after `Last-Event-ID` when a client reconnects, or at the oldest retained record with "
                    "`from=trim_horizon`. The key's policy must allow DescribeStreamProcessor on the "
                    "processor's collection."
                ),
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "from", "in": "query", "schema": {"type": "string", "enum": ["trim_horizon"]}},
                ],
                "responses": {
                    "200": {"description": "Event stream", "content": {"text/event-stream": {}}},
                    "401": ERRORS["401"],
                    "403": ERRORS["403"],
                    "404": {"description": "No such stream processor"},
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": {"description": "Server is up"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": {"description": "Text exposition format"}},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "basic": {
                "type": "http",
                "scheme": "basic",
                "description": "AccessKeyId as user, secret as password",
            },
            "sigv4": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "AWS Signature Version 4, service name `rekognition`, any region",
            },
        },
        "schemas": {
            "BoundingBox": {
                "type": "object",
                "description": "Ratios of the image width (left, width) and height",
                "properties": {k: {"type": "number"} for k in ("left", "top", "width", "height")},
            },
            "Face": {
                "type": "object",
                "properties": {
                    "face_id": {"type": "string", "format": "uuid"},
                    "image_id": {"type": "string", "format": "uuid"},
                    "external_image_id": {"type": "string"},
                    "user_id": {"type": "string"},
                    "confidence": {"type": "number"},
                    "bounding_box": {"$ref": "#/components/schemas/BoundingBox"},
                },
            },
            "Search": {
                "type": "object",
                "properties": {
                    "request_id": {"type": "string"},
                    "collection_id": {"type": "string"},
                    "face_model_version": {"type": "string"},
                    "searched_face": {
                        "type": "object",
                        "properties": {
                            "bounding_box": {"$ref": "#/components/schemas/BoundingBox"},
                            "confidence": {"type": "number"},
                        },
                    },
                    "threshold": {"type": "number", "description": "Similarity threshold used (percent)"},
                    "expected_false_matches": {
                        "type": "number",
                        "description": "False match rate at the threshold x faces in the collection",
                    },
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "matches": {
                        "type": "array",
                        "items": {
                            "allOf": [
                                {"$ref": "#/components/schemas/Face"},
                                {
                                    "type": "object",
                                    "properties": {
                                        "similarity": {"type": "number"},
                                        "estimated_false_match_rate": {"type": "number"},
                                    },
                                },
                            ]
                        },
                    },
                },
            },
            "Index": {
                "type": "object",
                "properties": {
                    "request_id": {"type": "string"},
                    "collection_id": {"type": "string"},
                    "face_model_version": {"type": "string"},
                    "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
                    "unindexed_faces": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "reasons": {"type": "array", "items": {"type": "string"}},
                                "bounding_box": {"$ref": "#/components/schemas/BoundingBox"},
                            },
                        },
                    },
                },
            },
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    },
                    "request_id": {"type": "string"},
                },
            },
        },
    },
}

_EXAMPLES = """\
# index a face, then search with another photo (keys from `faceprint keys create`)
curl -u "$AKID:$SECRET" -F image=@obama.jpg -F external_image_id=obama \\
     http://127.0.0.1:8080/v1/collections/demo/faces
curl -u "$AKID:$SECRET" -F image=@obama2.jpg -F threshold=90 \\
     http://127.0.0.1:8080/v1/collections/demo/search
# or sign with SigV4 instead of Basic (send the image as the raw body: curl does not sign -F bodies)
curl --aws-sigv4 aws:amz:us-east-1:rekognition -u "$AKID:$SECRET" \\
     -H 'Content-Type: image/jpeg' --data-binary @obama2.jpg \\
     http://127.0.0.1:8080/v1/collections/demo/search"""


def docs_html(spec: dict[str, Any]) -> str:
    """A small, self-contained documentation page rendered from the OpenAPI document."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>faceprint REST API</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.45}"
        "code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.8rem;overflow:auto}"
        "h2{border-top:1px solid #ddd;padding-top:1rem}.m{font-weight:bold;color:#06c}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}"
        "</style></head><body>",
        f"<h1>{esc(spec['info']['title'])}</h1><p>{esc(spec['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. AWS SDKs and the AWS CLI use "
        "<code>POST /</code> (<code>--endpoint-url</code>).</p>",
        f"<h2>Examples</h2><pre>{esc(_EXAMPLES)}</pre>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><span class='m'>{method.upper()}</span> <code>{esc(path)}</code></h2>")
            parts.append(f"<p><b>{esc(op['summary'])}</b>. {esc(op.get('description', ''))}</p>")
            rows = [(p["name"], p["in"], json.dumps(p["schema"])) for p in op.get("parameters", [])]
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form:
                rows += [(name, "form", json.dumps(s)) for name, s in form["schema"]["properties"].items()]
            if rows:
                parts.append("<table><tr><th>name</th><th>in</th><th>schema</th></tr>")
                parts += [
                    f"<tr><td>{esc(n)}</td><td>{esc(w)}</td><td><code>{esc(s)}</code></td></tr>"
                    for n, w, s in rows
                ]
                parts.append("</table>")
            codes = ", ".join(f"{c} {esc(r['description'])}" for c, r in op["responses"].items())
            parts.append(f"<p>Responses: {codes}.</p>")
    parts.append("</body></html>")
    return "".join(parts)
