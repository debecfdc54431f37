"""AWS Signature Version 4 verification, as AWS checks it (wire contract §1, "Verifying SigV4").

Pure functions over a `SignedRequest`; `verify` raises the AWS error codes
(MissingAuthenticationToken, IncompleteSignature, InvalidSignature, UnrecognizedClient).
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from faceprint.server.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
MAX_SKEW = timedelta(minutes=15)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Headers a signature must cover whenever they are sent: X-Amz-Target names the operation, Content-Type
# says how the body is read (a signature over `host;x-amz-date` alone would let anyone change either).
BOUND_HEADERS = ("x-amz-target", "content-type")
_SPACES = re.compile(r"\s+")
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class SignedRequest:
    """What verification needs from an HTTP request. `headers` keep duplicates; names any case."""

    method: str
    raw_path: str  # as sent, percent-encoded, without the query
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    client: str | None = None  # the peer's address, for the audit log

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ",".join(values) if values else None


@dataclass(frozen=True)
class Authorization:
    """The parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def parse_authorization(value: str) -> Authorization:
    """Parse the Authorization header; IncompleteSignatureException if a part is missing."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureError(
            f"Authorization header requires '{ALGORITHM}' algorithm (got '{algorithm}')."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            parts[name.strip()] = val.strip()
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        raise IncompleteSignatureError(
            " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
            + f" Authorization={value[:200]}"
        )
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise IncompleteSignatureError(
            f"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{parts['Credential']}'"
        )
    signature = parts["Signature"].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", signature):
        raise IncompleteSignatureError("Signature must be 64 hexadecimal characters.")
    access_key, date, region, service, terminator = credential
    return Authorization(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=tuple(h.strip().lower() for h in parts["SignedHeaders"].split(";")),
        signature=signature,
    )


def canonical_uri(raw_path: str) -> str:
    """The path as sent, normalised, then URI-encoded once more (botocore's rule for all services but S3)."""
    path = raw_path or "/"
    normalized = posixpath.normpath(path)
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    return quote(normalized, safe="/~")


def canonical_query(query_string: str) -> str:
    """Query parameters sorted by name then value, each RFC 3986-encoded."""
    if not query_string:
        return ""
    pairs = []
    for item in query_string.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(req: SignedRequest, signed_headers: Sequence[str], payload_hash: str) -> str:
    """The SigV4 canonical request over exactly the headers named in SignedHeaders."""
    lines = []
    for name in signed_headers:
        value = req.header(name)
        lines.append(f"{name}:{_SPACES.sub(' ', (value or '').strip())}\n")
    return "\n".join(
        [
            req.method.upper(),
            canonical_uri(req.raw_path),
            canonical_query(req.query_string),
            "".join(lines),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC chain from "AWS4"+secret over date, region, service and "aws4_request"."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, auth: Authorization, amz_date: str, canonical: str) -> str:
    """Hex signature of a canonical request under `auth`'s credential scope."""
    to_sign = "\n".join([ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def request_time(req: SignedRequest) -> tuple[str, datetime]:
    """The `X-Amz-Date` (or `Date`) of the request, as sent and parsed."""
    amz = req.header("x-amz-date")
    if amz:
        try:
            return amz, datetime.strptime(amz, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise IncompleteSignatureError(f"Date must be in ISO-8601 'basic format'. Got '{amz}'.") from None
    date = req.header("date")
    if date:
        try:
            parsed = parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            raise IncompleteSignatureError(f"Date header is not a valid HTTP date. Got '{date}'.") from None
        return parsed.strftime(AMZ_DATE_FORMAT), parsed
    raise IncompleteSignatureError(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


def verify(
    req: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
    service: str = SERVICE,
    payload_hash: str | None = None,
) -> Authorization:
    """Verify the request's SigV4 signature; returns the parsed Authorization of a valid request.

    `secret_for(access_key_id)` gives the secret of an active key, or None for an unknown or revoked one.
    `payload_hash` verifies the headers before the body arrives: the declared `x-amz-content-sha256`,
    which the signature covers; the caller then checks the body against it (`check_payload`).
    """
    header = req.header("authorization")
    if not header:
        if "X-Amz-Signature=" in req.query_string or "X-Amz-Credential=" in req.query_string:
            raise IncompleteSignatureError(
                "Presigned (query-string) requests are not supported; sign the headers."
            )
        raise MissingAuthenticationTokenError("Missing Authentication Token")
    auth = parse_authorization(header)
    amz_date, when = request_time(req)
    if auth.date != amz_date[:8]:
        raise InvalidSignatureError(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if auth.service != service:
        raise InvalidSignatureError(f"Credential should be scoped to correct service: '{service}'. ")
    if auth.terminator != "aws4_request":
        raise InvalidSignatureError(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{auth.terminator}'."
        )
    if "host" not in auth.signed_headers:
        raise InvalidSignatureError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    for name in BOUND_HEADERS:  # the operation and the body's type must be what the key signed
        if req.header(name) is not None and name not in auth.signed_headers:
            raise InvalidSignatureError(
                f"'{name}' is present but is not a 'SignedHeader' in the AWS Authorization."
            )
    now = now or datetime.now(UTC)
    if when < now - MAX_SKEW:
        raise InvalidSignatureError(
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW).strftime(AMZ_DATE_FORMAT)} "
            f"({now.strftime(AMZ_DATE_FORMAT)} - 15 min.)"
        )
    if when > now + MAX_SKEW:
        raise InvalidSignatureError(
            f"Signature not yet current: {amz_date} is still later than "
            f"{(now + MAX_SKEW).strftime(AMZ_DATE_FORMAT)} ({now.strftime(AMZ_DATE_FORMAT)} + 15 min.)"
        )
    if req.header("x-amz-security-token") is not None:
        raise UnrecognizedClientError(_BAD_TOKEN)  # faceprint issues no session credentials
    secret = secret_for(auth.access_key)
    if secret is None:
        raise UnrecognizedClientError(_BAD_TOKEN)
    if payload_hash is None:
        payload_hash = hashlib.sha256(req.body).hexdigest()
        check_payload(req)
    expected = signature(secret, auth, amz_date, canonical_request(req, auth.signed_headers, payload_hash))
    if not hmac.compare_digest(expected, auth.signature):
        raise InvalidSignatureError(_MISMATCH)
    return auth


def declared_payload_hash(req: SignedRequest) -> str | None:
    """The `x-amz-content-sha256` of a request, if it is a real hash (not UNSIGNED-PAYLOAD or streaming)."""
    declared = (req.header("x-amz-content-sha256") or "").lower()
    return declared if re.fullmatch(r"[0-9a-f]{64}", declared) else None


def check_payload(req: SignedRequest) -> None:
    """InvalidSignatureException unless the body matches its declared `x-amz-content-sha256` (if any)."""
    declared = req.header("x-amz-content-sha256")
    if declared is not None and declared.lower() != hashlib.sha256(req.body).hexdigest():
        raise InvalidSignatureError(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
