"""Opaque, signed NextTokens: a scope (what is being paged) and the position to continue after."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from faceprint.errors import InvalidPaginationTokenError

_TAG_BYTES = 12
MAX_TOKEN_LENGTH = 255  # Rekognition's PaginationToken


class PaginationTokens:
    """Tokens bound to a scope string (e.g. "faces:12"), tamper-proof under a per-database key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def make(self, scope: str, position: int) -> str:
        payload = f"{scope}:{int(position)}".encode()
        return base64.urlsafe_b64encode(payload + self._tag(payload)).decode().rstrip("=")

    def parse(self, token: Any, scope: str) -> int:
        """The position to continue after (0 without a token); InvalidPaginationTokenError otherwise."""
        if token is None:
            return 0
        bad = InvalidPaginationTokenError("NextToken is not valid for this request")
        if not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN_LENGTH:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            raise bad
        token_scope, _, position = payload.decode(errors="replace").rpartition(":")
        if token_scope != scope or not position.isdigit():
            raise bad
        return int(position)
