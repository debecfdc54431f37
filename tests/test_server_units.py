"""Server building blocks without a server: SigV4 against botocore's own signer, the request shapes against
botocore's Rekognition model, key storage and policies, and the audit chain (real files, no mocks)."""

from __future__ import annotations

import json
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from faceprint.audit import AuditEvent, AuditLog
from faceprint.errors import ImageTooLargeError, InvalidParameterError
from faceprint.server import schema, sigv4
from faceprint.server.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)
from faceprint.server.handlers import REGISTRY
from faceprint.server.keys import KeyStore, Policy, parse_patterns
from faceprint.server.s3 import LocalBuckets, parse_bucket_map
from faceprint.server.settings import auth_from_env

KEY_ID, SECRET = "FPAKTESTTESTTEST0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def botocore_signed(
    body: bytes = b"{}",
    url: str = "http://127.0.0.1:8080/",
    secret: str = SECRET,
    region: str = "eu-west-3",
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> sigv4.SignedRequest:
    """A request signed by botocore itself, as the server would receive it."""
    req = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "X-Amz-Target": "RekognitionService.ListCollections",
            "Content-Type": "application/x-amz-json-1.1",
            **(headers or {}),
        },
    )
    SigV4Auth(Credentials(KEY_ID, secret, token), "rekognition", region).add_auth(req)
    parts = urlsplit(url)
    sent = [("host", parts.netloc), *((k, v) for k, v in req.headers.items())]
    return sigv4.SignedRequest("POST", parts.path or "/", parts.query, sent, body)


def lookup(key_id: str) -> str | None:
    return SECRET if key_id == KEY_ID else None


# --- SigV4 ---------------------------------------------------------------------------------------------
def test_botocore_signature_verifies_for_any_region_and_body() -> None:
    for body in (
        b"{}",
        json.dumps({"CollectionId": "a b", "MaxResults": 3}).encode(),
        bytes(range(256)) * 40,
    ):
        auth = sigv4.verify(botocore_signed(body), lookup)
        assert (auth.access_key, auth.region, auth.service) == (KEY_ID, "eu-west-3", "rekognition")


def test_rest_paths_and_queries_verify_like_botocore_canonicalises_them() -> None:
    url = "http://127.0.0.1:9/v1/collections/my.coll-1/search?b=2&a=1&a=0&x=%2F%20y"
    assert sigv4.verify(botocore_signed(b"--multipart--", url=url), lookup).access_key == KEY_ID


def test_wrong_secret_tampered_body_and_changed_header_are_invalid_signatures() -> None:
    with pytest.raises(InvalidSignatureError, match="does not match"):
        sigv4.verify(botocore_signed(secret="not-the-secret"), lookup)
    good = botocore_signed(b'{"MaxResults": 1}')
    tampered_body = sigv4.SignedRequest(good.method, good.raw_path, "", good.headers, b'{"MaxResults": 2}')
    with pytest.raises(InvalidSignatureError, match="does not match"):
        sigv4.verify(tampered_body, lookup)
    headers = [
        (k, "RekognitionService.DeleteCollection" if k == "X-Amz-Target" else v) for k, v in good.headers
    ]
    with pytest.raises(InvalidSignatureError, match="does not match"):
        sigv4.verify(sigv4.SignedRequest("POST", "/", "", headers, good.body), lookup)


def test_clock_skew_is_fifteen_minutes_either_way() -> None:
    req = botocore_signed()
    signed_at = datetime.strptime(req.header("x-amz-date") or "", sigv4.AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    sigv4.verify(req, lookup, now=signed_at + timedelta(minutes=14))
    sigv4.verify(req, lookup, now=signed_at - timedelta(minutes=14))
    with pytest.raises(InvalidSignatureError, match="Signature expired"):
        sigv4.verify(req, lookup, now=signed_at + timedelta(minutes=16))
    with pytest.raises(InvalidSignatureError, match="not yet current"):
        sigv4.verify(req, lookup, now=signed_at - timedelta(minutes=16))


def test_unknown_key_missing_and_malformed_authorization() -> None:
    with pytest.raises(UnrecognizedClientError):
        sigv4.verify(botocore_signed(), lambda key_id: None)
    with pytest.raises(UnrecognizedClientError):  # faceprint issues no session tokens
        sigv4.verify(botocore_signed(token="session-token"), lookup)
    bare = sigv4.SignedRequest("POST", "/", "", [("host", "x")], b"{}")
    with pytest.raises(MissingAuthenticationTokenError):
        sigv4.verify(bare, lookup)
    broken = sigv4.SignedRequest(
        "POST", "/", "", [("host", "x"), ("authorization", "AWS4-HMAC-SHA256 Foo=1")], b""
    )
    with pytest.raises(IncompleteSignatureError, match="Credential"):
        sigv4.verify(broken, lookup)


def test_scope_must_be_rekognition_and_host_must_be_signed() -> None:
    req = botocore_signed()
    other_service = [(k, v.replace("/rekognition/", "/s3/")) for k, v in req.headers]
    with pytest.raises(InvalidSignatureError, match="correct service"):
        sigv4.verify(sigv4.SignedRequest("POST", "/", "", other_service, req.body), lookup)
    no_host = [
        (k, v.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"))
        for k, v in req.headers
    ]
    with pytest.raises(InvalidSignatureError, match="Host"):
        sigv4.verify(sigv4.SignedRequest("POST", "/", "", no_host, req.body), lookup)


# --- request shapes ------------------------------------------------------------------------------------
def _model_constraints(shape: object, path: str, out: dict[str, tuple]) -> None:
    meta = getattr(shape, "metadata", {})
    out[path] = (
        meta.get("min"),
        meta.get("max"),
        meta.get("pattern"),
        tuple(getattr(shape, "enum", []) or []),
    )
    kind = shape.type_name  # type: ignore[attr-defined]
    if kind == "structure":
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            _model_constraints(member, f"{path}.{name}", out)
    elif kind == "list":
        _model_constraints(shape.member, f"{path}[]", out)  # type: ignore[attr-defined]


def _our_constraints(shape: schema.Shape, path: str, out: dict[str, tuple]) -> None:
    if isinstance(shape, schema.Struct):
        out[path] = (None, None, None, ())
        for name, member in shape.members.items():
            _our_constraints(member, f"{path}.{name}", out)
        return
    if isinstance(shape, schema.ListOf):
        out[path] = (shape.min, shape.max, None, ())
        _our_constraints(shape.item, f"{path}[]", out)
        return
    if isinstance(shape, schema.Str):
        out[path] = (shape.min, shape.max, shape.pattern, shape.enum or ())
    elif isinstance(shape, schema.Bool):
        out[path] = (None, None, None, ())
    elif isinstance(shape, schema.Int | schema.Num | schema.Blob | schema.MapOf):
        out[path] = (shape.min, shape.max, None, ())


def test_every_registered_operation_checks_what_botocores_model_says() -> None:
    model = botocore.session.get_session().get_service_model("rekognition")
    assert set(REGISTRY) == set(schema.REQUESTS)
    for name in REGISTRY:
        expected: dict[str, tuple] = {}
        ours: dict[str, tuple] = {}
        _model_constraints(model.operation_model(name).input_shape, name, expected)
        _our_constraints(schema.REQUESTS[name], name, ours)
        assert set(ours) == set(expected), name
        for path, (lo, hi, pattern, enum) in expected.items():
            got = ours[path]
            if ".Tags" in path or ".TagKeys" in path:  # \p{L} patterns: checked by a predicate, not `re`
                pattern = None
            assert got == (lo, hi, pattern, enum), (path, got)
        required = set(model.operation_model(name).input_shape.required_members)
        assert set(schema.REQUESTS[name].required) == required, name


def test_kinesis_read_operations_check_what_botocores_kinesis_model_says() -> None:
    from faceprint.server import kinesis

    model = botocore.session.get_session().get_service_model("kinesis")
    assert (
        model.metadata["protocol"] == "json" and model.metadata["targetPrefix"] + "." == kinesis.TARGET_PREFIX
    )
    for name, shape in kinesis.REQUESTS.items():
        expected: dict[str, tuple] = {}
        ours: dict[str, tuple] = {}
        _model_constraints(model.operation_model(name).input_shape, name, expected)
        _our_constraints(shape, name, ours)
        for path in [p for p in expected if p.endswith("Timestamp")]:  # epoch seconds: a number
            expected[path] = (None, None, None, ())
        assert ours == expected, name
        assert set(shape.required) == set(model.operation_model(name).input_shape.required_members), name


def test_validation_catches_what_botocore_does_not() -> None:
    cases = [
        ("DescribeCollection", {"CollectionId": "bad id!"}, "regular expression"),
        ("ListCollections", {"MaxResults": 99999}, "less than or equal to 4096"),
        ("SearchFaces", {"CollectionId": "c", "FaceId": "not-a-uuid"}, "regular expression"),
        (
            "SearchFacesByImage",
            {"CollectionId": "c", "Image": {"Bytes": "/9j/"}, "FaceMatchThreshold": 150},
            "less than or equal to 100",
        ),
        ("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": "/9j/"}, "QualityFilter": "BOGUS"}, "enum"),
        ("DetectFaces", {"Image": {"Bytes": ""}}, "greater than or equal to 1"),
        ("DetectFaces", {"Image": {}}, "exactly one"),
        ("SearchUsers", {"CollectionId": "c"}, "exactly one"),
        ("CreateCollection", {"CollectionId": "c", "Tags": {"aws:x": "y"}}, "not allowed"),
        ("SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": "/9j/"}, "MaxFaces": 0}, "greater"),
    ]
    for op, params, message in cases:
        with pytest.raises(InvalidParameterError, match=message):
            schema.validate(op, params)
    with pytest.raises(ImageTooLargeError):
        schema.validate("DetectFaces", {"Image": {"Bytes": "A" * (8 * 1024 * 1024)}})
    ok = schema.validate("DetectFaces", {"Image": {"Bytes": "/9j/4GZha2VqcGVn"}, "Unknown": 1})
    assert ok == {"Image": {"Bytes": b"\xff\xd8\xff\xe0fakejpeg"}}


# --- keys ----------------------------------------------------------------------------------------------
def test_keys_are_private_files_without_secrets_and_revocations_reach_other_handles(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key, secret = store.create("alice", ("Search*", "rekognition:DetectFaces"), ("prod-*",))
    assert len(secret) == 40 and key.access_key_id.startswith("FPAK") and len(key.access_key_id) == 20
    for path in (store.path, store.master_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret not in store.path.read_text() and secret.encode() not in store.master_path.read_bytes()
    other = KeyStore(tmp_path)  # e.g. another server worker
    assert other.secret_for(key.access_key_id) == secret
    assert other.check_secret(key.access_key_id, secret) is not None
    assert other.check_secret(key.access_key_id, secret[:-1] + "x") is None
    store.revoke(key.access_key_id)
    assert other.secret_for(key.access_key_id) is None
    assert [k.status for k in other.list()] == ["Revoked"]


def test_policy_globs_over_operations_and_collections() -> None:
    policy = Policy(
        parse_patterns("rekognition:Search*,DetectFaces", known=REGISTRY), parse_patterns("prod-*")
    )
    assert policy.allows_action("SearchFacesByImage") and policy.allows_action("detectfaces")
    assert not policy.allows_action("DeleteCollection")
    assert policy.allows_collection("prod-eu") and not policy.allows_collection("staging")
    with pytest.raises(InvalidParameterError, match="matches no operation"):
        parse_patterns("Serch*", known=REGISTRY)


# --- audit ---------------------------------------------------------------------------------------------
def test_audit_chain_verifies_and_detects_an_edited_or_removed_row(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite")
    for i in range(5):
        log.append(AuditEvent("SearchFacesByImage", "FPAKX", "c1", 99.0, i, f"req-{i}"))
    check = log.verify()
    assert check.ok and check.rows == 5 and check.head == log.records()[-1].hash
    assert stat.S_IMODE((tmp_path / "audit.sqlite").stat().st_mode) == 0o600
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        log._db.execute("UPDATE audit SET matches = 0 WHERE seq = 3")
    log.close()

    def reopened_check() -> object:
        reopened = AuditLog(tmp_path / "audit.sqlite")  # re-creates any dropped trigger
        try:
            return reopened.verify()
        finally:
            reopened.close()

    raw = sqlite3.connect(tmp_path / "audit.sqlite")  # an attacker going around the triggers
    raw.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET matches = 0 WHERE seq = 3;")
    check = reopened_check()
    assert not check.ok and check.bad_seq == 3 and "content" in check.reason  # type: ignore[attr-defined]

    raw.executescript("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq >= 3;")
    assert reopened_check().ok  # type: ignore[attr-defined]  # a cut tail: compare heads kept elsewhere
    raw.executescript("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 1;")
    check = reopened_check()
    assert not check.ok and check.bad_seq == 2  # type: ignore[attr-defined]
    raw.close()


# --- local buckets -------------------------------------------------------------------------------------
def test_local_buckets_resolve_inside_the_bucket_only(tmp_path: Path) -> None:
    from conftest import DATA

    buckets = LocalBuckets(tmp_path / "buckets", parse_bucket_map(f"data={DATA}"))
    readme = buckets.resolve({"Bucket": "data", "Name": "README.md"})
    assert readme == (DATA / "README.md").resolve()
    from faceprint.errors import InvalidS3ObjectError

    for obj in (
        {"Bucket": "data", "Name": "no/such/file.jpg"},
        {"Bucket": "data", "Name": "../../../etc/passwd"},
        {"Bucket": "nobucket", "Name": "README.md"},
        {"Bucket": "data", "Name": "README.md", "Version": "3"},
    ):
        with pytest.raises(InvalidS3ObjectError):
            buckets.resolve(obj)


@pytest.mark.parametrize(
    ("value", "on"),
    [
        *[(v, True) for v in (None, "", "0 ", " off", "disabled", "1", "ON")],
        *[(v, False) for v in ("off", "OFF", "false", "No", "0")],
    ],
)
def test_only_an_explicit_value_turns_auth_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    if value is None:
        monkeypatch.delenv("FACEPRINT_AUTH", raising=False)
    else:
        monkeypatch.setenv("FACEPRINT_AUTH", value)
    assert auth_from_env() is on
