"""The AWS JSON 1.1 codec: target header, request body, success and error responses.

Errors are `{"__type": code, "Message": text}` with the error's HTTP status (400, 5xx only for faults)
and an `x-amzn-RequestId` header on every response (wire contract §1).
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from starlette.responses import Response

from faceprint.errors import FaceprintError
from faceprint.server.errors import SerializationError, UnknownOperationError

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "RekognitionService."


def operation_name(target: str | None) -> str:
    """`RekognitionService.DetectFaces` -> `DetectFaces`."""
    if not target or not target.startswith(TARGET_PREFIX) or len(target) == len(TARGET_PREFIX):
        raise UnknownOperationError(f"Unknown operation: X-Amz-Target '{target or ''}'")
    return target[len(TARGET_PREFIX) :]


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse the JSON request body (an empty body counts as `{}`)."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SerializationError(f"Start of structure or map found where not expected: {exc}") from None
    if not isinstance(value, dict):
        raise SerializationError("The request body must be a JSON object")
    return value


def clean(value: Any) -> Any:
    """Make a core result JSON-ready: drop None members, numpy -> Python, datetimes -> epoch seconds."""
    if isinstance(value, dict):
        cleaned = ((k, clean(v)) for k, v in value.items())
        return {k: v for k, v in cleaned if v is not None}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Path):
        return str(value)
    return value


def encode(result: dict[str, Any]) -> bytes:
    return json.dumps(clean(result), separators=(",", ":"), allow_nan=False).encode()


def success(body: bytes, request_id: str) -> Response:
    return Response(body, 200, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE)


def error_body(exc: FaceprintError) -> bytes:
    return json.dumps({"__type": exc.code, "Message": exc.message}).encode()


def error(exc: FaceprintError, request_id: str) -> Response:
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": exc.code}
    return Response(error_body(exc), exc.status, headers=headers, media_type=CONTENT_TYPE)
