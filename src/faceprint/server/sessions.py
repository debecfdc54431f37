"""Console sessions: short-lived Bearer tokens exchanged for an access key (`POST /v1/sessions`).

A token is `fps1.<AccessKeyId>.<expiry epoch seconds>.<signature>`, where the signature is
base64url(HMAC-SHA256(session key, "fps1.<AccessKeyId>.<expiry>")) and the session key is derived from the
server's master key (`KeyStore.derived_secret`), so every server process sharing a home accepts every
other's tokens and nothing about sessions is stored. A token stops working when it expires
(`ExpiredTokenException`) or when its key is revoked (`UnrecognizedClientException`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from faceprint.errors import FaceprintError
from faceprint.server.errors import UnrecognizedClientError

PREFIX = "fps1"
DEFAULT_TTL_SECONDS = 3600


class ExpiredTokenError(FaceprintError):
    """The session token's lifetime is over: sign in again."""

    code = "ExpiredTokenException"
    status = 400


@dataclass(frozen=True)
class Session:
    """A token and the key and expiry it carries."""

    token: str
    key_id: str
    expiration: int


def _signature(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret: bytes, key_id: str, ttl_seconds: int, now: float | None = None) -> Session:
    """A token for `key_id` valid for `ttl_seconds` from `now`."""
    expiration = int(now if now is not None else time.time()) + max(1, int(ttl_seconds))
    message = f"{PREFIX}.{key_id}.{expiration}"
    return Session(f"{message}.{_signature(secret, message)}", key_id, expiration)


def verify(secret: bytes, token: str, now: float | None = None) -> Session:
    """The session a token carries; UnrecognizedClient if forged or malformed, ExpiredToken if over."""
    parts = token.strip().split(".")
    invalid = UnrecognizedClientError("The security token included in the request is invalid.")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit():
        raise invalid
    message = ".".join(parts[:3])
    if not hmac.compare_digest(_signature(secret, message), parts[3]):
        raise invalid
    expiration = int(parts[2])
    if expiration <= (now if now is not None else time.time()):
        raise ExpiredTokenError("The security token included in the request is expired; sign in again.")
    return Session(token, parts[1], expiration)
