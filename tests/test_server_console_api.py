"""The REST endpoints the web console uses, against one real `faceprint serve` with real photos and a video.

Each endpoint: authenticated before it works, modeled errors on bad input, audited where it touches faces.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import DATA, EXAMPLES
from faceprint.errors import FaceprintError
from faceprint.server import sessions
from faceprint.server.keys import KeyStore
from faceprint.server.launcher import RunningServer, start_server

pytestmark = pytest.mark.slow
VIDEO = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("console-api-home")
    (home / "buckets" / "videos").mkdir(parents=True)
    shutil.copy(VIDEO, home / "buckets" / "videos" / "hamilton.mp4")
    with start_server(home) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> tuple[str, str]:
    key, secret = KeyStore(server.home).create("console-admin")
    return key.access_key_id, secret


@pytest.fixture(scope="module")
def bearer(server: RunningServer, admin: tuple[str, str]) -> dict[str, str]:
    resp = httpx.post(f"{server.url}/v1/sessions", auth=admin, timeout=30)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['SessionToken']}"}


@pytest.fixture(scope="module")
def people(server: RunningServer, bearer: dict[str, str]) -> str:
    """A collection with Obama, Biden, Lin-Manuel Miranda and Alex Lacamoire (one photo each)."""
    resp = httpx.post(f"{server.url}/v1/collections", json={"CollectionId": "people"}, headers=bearer)
    assert resp.status_code == 200, resp.text
    for name in ("obama.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png"):
        resp = httpx.post(
            f"{server.url}/v1/collections/people/faces",
            headers=bearer,
            files={"image": (name, (EXAMPLES / name).read_bytes())},
            data={"external_image_id": Path(name).stem, "max_faces": "1"},
            timeout=120,
        )
        assert resp.status_code == 200 and len(resp.json()["faces"]) == 1, resp.text
    return "people"


def audit(server: RunningServer, bearer: dict[str, str], **query: str) -> dict:
    resp = httpx.get(f"{server.url}/v1/audit-log", params=query, headers=bearer, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
    assert "www-authenticate" not in resp.headers
    return resp.json()["error"]["message"]


def test_sessions_basic_sigv4_bearer_expiry_and_revocation(
    server: RunningServer, admin: tuple[str, str]
) -> None:
    url = f"{server.url}/v1/sessions"
    before = time.time()
    out = httpx.post(url, auth=admin, timeout=30).json()
    assert before + 3500 < out["Expiration"] <= time.time() + 3601
    token = {"Authorization": f"Bearer {out['SessionToken']}"}
    assert httpx.get(f"{server.url}/v1/collections", headers=token).status_code == 200
    req = AWSRequest(method="POST", url=url, data=b"")
    SigV4Auth(Credentials(*admin), "rekognition", "us-east-1").add_auth(req)
    signed = httpx.post(url, headers=dict(req.headers.items()), timeout=30)
    assert signed.status_code == 200 and signed.json()["SessionToken"].startswith("fps1.")
    error(httpx.post(url, timeout=30), 401, "MissingAuthenticationTokenException")
    error(httpx.post(url, auth=(admin[0], "wrong"), timeout=30), 401, "UnrecognizedClientException")
    error(httpx.post(url, headers=token, timeout=30), 401, "MissingAuthenticationTokenException")
    forged = out["SessionToken"][:-3] + "AAA"
    error(httpx.get(f"{server.url}/v1/collections", headers={"Authorization": f"Bearer {forged}"}), 401,
          "UnrecognizedClientException")  # fmt: skip
    secret = KeyStore(server.home).derived_secret("session")
    expired = sessions.issue(secret, admin[0], 60, now=time.time() - 120).token
    message = error(
        httpx.get(f"{server.url}/v1/collections", headers={"Authorization": f"Bearer {expired}"}),
        401,
        "ExpiredTokenException",
    )
    assert "expired" in message
    key, key_secret = KeyStore(server.home).create("soon-revoked")
    short = httpx.post(url, auth=(key.access_key_id, key_secret), timeout=30).json()["SessionToken"]
    revoked = {"Authorization": f"Bearer {short}"}
    assert httpx.get(f"{server.url}/v1/collections", headers=revoked).status_code == 200
    KeyStore(server.home).revoke(key.access_key_id)
    error(httpx.get(f"{server.url}/v1/collections", headers=revoked), 401, "UnrecognizedClientException")
    created = audit(server, token, operation="CreateSession")["Records"]
    assert {r["key_id"] for r in created} >= {admin[0], key.access_key_id}


def test_collections_create_describe_delete(server: RunningServer, bearer: dict[str, str]) -> None:
    base = f"{server.url}/v1/collections"
    error(httpx.post(base, json={"CollectionId": "tmp"}), 401, "MissingAuthenticationTokenException")
    assert httpx.post(base, json={"CollectionId": "tmp"}, headers=bearer).status_code == 200
    error(
        httpx.post(base, json={"CollectionId": "tmp"}, headers=bearer), 409, "ResourceAlreadyExistsException"
    )
    error(
        httpx.post(base, json={"CollectionId": "no spaces"}, headers=bearer), 400, "InvalidParameterException"
    )
    error(httpx.post(base, content=b"{not json", headers=bearer), 400, "InvalidParameterException")
    described = httpx.get(f"{base}/tmp", headers=bearer).json()
    assert described["FaceCount"] == 0 and described["UserCount"] == 0 and described["FaceModelVersion"]
    assert described["ExpectedFalseMatchesPerSearch"] == 0
    assert 0 < described["DefaultFaceMatchThreshold"] <= 100
    assert httpx.delete(f"{base}/tmp", headers=bearer).status_code == 200
    error(httpx.get(f"{base}/tmp", headers=bearer), 404, "ResourceNotFoundException")
    error(httpx.delete(f"{base}/tmp", headers=bearer), 404, "ResourceNotFoundException")
    ops = [r["operation"] for r in audit(server, bearer, limit="5")["Records"]]
    assert "DeleteCollection" in ops and "CreateCollection" in ops


def test_describe_states_the_default_thresholds_meaning(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    described = httpx.get(f"{server.url}/v1/collections/{people}", headers=bearer).json()
    assert described["FaceCount"] == 4
    assert 0 < described["ExpectedFalseMatchesPerSearch"] <= described["TargetFalseMatchesPerSearch"] * 1.01


def test_faces_paged_with_dates_and_deleted(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    url = f"{server.url}/v1/collections/{people}/faces"
    first = httpx.get(url, params={"max_results": "3"}, headers=bearer).json()
    assert len(first["Faces"]) == 3 and first["NextToken"]
    assert all(
        time.time() - 3600 < f["IndexedAt"] <= time.time() and f["HasChip"] is False for f in first["Faces"]
    )
    rest = httpx.get(
        url, params={"max_results": "3", "next_token": first["NextToken"]}, headers=bearer
    ).json()
    names = {f["ExternalImageId"] for f in first["Faces"] + rest["Faces"]}
    assert names == {"obama", "biden", "lin-manuel-miranda", "alex-lacamoire"} and "NextToken" not in rest
    error(httpx.get(url, params={"max_results": "x"}, headers=bearer), 400, "InvalidParameterException")
    error(
        httpx.get(url, params={"next_token": "forged"}, headers=bearer),
        400,
        "InvalidPaginationTokenException",
    )
    error(
        httpx.request("DELETE", url, json={"FaceIds": "x"}, headers=bearer), 400, "InvalidParameterException"
    )
    photo = EXAMPLES / "obama2.jpg"
    added = httpx.post(
        url, headers=bearer, files={"image": (photo.name, photo.read_bytes())}, timeout=60
    ).json()
    face_id = added["faces"][0]["face_id"]
    gone = httpx.request("DELETE", url, json={"FaceIds": [face_id]}, headers=bearer).json()
    assert gone["DeletedFaces"] == [face_id]
    record = audit(server, bearer, operation="DeleteFaces")["Records"][0]
    assert record["detail"]["face_ids"] == [face_id]


def test_face_chips_kept_by_the_cli_are_served(server: RunningServer, bearer: dict[str, str]) -> None:
    env = {**os.environ, "FACEPRINT_HOME": str(server.home)}
    cli = [sys.executable, "-m", "faceprint"]
    subprocess.run([*cli, "collections", "create", "chips"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*cli, "index", "chips", str(EXAMPLES / "biden.jpg"), "--keep-chips"],
        env=env,
        check=True,
        capture_output=True,
    )
    faces = httpx.get(f"{server.url}/v1/collections/chips/faces", headers=bearer).json()["Faces"]
    assert faces[0]["HasChip"] is True
    url = f"{server.url}/v1/collections/chips/faces/{faces[0]['FaceId']}/chip"
    error(httpx.get(url), 401, "MissingAuthenticationTokenException")
    chip = httpx.get(url, headers=bearer)
    assert (
        chip.status_code == 200
        and chip.headers["content-type"] == "image/jpeg"
        and chip.content[:2] == b"\xff\xd8"
    )
    absent = url.replace(faces[0]["FaceId"], "00000000-0000-0000-0000-000000000000")
    error(httpx.get(absent, headers=bearer), 404, "ResourceNotFoundException")
    assert (
        audit(server, bearer, operation="GetFaceChip")["Records"][0]["detail"]["face_id"]
        == faces[0]["FaceId"]
    )


def test_users_create_associate_list_delete(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    base = f"{server.url}/v1/collections/{people}"
    assert httpx.post(f"{base}/users", json={"UserId": "barack"}, headers=bearer).status_code == 200
    error(
        httpx.post(f"{base}/users", json={"UserId": "bad id!"}, headers=bearer),
        400,
        "InvalidParameterException",
    )
    faces = httpx.get(f"{base}/faces", headers=bearer).json()["Faces"]
    obama = next(f["FaceId"] for f in faces if f["ExternalImageId"] == "obama")
    assoc = httpx.post(f"{base}/users/barack/faces", json={"FaceIds": [obama]}, headers=bearer).json()
    assert [a["FaceId"] for a in assoc["AssociatedFaces"]] == [obama]
    error(httpx.post(f"{base}/users/nobody/faces", json={"FaceIds": [obama]}, headers=bearer), 404,
          "ResourceNotFoundException")  # fmt: skip
    users = httpx.get(f"{base}/users", headers=bearer).json()["Users"]
    assert [u["UserId"] for u in users] == ["barack"]
    assert httpx.delete(f"{base}/users/barack", headers=bearer).status_code == 200
    assert httpx.get(f"{base}/users", headers=bearer).json()["Users"] == []
    ops = {r["operation"] for r in audit(server, bearer, limit="10")["Records"]}
    assert {"CreateUser", "AssociateFaces", "DeleteUser"} <= ops


def test_search_every_face_is_one_request_audited_per_face(
    server: RunningServer, admin: tuple[str, str], bearer: dict[str, str], people: str
) -> None:
    url = f"{server.url}/v1/collections/{people}/search-faces"
    photo = (EXAMPLES / "two_people.jpg").read_bytes()
    error(httpx.post(url, files={"image": ("p.jpg", photo)}), 401, "MissingAuthenticationTokenException")
    resp = httpx.post(url, files={"image": ("p.jpg", photo)}, data={"quality_filter": "AUTO"}, headers=bearer)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    request_id = resp.headers["x-request-id"]
    assert len(body["Faces"]) == 2 and all(f["Searched"] for f in body["Faces"])
    best = [f["FaceMatches"][0]["Face"]["ExternalImageId"] for f in body["Faces"]]
    assert sorted(best) == ["biden", "obama"]
    for face in body["Faces"]:
        assert {"Left", "Top", "Width", "Height"} <= set(face["BoundingBox"])
        assert all(m["EstimatedFalseMatchRate"] < 0.01 for m in face["FaceMatches"])
    assert body["FaceMatchThreshold"] > 0 and body["ExpectedFalseMatches"] <= 0.0101
    records = [
        r
        for r in audit(server, bearer, operation="SearchFacesByImage")["Records"]
        if r["request_id"] == request_id
    ]
    assert sorted(r["detail"]["face_number"] for r in records) == [1, 2]
    assert all(r["matches"] == 1 and r["threshold"] == body["FaceMatchThreshold"] for r in records)
    fields = {"quality_filter": "HIGH", "threshold": "99"}
    strict = httpx.post(url, files={"image": ("p.jpg", photo)}, data=fields, headers=bearer).json()
    assert strict["FaceMatchThreshold"] == 99
    for face in strict["Faces"]:
        assert face["Searched"] or face["Reasons"]
    error(httpx.post(url, files={"image": ("x.md", (DATA / "README.md").read_bytes())}, headers=bearer), 415,
          "InvalidImageFormatException")  # fmt: skip
    error(httpx.post(url, files={"image": ("p.jpg", photo)}, data={"threshold": "high"}, headers=bearer), 400,
          "InvalidParameterException")  # fmt: skip
    missing = f"{server.url}/v1/collections/absent/search-faces"
    error(
        httpx.post(missing, files={"image": ("p.jpg", photo)}, headers=bearer),
        404,
        "ResourceNotFoundException",
    )
    failed = audit(server, bearer, operation="SearchFacesByImage")["Records"][0]
    assert failed["outcome"] == "ResourceNotFoundException" and failed["collection"] == "absent"
    key, secret = KeyStore(server.home).create("lister", allow=("ListCollections",))
    denied = httpx.post(url, files={"image": ("p.jpg", photo)}, auth=(key.access_key_id, secret))
    assert "rekognition:SearchFacesByImage" in error(denied, 403, "AccessDeniedException")


def test_compare_two_photos(server: RunningServer, bearer: dict[str, str]) -> None:
    url = f"{server.url}/v1/compare"
    files = {"source": ("a.jpg", (EXAMPLES / "obama.jpg").read_bytes()),
             "target": ("b.jpg", (EXAMPLES / "two_people.jpg").read_bytes())}  # fmt: skip
    error(httpx.post(url, files=files), 401, "MissingAuthenticationTokenException")
    out = httpx.post(url, files=files, data={"threshold": "0"}, headers=bearer).json()
    scores = sorted(m["Similarity"] for m in out["FaceMatches"])
    assert len(scores) == 2 and scores[0] < out["DefaultSimilarityThreshold"] <= scores[1]
    assert out["DefaultFalseMatchRate"] == 1e-4 and out["SimilarityThreshold"] == 0
    error(
        httpx.post(url, files={"source": files["source"]}, headers=bearer), 400, "InvalidParameterException"
    )
    error(httpx.post(url, json={}, headers=bearer), 400, "InvalidParameterException")
    assert audit(server, bearer, operation="CompareFaces")["Records"][0]["matches"] == 2


def test_video_search_from_a_bucket_with_progress(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    url = f"{server.url}/v1/video-searches"
    video = {"S3Object": {"Bucket": "videos", "Name": "hamilton.mp4"}}
    error(
        httpx.post(url, json={"CollectionId": people, "Video": video}),
        401,
        "MissingAuthenticationTokenException",
    )
    missing = {"S3Object": {"Bucket": "videos", "Name": "absent.mp4"}}
    error(httpx.post(url, json={"CollectionId": people, "Video": missing}, headers=bearer), 400,
          "InvalidS3ObjectException")  # fmt: skip
    text = {"video": ("notes.txt", b"hello")}
    error(
        httpx.post(url, files=text, data={"collection_id": people}, headers=bearer),
        400,
        "InvalidParameterException",
    )
    error(httpx.post(url, json={"CollectionId": "absent", "Video": video}, headers=bearer), 404,
          "ResourceNotFoundException")  # fmt: skip
    assert not any((server.home / "buckets" / "console-uploads").glob("*"))  # refused uploads are not kept
    job = httpx.post(url, json={"CollectionId": people, "Video": video}, headers=bearer).json()["JobId"]
    deadline = time.monotonic() + 240
    while True:
        out = httpx.get(f"{url}/{job}", headers=bearer, timeout=30).json()
        assert 0 <= out["Progress"] <= 1
        if out["JobStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out["JobStatus"] == "SUCCEEDED", out
    matched = {m["Face"]["ExternalImageId"] for p in out["Persons"] for m in p["FaceMatches"]}
    assert {"lin-manuel-miranda", "alex-lacamoire"} <= matched
    error(httpx.get(f"{url}/no-such-job", headers=bearer), 404, "ResourceNotFoundException")
    assert audit(server, bearer, operation="StartFaceSearch")["Records"][0]["collection"] == people


def test_audit_log_filters_and_chain_status(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    everything = audit(server, bearer, limit="1000")
    assert everything["Verification"]["Ok"] is True
    assert everything["Verification"]["Rows"] == everything["Matched"] >= 5
    times = [r["time"] for r in everything["Records"]]
    assert times == sorted(times, reverse=True)  # newest first
    middle = sorted(times)[len(times) // 2]
    since = audit(server, bearer, since=middle, limit="1000")["Records"]
    until = audit(server, bearer, until=middle, limit="1000")["Records"]
    assert all(r["time"] >= middle for r in since) and all(r["time"] <= middle for r in until)
    assert len(since) + len(until) == len(times) + times.count(middle)
    only = audit(server, bearer, operation="IndexFaces,CreateCollection")["Records"]
    assert only and {r["operation"] for r in only} <= {"IndexFaces", "CreateCollection"}
    assert len(audit(server, bearer, limit="2")["Records"]) == 2
    error(httpx.get(f"{server.url}/v1/audit-log", params={"limit": "0"}, headers=bearer), 400,
          "InvalidParameterException")  # fmt: skip
    error(httpx.get(f"{server.url}/v1/audit-log"), 401, "MissingAuthenticationTokenException")
    key, secret = KeyStore(server.home).create("searcher", allow=("Search*",))
    denied = httpx.get(f"{server.url}/v1/audit-log", auth=(key.access_key_id, secret))
    assert "GetAuditLog" in error(denied, 403, "AccessDeniedException")


def test_calibration_curve_and_audit_report(
    server: RunningServer, bearer: dict[str, str], people: str
) -> None:
    curve = httpx.get(f"{server.url}/v1/collections/{people}/calibration", headers=bearer).json()
    points = curve["Points"]
    assert len(points) == 201 and points[0]["Similarity"] == 0 and points[-1]["Similarity"] == 100
    fmr = [p["FalseMatchRate"] for p in points]
    assert all(a >= b for a, b in itertools.pairwise(fmr)) and fmr[0] > 0.9 and fmr[-1] < 1e-6
    assert curve["FaceCount"] == 4 and curve["FaceModelVersion"] == curve["CalibrationModelVersion"]
    assert curve["DefaultCompareThreshold"] > curve["DefaultFaceMatchThreshold"]
    error(httpx.get(f"{server.url}/v1/collections/absent/calibration", headers=bearer), 404,
          "ResourceNotFoundException")  # fmt: skip
    error(httpx.get(f"{server.url}/v1/reports"), 401, "MissingAuthenticationTokenException")
    assert httpx.get(f"{server.url}/v1/reports", headers=bearer).json() == {"AuditReport": None}
    error(httpx.get(f"{server.url}/v1/reports/audit.html", headers=bearer), 404, "ResourceNotFoundException")
    (server.home / "reports").mkdir(exist_ok=True)
    (server.home / "reports" / "audit.html").write_text('<h1>faceprint audit</h1><img src="fig.png" alt="f">')
    shutil.copy(EXAMPLES / "alex-lacamoire.png", server.home / "reports" / "fig.png")
    listed = httpx.get(f"{server.url}/v1/reports", headers=bearer).json()["AuditReport"]
    assert listed["Url"] == "/v1/reports/audit.html"
    error(httpx.get(f"{server.url}/v1/reports/audit.html"), 401, "MissingAuthenticationTokenException")
    report = httpx.get(f"{server.url}/v1/reports/audit.html", headers=bearer)
    assert report.status_code == 200 and "faceprint audit" in report.text
    assert '<img src="data:image/png;base64,iVBOR' in report.text  # figures inlined: one self-contained page


def test_console_assets_are_local_and_framing_is_refused(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for asset, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        resp = httpx.get(f"{server.url}/console/{asset}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
        text = resp.text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace, not a fetch
        assert "http://" not in text and "https://" not in text
    assert json.loads(httpx.get(f"{server.url}/healthz").text)["status"] == "ok"


def test_credentials_are_checked_before_the_body_is_read(server: RunningServer) -> None:
    big = b"\0" * (25 * 1024 * 1024)  # over the 24 MiB body limit: read first, this would be a 400
    url = f"{server.url}/v1/video-searches"
    files = {"video": ("big.mp4", big)}
    error(httpx.post(url, files=files, timeout=60), 401, "MissingAuthenticationTokenException")
    forged = {"Authorization": "Bearer fps1.FPAKNOPE.9999999999.bad"}
    error(httpx.post(url, files=files, headers=forged, timeout=60), 401, "UnrecognizedClientException")


def test_session_tokens_are_signed_and_expire() -> None:
    secret, other = b"k" * 32, b"o" * 32
    session = sessions.issue(secret, "FPAKA", 60, now=1000.0)
    assert session.expiration == 1060 and session.token.startswith("fps1.FPAKA.1060.")
    assert sessions.verify(secret, session.token, now=1059.0).key_id == "FPAKA"
    with pytest.raises(sessions.ExpiredTokenError):
        sessions.verify(secret, session.token, now=1060.0)
    tampered = session.token.replace("FPAKA", "FPAKB")
    for bad in (tampered, session.token + "x", "fps1.FPAKA.x.y", "", "Basic abc"):
        with pytest.raises(FaceprintError) as info:
            sessions.verify(secret, bad, now=1000.0)
        assert info.value.code == "UnrecognizedClientException"
    with pytest.raises(FaceprintError):
        sessions.verify(other, session.token, now=1000.0)  # another server's master key
