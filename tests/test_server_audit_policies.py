"""Issue 11 items 3, 8 and 10 against a real `faceprint serve` driven by boto3: video job policies,
idempotency tokens, wire details checked against botocore's service model, tags, and the audit rows
every request leaves (refused and failed-authentication ones included)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image, ImageFilter

from conftest import DATA, EXAMPLES
from faceprint import scoring
from faceprint.server.launcher import RunningServer, start_server

pytestmark = pytest.mark.slow
CLIP = {"S3Object": {"Bucket": "data", "Name": "video/face_recognition_short_hamilton_clip.mp4"}}
MODEL = botocore.session.get_session().get_service_model("rekognition")


def faceprint(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEPRINT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "faceprint", *args], env=env, capture_output=True, text=True, timeout=120
    )


def conforms(shape: Any, value: Any, path: str = "") -> list[str]:
    """Where `value` breaks botocore's output shape (types, required members, lengths, enums)."""
    kind, meta, problems = shape.type_name, shape.metadata, []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: not a structure"]
        problems += [f"{path}.{m}: missing" for m in shape.required_members if m not in value]
        for name, item in value.items():
            if name in shape.members:
                problems += conforms(shape.members[name], item, f"{path}.{name}")
        return problems
    if kind in ("list", "map", "string"):
        if kind == "list" and not isinstance(value, list):
            return [f"{path}: not a list"]
        if len(value) < meta.get("min", 0) or len(value) > meta.get("max", len(value)):
            problems.append(f"{path}: length {len(value)} outside [{meta.get('min')}, {meta.get('max')}]")
        if kind == "list":
            for i, item in enumerate(value):
                problems += conforms(shape.member, item, f"{path}[{i}]")
        if kind == "string" and shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.enum}")
    return problems


def check_output(operation: str, response: dict[str, Any]) -> None:
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    assert conforms(MODEL.operation_model(operation).output_shape, body) == [], operation


class Env:
    def __init__(self, server: RunningServer, keys: dict[str, tuple[str, str]]) -> None:
        self.server, self.keys = server, keys

    def client(self, who: str = "admin", secret: str | None = None) -> Any:
        key_id, real = self.keys[who]
        return boto3.client(
            "rekognition",
            endpoint_url=self.server.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret or real,
        )

    def audit(self) -> list[dict[str, Any]]:
        out = faceprint(self.server.home, "audit-log", "--verify", "--json")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr
        return json.loads(out.stdout)["records"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("hardening-home")
    keys = {}
    for name, args in {
        "admin": [],
        "team-a": ["--allow", "*", "--collections", "teamA-*"],
        "team-a2": ["--allow", "*", "--collections", "teamA-*"],
    }.items():
        out = faceprint(home, "keys", "create", "--json", "--name", name, *args)
        key = json.loads(out.stdout)["AccessKey"]
        keys[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    server = start_server(home, "--workers", "1", "--bucket", f"data={DATA}")
    try:
        rek = Env(server, keys).client()
        for collection in ("teamA-1", "teamB-1"):
            rek.create_collection(CollectionId=collection)
            rek.index_faces(
                CollectionId=collection,
                Image={"Bytes": (EXAMPLES / "lin-manuel-miranda.png").read_bytes()},
                ExternalImageId=f"lin-in-{collection}",
            )
        yield Env(server, keys)
    finally:
        server.stop()


def wait_for(rek: Any, get: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 150
    while True:
        out = getattr(rek, get)(JobId=job_id)
        if out["JobStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


# --- item 3: video results follow the job's collection; tokens are per key and per parameter ------------
def test_video_results_follow_the_collection_policy_and_tokens_are_per_key(env: Env) -> None:
    admin, team_a, team_a2 = env.client(), env.client("team-a"), env.client("team-a2")
    search_b = admin.start_face_search(Video=CLIP, CollectionId="teamB-1", ClientRequestToken="tok-1")
    search_b = search_b["JobId"]
    detection = admin.start_face_detection(Video=CLIP, ClientRequestToken="tok-1")["JobId"]
    for get, job_id in (("get_face_search", search_b), ("get_face_detection", detection)):
        with pytest.raises(team_a.exceptions.AccessDeniedException):  # teamB-1's matches, admin's job
            getattr(team_a, get)(JobId=job_id)
    with pytest.raises(team_a.exceptions.AccessDeniedException):
        team_a.start_face_search(Video=CLIP, CollectionId="teamB-1")

    # the same token from another key is another request: its own job, not the admin's
    mine = team_a.start_face_detection(Video=CLIP, ClientRequestToken="tok-1")["JobId"]
    assert mine != detection
    assert team_a.start_face_detection(Video=CLIP, ClientRequestToken="tok-1")["JobId"] == mine
    with pytest.raises(team_a.exceptions.IdempotentParameterMismatchException):
        team_a.start_face_detection(Video=CLIP, ClientRequestToken="tok-1", JobTag="changed")
    with pytest.raises(admin.exceptions.IdempotentParameterMismatchException):
        admin.start_face_search(Video=CLIP, CollectionId="teamA-1", ClientRequestToken="tok-1")
    result = wait_for(team_a, "get_face_detection", mine)
    assert result["JobStatus"] == "SUCCEEDED" and result["Faces"]
    check_output("GetFaceDetection", result)
    with pytest.raises(team_a2.exceptions.AccessDeniedException):  # another teamA key: not its job
        team_a2.get_face_detection(JobId=mine)
    found = wait_for(admin, "get_face_search", search_b)
    assert {m["Face"]["ExternalImageId"] for p in found["Persons"] for m in p["FaceMatches"]} == {
        "lin-in-teamB-1"
    }

    for call, params in (
        ("create_user", {}),
        ("associate_faces", {"FaceIds": ["00000000-0000-0000-0000-000000000000"]}),
        ("disassociate_faces", {"FaceIds": ["00000000-0000-0000-0000-000000000000"]}),
        ("delete_user", {}),
    ):
        token = f"{call.replace('_', '-')}-token"
        getattr(admin, call)(CollectionId="teamA-1", UserId="u1", ClientRequestToken=token, **params)
        with pytest.raises(admin.exceptions.IdempotentParameterMismatchException):  # another collection
            getattr(admin, call)(CollectionId="teamB-1", UserId="u1", ClientRequestToken=token, **params)


# --- item 8: wire details ------------------------------------------------------------------------------
def test_wire_details_match_the_service_model(env: Env, tmp_path: Path) -> None:
    rek = env.client()
    deleted = rek.delete_faces(CollectionId="teamA-1", FaceIds=["00000000-0000-0000-0000-000000000000"])
    assert "DeletedFaces" not in deleted and deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == [
        "FACE_NOT_FOUND"
    ]
    check_output("DeleteFaces", deleted)

    jpeg = {"S3Object": {"Bucket": "data", "Name": str((EXAMPLES / "obama.jpg").relative_to(DATA))}}
    with pytest.raises(rek.exceptions.InvalidParameterException) as exc:
        rek.start_face_detection(Video=jpeg)
    assert "not an MP4, MOV, MKV or WebM video" in exc.value.response["Error"]["Message"]

    buf = io.BytesIO()
    Image.open(EXAMPLES / "obama.jpg").filter(ImageFilter.GaussianBlur(6)).save(buf, "JPEG")
    blurred = {"Bytes": buf.getvalue()}
    with pytest.raises(rek.exceptions.InvalidParameterException) as exc:
        rek.compare_faces(SourceImage=blurred, TargetImage=blurred, QualityFilter="HIGH")
    message = exc.value.response["Error"]["Message"]
    assert "QualityFilter HIGH" in message and "LOW_SHARPNESS" in message
    check_output("CompareFaces", rek.compare_faces(SourceImage=blurred, TargetImage=blurred))


def test_tags_on_collection_arns_with_policy_and_audit(env: Env) -> None:
    rek, team_a = env.client(), env.client("team-a")
    arn_a = rek.describe_collection(CollectionId="teamA-1")["CollectionARN"]
    arn_b = rek.describe_collection(CollectionId="teamB-1")["CollectionARN"]
    check_output("TagResource", team_a.tag_resource(ResourceArn=arn_a, Tags={"team": "a", "tier": "gold"}))
    check_output("UntagResource", team_a.untag_resource(ResourceArn=arn_a, TagKeys=["tier", "absent"]))
    listed = team_a.list_tags_for_resource(ResourceArn=arn_a)
    assert listed["Tags"] == {"team": "a"}
    check_output("ListTagsForResource", listed)
    for call in (
        lambda: team_a.tag_resource(ResourceArn=arn_b, Tags={"x": "y"}),
        lambda: team_a.list_tags_for_resource(ResourceArn=arn_b),
    ):
        with pytest.raises(team_a.exceptions.AccessDeniedException):
            call()
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.list_tags_for_resource(ResourceArn=arn_a.replace("teamA-1", "nope"))
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.list_tags_for_resource(ResourceArn="arn:aws:rekognition:us-east-1:000000000000:project/x")
    with pytest.raises(rek.exceptions.ServiceQuotaExceededException):
        rek.tag_resource(ResourceArn=arn_b, Tags={f"k{i}": "v" for i in range(51)})
    rows = [r for r in env.audit() if "tag" in r["operation"].lower()]
    assert {(r["operation"], r["collection"], r["outcome"]) for r in rows} >= {
        ("TagResource", "teamA-1", "OK"),
        ("UntagResource", "teamA-1", "OK"),
        ("ListTagsForResource", "teamA-1", "OK"),
        ("TagResource", "teamB-1", "AccessDeniedException"),
        ("TagResource", "teamB-1", "ServiceQuotaExceededException"),
    }


# --- item 10: every request leaves one row: who, from where, what, which collection, outcome ------------
def test_every_request_is_audited_with_its_client_and_outcome(env: Env) -> None:
    rek = env.client()
    face = {"Bytes": (EXAMPLES / "obama.jpg").read_bytes()}
    calls = {
        "ListFaces": rek.list_faces(CollectionId="teamA-1"),
        "DescribeCollection": rek.describe_collection(CollectionId="teamA-1"),
        "ListCollections": rek.list_collections(),
        "ListUsers": rek.list_users(CollectionId="teamA-1"),
        "DetectFaces": rek.detect_faces(Image=face),
        "SearchFacesByImage": rek.search_faces_by_image(CollectionId="teamA-1", Image=face),
    }
    failed = 0
    for secret in ("x" * 40, "y" * 40, None):
        client = env.client("team-a", secret)
        with pytest.raises(ClientError):
            client.describe_collection(CollectionId="teamB-1" if secret is None else "teamA-1")
        failed += secret is not None
    unsigned = httpx.get(env.server.url + "/v1/collections", timeout=30)  # REST, no credentials
    assert unsigned.status_code == 401
    rows = env.audit()
    by_request = {r["request_id"]: r for r in rows if r["request_id"]}
    for operation, response in calls.items():
        row = by_request[response["ResponseMetadata"]["RequestId"]]
        assert (row["operation"], row["key_id"], row["client"], row["outcome"]) == (
            operation,
            env.keys["admin"][0],
            "127.0.0.1",
            "OK",
        )
    search = by_request[calls["SearchFacesByImage"]["ResponseMetadata"]["RequestId"]]
    size = calls["DescribeCollection"]["FaceCount"]
    used = scoring.default_scorer().default_search_threshold(size)  # the calibrated default for its size
    assert search["collection"] == "teamA-1" and search["matches"] == 0
    assert search["threshold"] == pytest.approx(used)
    assert json.loads(search["detail"]) == {"face_ids": [], "threshold": "default", "via": "aws"}
    assert by_request[calls["ListCollections"]["ResponseMetadata"]["RequestId"]]["matches"] == 2
    refused = [r for r in rows if r["key_id"] == env.keys["team-a"][0] and r["outcome"] != "OK"]
    outcomes = [r["outcome"] for r in refused if r["operation"] == "DescribeCollection"]
    assert outcomes.count("InvalidSignatureException") == failed and "AccessDeniedException" in outcomes
    assert all(r["client"] == "127.0.0.1" for r in refused)
    assert rows[-1]["operation"] == "GET /v1/collections"
    assert rows[-1]["outcome"] == "MissingAuthenticationTokenException"
    assert {"StartFaceDetection", "GetFaceDetection", "StartFaceSearch", "GetFaceSearch"} <= {
        r["operation"] for r in rows
    }
