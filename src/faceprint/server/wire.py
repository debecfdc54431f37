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


MAX_DEPTH = 32  # the deepest Rekognition request shape is 5 levels; anything deeper is not a request


def _no_constant(name: str) -> Any:
    raise SerializationError(f"'{name}' is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SerializationError(f"number {text[:40]} is out of range")
    return value


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse the JSON request body (an empty body counts as `{}`): the one place the wire body is read.

    Strict JSON only: no NaN/Infinity, no number that overflows a double, no integer longer than Python
    converts, no nesting deeper than `MAX_DEPTH`, no string that is not valid Unicode (a lone surrogate
    such as "\\ud800"). Each is a SerializationException, as AWS answers unparseable input.
    """
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except SerializationError:
        raise
    except RecursionError:
        raise SerializationError(f"JSON is nested more than {MAX_DEPTH} levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and int() beyond 4,300 digits
        raise SerializationError(f"Start of structure or map found where not expected: {exc}") from None
    if not isinstance(value, dict):
        raise SerializationError("The request body must be a JSON object")
    _check_tree(value)
    return value


def _check_tree(root: Any) -> None:
    """Depth and Unicode checks over the decoded body, iteratively (no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise SerializationError(f"JSON is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError("a string in the request is not valid Unicode (lone surrogate)") from None


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
