"""`faceprint serve` driven by unmodified boto3 and the AWS CLI: one real server (2 workers) for the module.

Covers the life cycle of collections, faces and users on real photos, paginators, local-bucket S3Objects,
every error the issue names (auth, validation, images, unknown operation, policy), key revocation seen
by every worker, and the audit chain written by both workers (verified, then tampered with).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from PIL import Image

from conftest import CROWD, DATA, EXAMPLES, KNN
from faceprint.server.launcher import RunningServer, start_server

pytestmark = pytest.mark.slow
TRAIN = KNN / "train"


def faceprint(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEPRINT_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "faceprint", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


@dataclass
class Key:
    access_key_id: str
    secret: str


@dataclass
class Env:
    server: RunningServer
    admin: Key
    limited: Key

    def client(self, key: Key | None = None, **kwargs: Any) -> Any:
        key = key or self.admin
        return boto3.client(
            "rekognition",
            endpoint_url=self.server.url,
            region_name="us-east-1",
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret,
            **kwargs,
        )


def create_key(home: Path, *args: str) -> Key:
    out = json.loads(faceprint(home, "keys", "create", "--json", *args).stdout)["AccessKey"]
    return Key(out["AccessKeyId"], out["SecretAccessKey"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("server-home")
    admin = create_key(home, "--name", "admin")
    limited = create_key(
        home, "--name", "limited", "--allow", "DetectFaces,Search*,ListCollections", "--collections", "team-*"
    )
    server = start_server(home, "--workers", "2", "--bucket", f"data={DATA}")
    try:
        yield Env(server, admin, limited)
    finally:
        server.stop()


def image(path: Path) -> dict[str, bytes]:
    return {"Bytes": path.read_bytes()}


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    assert response["ResponseMetadata"]["RequestId"], "every error carries x-amzn-RequestId"
    assert response["Error"]["Message"]
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def raw_call(env: Env, target: str, body: bytes, key: Key | None = None) -> httpx.Response:
    """A request boto3 would refuse to send, signed with botocore's own SigV4 signer."""
    key = key or env.admin
    req = AWSRequest(
        method="POST",
        url=env.server.url + "/",
        data=body,
        headers={
            "X-Amz-Target": f"RekognitionService.{target}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(key.access_key_id, key.secret), "rekognition", "us-east-1").add_auth(req)
    return httpx.post(env.server.url + "/", content=body, headers=dict(req.headers.items()), timeout=60)


# --- life cycle ----------------------------------------------------------------------------------------
def test_collections_faces_and_users_life_cycle(env: Env) -> None:
    rek = env.client()
    created = rek.create_collection(CollectionId="people")
    assert created["StatusCode"] == 200 and created["CollectionArn"].endswith(":collection/people")
    with pytest.raises(rek.exceptions.ResourceAlreadyExistsException):
        rek.create_collection(CollectionId="people")

    face_ids: dict[str, str] = {}
    for name, path in [
        ("obama", TRAIN / "obama" / "obama.jpg"),
        ("obama2", TRAIN / "obama" / "obama2.jpg"),
        ("biden", TRAIN / "biden" / "biden.jpg"),
    ]:
        records = rek.index_faces(CollectionId="people", Image=image(path), ExternalImageId=name, MaxFaces=1)[
            "FaceRecords"
        ]
        assert len(records) == 1 and records[0]["Face"]["ExternalImageId"] == name
        face_ids[name] = records[0]["Face"]["FaceId"]
    described = rek.describe_collection(CollectionId="people")
    assert described["FaceCount"] == 3 and described["CollectionARN"] == created["CollectionArn"]
    assert abs(described["CreationTimestamp"] - datetime.now(UTC)) < timedelta(minutes=5)

    pages = list(
        rek.get_paginator("list_faces").paginate(CollectionId="people", PaginationConfig={"PageSize": 2})
    )
    assert [len(p["Faces"]) for p in pages] == [2, 1]
    assert {f["FaceId"] for p in pages for f in p["Faces"]} == set(face_ids.values())

    probe = rek.search_faces_by_image(CollectionId="people", Image=image(KNN / "test" / "obama1.jpg"))
    assert probe["FaceMatches"] and probe["FaceMatches"][0]["Face"]["ExternalImageId"].startswith("obama")
    assert {m["Face"]["ExternalImageId"] for m in probe["FaceMatches"]} <= {"obama", "obama2"}
    similar = rek.search_faces(CollectionId="people", FaceId=face_ids["obama"], FaceMatchThreshold=80)
    assert similar["SearchedFaceId"] == face_ids["obama"]
    assert [m["Face"]["FaceId"] for m in similar["FaceMatches"]] == [face_ids["obama2"]]
    s3 = {"S3Object": {"Bucket": "data", "Name": str((TRAIN / "biden" / "biden2.jpg").relative_to(DATA))}}
    by_s3 = rek.search_faces_by_image(CollectionId="people", Image=s3)
    assert by_s3["FaceMatches"][0]["Face"]["FaceId"] == face_ids["biden"]

    rek.create_user(CollectionId="people", UserId="barack")  # boto3 fills ClientRequestToken
    associated = rek.associate_faces(
        CollectionId="people", UserId="barack", FaceIds=[face_ids["obama"], face_ids["obama2"]]
    )
    assert {f["FaceId"] for f in associated["AssociatedFaces"]} == {face_ids["obama"], face_ids["obama2"]}
    rek.create_user(CollectionId="people", UserId="joe")
    users = [
        u
        for p in rek.get_paginator("list_users").paginate(
            CollectionId="people", PaginationConfig={"PageSize": 1}
        )
        for u in p["Users"]
    ]
    assert sorted(u["UserId"] for u in users) == ["barack", "joe"]
    by_user_image = rek.search_users_by_image(CollectionId="people", Image=image(KNN / "test" / "obama1.jpg"))
    assert by_user_image["UserMatches"][0]["User"]["UserId"] == "barack"
    by_face = rek.search_users(CollectionId="people", FaceId=face_ids["obama"])
    assert [m["User"]["UserId"] for m in by_face["UserMatches"]] == ["barack"]
    gone = rek.disassociate_faces(CollectionId="people", UserId="barack", FaceIds=[face_ids["obama2"]])
    assert [f["FaceId"] for f in gone["DisassociatedFaces"]] == [face_ids["obama2"]]
    rek.delete_user(CollectionId="people", UserId="joe")
    assert [u["UserId"] for u in rek.list_users(CollectionId="people")["Users"]] == ["barack"]

    deleted = rek.delete_faces(CollectionId="people", FaceIds=[face_ids["biden"]])
    assert deleted["DeletedFaces"] == [face_ids["biden"]]
    assert rek.describe_collection(CollectionId="people")["FaceCount"] == 2
    assert rek.delete_collection(CollectionId="people")["StatusCode"] == 200
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.describe_collection(CollectionId="people")


def test_detect_and_compare_faces(env: Env) -> None:
    rek = env.client()
    detected = rek.detect_faces(Image=image(EXAMPLES / "two_people.jpg"))
    assert len(detected["FaceDetails"]) == 2
    compared = rek.compare_faces(
        SourceImage=image(EXAMPLES / "biden.jpg"),
        TargetImage=image(EXAMPLES / "two_people.jpg"),
        SimilarityThreshold=80,
    )
    assert len(compared["FaceMatches"]) == 1 and len(compared["UnmatchedFaces"]) == 1
    assert compared["FaceMatches"][0]["Similarity"] >= 80


def test_list_collections_paginates(env: Env) -> None:
    rek = env.client()
    for name in ("team-a", "team-b", "other"):
        rek.create_collection(CollectionId=name)
    pages = list(rek.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 2 and "NextToken" in pages[0] and "NextToken" not in pages[-1]
    ids = [c for p in pages for c in p["CollectionIds"]]
    assert sorted(ids) == ["other", "team-a", "team-b"]
    assert sum(len(p["FaceModelVersions"]) for p in pages) == 3


def test_video_jobs_through_the_wire(env: Env) -> None:
    rek = env.client()
    rek.create_collection(CollectionId="hamilton")
    for person in ("lin-manuel-miranda", "alex-lacamoire"):
        rek.index_faces(
            CollectionId="hamilton", Image=image(EXAMPLES / f"{person}.png"), ExternalImageId=person
        )
    clip = {"S3Object": {"Bucket": "data", "Name": "video/face_recognition_short_hamilton_clip.mp4"}}
    detection = rek.start_face_detection(Video=clip, JobTag="wire-test")["JobId"]
    search = rek.start_face_search(Video=clip, CollectionId="hamilton", FaceMatchThreshold=80)["JobId"]
    with pytest.raises(rek.exceptions.InvalidS3ObjectException):
        rek.start_face_detection(Video={"S3Object": {"Bucket": "data", "Name": "video/missing.mp4"}})
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.get_face_detection(JobId="0123456789abcdef")
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.get_face_search(JobId="bad job!")

    deadline = time.monotonic() + 150
    while rek.get_face_search(JobId=search)["JobStatus"] == "IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.5)
    faces, token, pages = [], None, 0
    while True:  # no paginator for GetFaceDetection: callers loop on NextToken
        page = rek.get_face_detection(
            JobId=detection, MaxResults=10, **({"NextToken": token} if token else {})
        )
        assert page["JobStatus"] == "SUCCEEDED", page.get("StatusMessage")
        faces += page["Faces"]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert page["VideoMetadata"]["FrameWidth"] == 640 and page["JobTag"] == "wire-test"
    assert pages > 1 and len(faces) > 10
    assert [f["Timestamp"] for f in faces] == sorted(f["Timestamp"] for f in faces)
    persons = rek.get_face_search(JobId=search)
    assert persons["JobStatus"] == "SUCCEEDED"
    matched = {m["Face"]["ExternalImageId"] for p in persons["Persons"] for m in p.get("FaceMatches", [])}
    assert matched == {"lin-manuel-miranda", "alex-lacamoire"}


# --- errors --------------------------------------------------------------------------------------------
def test_authentication_errors_are_the_ones_aws_sends(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = env.client(Key(env.admin.access_key_id, "x" * 40))
    with pytest.raises(ClientError) as exc:
        wrong.list_collections()
    assert error_of(exc)[:2] == ("InvalidSignatureException", 400)
    unknown = env.client(Key("FPAKNOSUCHKEY0000000", env.admin.secret))
    with pytest.raises(ClientError) as exc:
        unknown.list_collections()
    assert error_of(exc)[:2] == ("UnrecognizedClientException", 400)
    unsigned = httpx.post(
        env.server.url + "/", content=b"{}", headers={"X-Amz-Target": "RekognitionService.ListCollections"}
    )
    assert unsigned.status_code == 400 and unsigned.json()["__type"] == "MissingAuthenticationTokenException"

    stale = datetime.now(UTC).replace(tzinfo=None) - timedelta(
        minutes=20
    )  # the client's clock is 20 min slow
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: stale)
    with pytest.raises(ClientError) as exc:
        env.client().list_collections()
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidSignatureException", 400) and message.startswith("Signature expired")


def test_parameter_and_image_errors(env: Env, tmp_path: Path) -> None:
    rek = env.client()
    with pytest.raises(rek.exceptions.ResourceNotFoundException) as nf:
        rek.search_faces_by_image(CollectionId="no-such-collection", Image=image(EXAMPLES / "obama.jpg"))
    assert error_of(nf)[1] == 400
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_faces(Image={"Bytes": (DATA / "README.md").read_bytes()})
    truncated = (EXAMPLES / "obama.jpg").read_bytes()[:5000]
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_faces(Image={"Bytes": truncated})

    big = io.BytesIO()  # a real photo, upscaled and stored uncompressed: about 6 MB
    Image.open(CROWD / "tinyfaces_worlds_largest_selfie.jpg").convert("RGB").resize((2048, 1000)).save(
        big, "PNG", compress_level=0
    )
    assert 6_000_000 <= len(big.getvalue()) <= 6_400_000
    with pytest.raises(rek.exceptions.ImageTooLargeException):
        rek.detect_faces(Image={"Bytes": big.getvalue()})

    with pytest.raises(rek.exceptions.InvalidParameterException) as bad_id:
        rek.describe_collection(CollectionId="bad id!")
    assert "regular expression" in error_of(bad_id)[2]
    rek.create_collection(CollectionId="errors")
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.search_faces_by_image(CollectionId="errors", Image=image(EXAMPLES / "obama.jpg"), MaxFaces=5000)
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.list_faces(CollectionId="errors", MaxResults=99999)
    with pytest.raises(rek.exceptions.InvalidS3ObjectException):
        rek.detect_faces(Image={"S3Object": {"Bucket": "data", "Name": "no/such/photo.jpg"}})
    with pytest.raises(rek.exceptions.InvalidS3ObjectException):
        rek.detect_faces(Image={"S3Object": {"Bucket": "no-bucket", "Name": "x.jpg"}})

    body = json.dumps(
        {"CollectionId": "errors", "Image": {"S3Object": {"Bucket": "data", "Name": "x"}}, "MaxFaces": 0}
    ).encode()  # botocore refuses MaxFaces=0, so it is sent raw
    raw = raw_call(env, "SearchFacesByImage", body)
    assert raw.status_code == 400 and raw.headers["x-amzn-RequestId"]
    assert raw.headers["content-type"] == "application/x-amz-json-1.1"
    assert raw.json()["__type"] == "InvalidParameterException" and "maxFaces" in raw.json()["Message"]


def test_unknown_operations(env: Env) -> None:
    with pytest.raises(ClientError) as exc:  # a real Rekognition operation faceprint does not offer
        env.client().recognize_celebrities(Image=image(EXAMPLES / "obama.jpg"))
    assert error_of(exc)[:2] == ("UnknownOperationException", 400)
    raw = raw_call(env, "FlyToTheMoon", b"{}")
    assert raw.status_code == 400 and raw.json()["__type"] == "UnknownOperationException"
    not_json = raw_call(env, "ListCollections", b"{not json")
    assert not_json.status_code == 400 and not_json.json()["__type"] == "SerializationException"


def test_key_policy_limits_operations_and_collections(env: Env) -> None:
    rek = env.client(env.limited)
    assert sorted(rek.list_collections()["CollectionIds"]) == ["team-a", "team-b"]  # "other" is hidden
    assert rek.detect_faces(Image=image(EXAMPLES / "obama.jpg"))["FaceDetails"]
    for call in (
        lambda: rek.delete_collection(CollectionId="team-a"),
        lambda: rek.search_faces_by_image(CollectionId="other", Image=image(EXAMPLES / "obama.jpg")),
    ):
        with pytest.raises(rek.exceptions.AccessDeniedException) as exc:
            call()
        assert "is not authorized to perform: rekognition:" in error_of(exc)[2]
    assert (
        rek.search_faces_by_image(CollectionId="team-a", Image=image(EXAMPLES / "obama.jpg"))["FaceMatches"]
        == []
    )


# --- several workers, keys, AWS CLI, audit -------------------------------------------------------------
def test_concurrent_searches_across_workers(env: Env) -> None:
    rek = env.client()
    rek.index_faces(CollectionId="team-b", Image=image(EXAMPLES / "obama.jpg"), ExternalImageId="obama")
    probes = [EXAMPLES / "obama2.jpg", EXAMPLES / "obama-480p.jpg", KNN / "test" / "obama1.jpg"] * 3

    def search(path: Path) -> float:
        return env.client().search_faces_by_image(CollectionId="team-b", Image=image(path))["FaceMatches"][0][
            "Similarity"
        ]

    with ThreadPoolExecutor(6) as pool:
        similarities = list(pool.map(search, probes))
    assert len(similarities) == len(probes) and min(similarities) >= 80


def test_revoked_key_stops_working_in_every_worker(env: Env) -> None:
    key = create_key(env.server.home, "--name", "short-lived")
    rek = env.client(key)
    for _ in range(4):
        rek.list_collections()
    revoked = json.loads(faceprint(env.server.home, "keys", "revoke", key.access_key_id, "--json").stdout)
    assert revoked == {"AccessKeyId": key.access_key_id, "UserName": "short-lived", "Status": "Revoked"}
    for _ in range(4):  # several calls: both workers must refuse it
        with pytest.raises(ClientError) as exc:
            env.client(key).list_collections()
        assert error_of(exc)[0] == "UnrecognizedClientException"
    listed = json.loads(faceprint(env.server.home, "keys", "list", "--json").stdout)["AccessKeys"]
    assert {k["AccessKeyId"]: k["Status"] for k in listed}[key.access_key_id] == "Revoked"
    assert env.admin.secret not in json.dumps(listed)


def test_aws_cli_against_the_server(env: Env) -> None:
    aws = Path(sys.executable).parent / "aws"
    cli_env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": env.admin.access_key_id,
        "AWS_SECRET_ACCESS_KEY": env.admin.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    out = subprocess.run(
        [
            str(aws),
            "rekognition",
            "search-faces-by-image",
            "--collection-id",
            "team-b",
            "--image-bytes",
            f"fileb://{EXAMPLES / 'obama2.jpg'}",
            "--endpoint-url",
            env.server.url,
            "--output",
            "json",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
    denied = subprocess.run(
        [str(aws), "rekognition", "list-collections", "--endpoint-url", env.server.url],
        env={**cli_env, "AWS_SECRET_ACCESS_KEY": "wrong"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert denied.returncode != 0 and "InvalidSignatureException" in denied.stderr


def test_audit_log_chain_covers_both_workers_and_detects_tampering(env: Env, tmp_path: Path) -> None:
    rek = env.client()
    response = rek.search_faces_by_image(
        CollectionId="team-b", Image=image(EXAMPLES / "obama2.jpg"), FaceMatchThreshold=90
    )
    request_id = response["ResponseMetadata"]["RequestId"]
    home = env.server.home
    out = json.loads(faceprint(home, "audit-log", "--verify", "--json").stdout)
    assert out["verification"]["ok"] and out["verification"]["rows"] == len(out["records"])
    rows = {r["request_id"]: r for r in out["records"] if r["request_id"]}
    mine = rows[request_id]
    assert (mine["operation"], mine["collection"], mine["threshold"], mine["matches"], mine["outcome"]) == (
        "SearchFacesByImage",
        "team-b",
        90.0,
        len(response["FaceMatches"]),
        "OK",
    )
    assert mine["key_id"] == env.admin.access_key_id
    operations = {r["operation"] for r in out["records"]}
    assert {
        "CreateAccessKey",
        "RevokeAccessKey",
        "IndexFaces",
        "DeleteFaces",
        "CompareFaces",
        "SearchFaces",
        "SearchUsersByImage",
        "DeleteCollection",
    } <= operations
    assert any(
        r["outcome"] == "AccessDeniedException" and r["key_id"] == env.limited.access_key_id
        for r in out["records"]
    )
    recent = json.loads(faceprint(home, "audit-log", "--since", "10m", "--json").stdout)["records"]
    assert request_id in {r["request_id"] for r in recent}
    assert faceprint(home, "audit-log", "--since", "2099-01-01", "--json").stdout.count('"seq"') == 0

    copy = tmp_path / "copy"
    (copy / "server").mkdir(parents=True)
    (copy / "server" / "audit.key").write_bytes((home / "server" / "audit.key").read_bytes())  # the HMAC key
    with (
        sqlite3.connect(home / "server" / "audit.sqlite") as src,
        sqlite3.connect(copy / "server" / "audit.sqlite") as dst,
    ):
        src.backup(dst)
        seq = dst.execute("SELECT seq FROM audit WHERE request_id = ?", (request_id,)).fetchone()[0]
        dst.executescript(f"DROP TRIGGER audit_no_update; UPDATE audit SET matches = 0 WHERE seq = {seq};")
    broken = faceprint(copy, "audit-log", "--verify", check=False)
    assert broken.returncode == 1 and f"chain BROKEN at row {seq}" in broken.stdout
    assert faceprint(home, "audit-log", "--verify", check=False).returncode == 0
