"""The REST API, OpenAPI docs, /healthz and Prometheus /metrics of one real `faceprint serve` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import CROWD, DATA, EXAMPLES, KNN
from faceprint.server.launcher import RunningServer, start_server

pytestmark = pytest.mark.slow


def create_key(home: Path, *args: str) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "faceprint", "keys", "create", "--json", *args],
        env={**os.environ, "FACEPRINT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(out.stdout)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("rest-home")
    with start_server(home, env={"FACEPRINT_SERVER_MAX_INFLIGHT": "3"}) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> tuple[str, str]:
    key = create_key(server.home, "--name", "rest-admin")
    rek = boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="eu-central-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )
    rek.create_collection(CollectionId="rest")
    return key


def upload(path: Path, **fields: str) -> dict:
    return {"files": {"image": (path.name, path.read_bytes(), "image/jpeg")}, "data": fields}


def test_index_and_search_with_multipart_and_basic_auth(
    server: RunningServer, admin: tuple[str, str]
) -> None:
    for person in ("obama", "biden"):
        photo = KNN / "train" / person / f"{person}.jpg"
        resp = httpx.post(
            f"{server.url}/v1/collections/rest/faces",
            auth=admin,
            timeout=60,
            **upload(photo, external_image_id=person, max_faces="1"),
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["faces"]) == 1 and body["faces"][0]["external_image_id"] == person
        assert set(body["faces"][0]["bounding_box"]) == {"left", "top", "width", "height"}
    resp = httpx.post(
        f"{server.url}/v1/collections/rest/search",
        auth=admin,
        timeout=60,
        **upload(KNN / "test" / "obama1.jpg", threshold="80"),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert resp.headers["x-request-id"] == body["request_id"]
    assert [m["external_image_id"] for m in body["matches"]] == ["obama"]
    assert body["matches"][0]["similarity"] >= 80 and body["searched_face"]["confidence"] > 50
    assert body["threshold"] == 80 and body["expected_false_matches"] > 0
    assert 0 < body["matches"][0]["estimated_false_match_rate"] < 0.01
    listed = httpx.get(f"{server.url}/v1/collections", auth=admin, timeout=30).json()
    assert listed["collections"] == ["rest"]


def test_search_with_a_raw_body_signed_by_botocore(server: RunningServer, admin: tuple[str, str]) -> None:
    url = f"{server.url}/v1/collections/rest/search?threshold=70"
    data = (KNN / "train" / "biden" / "biden2.jpg").read_bytes()
    req = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "image/jpeg"})
    SigV4Auth(Credentials(*admin), "rekognition", "us-east-1").add_auth(req)
    resp = httpx.post(url, content=data, headers=dict(req.headers.items()), timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["matches"][0]["external_image_id"] == "biden"


def test_rest_errors_use_http_status_codes(server: RunningServer, admin: tuple[str, str]) -> None:
    photo = EXAMPLES / "obama.jpg"
    anonymous = httpx.post(f"{server.url}/v1/collections/rest/search", timeout=30, **upload(photo))
    assert anonymous.status_code == 401 and "www-authenticate" not in anonymous.headers  # no browser prompt
    wrong = httpx.post(
        f"{server.url}/v1/collections/rest/search", auth=(admin[0], "nope"), timeout=30, **upload(photo)
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UnrecognizedClientException"
    missing = httpx.post(
        f"{server.url}/v1/collections/absent/search", auth=admin, timeout=30, **upload(photo)
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFoundException"
    garbage = httpx.post(
        f"{server.url}/v1/collections/rest/search",
        auth=admin,
        timeout=30,
        files={"image": ("README.md", (DATA / "README.md").read_bytes(), "text/plain")},
    )
    assert garbage.status_code == 415
    bad = httpx.post(
        f"{server.url}/v1/collections/rest/search", auth=admin, timeout=30, **upload(photo, threshold="high")
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidParameterException"
    reader = create_key(server.home, "--name", "reader", "--allow", "ListCollections")
    denied = httpx.post(f"{server.url}/v1/collections/rest/search", auth=reader, timeout=30, **upload(photo))
    assert denied.status_code == 403 and "rekognition:SearchFacesByImage" in denied.json()["error"]["message"]


def test_openapi_and_docs_describe_the_rest_api(server: RunningServer) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    search = spec["paths"]["/v1/collections/{collection_id}/search"]["post"]
    assert "image" in search["requestBody"]["content"]["multipart/form-data"]["schema"]["required"]
    docs = httpx.get(f"{server.url}/docs", timeout=10)
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "/v1/collections/{collection_id}/search" in docs.text and "/openapi.json" in docs.text


def test_metrics_count_requests_latency_and_indexed_faces(
    server: RunningServer, admin: tuple[str, str]
) -> None:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    assert metrics['faceprint_requests_total{api="rest",operation="SearchFacesByImage",code="OK"}'] >= 2
    assert (
        metrics[
            'faceprint_requests_total{api="rest",operation="SearchFacesByImage",code="ResourceNotFoundException"}'
        ]
        == 1
    )
    assert metrics['faceprint_requests_total{api="aws",operation="CreateCollection",code="OK"}'] == 1
    assert metrics["faceprint_faces_indexed_total"] == 2
    count = metrics['faceprint_request_duration_seconds_count{operation="SearchFacesByImage"}']
    assert (
        metrics['faceprint_request_duration_seconds_bucket{operation="SearchFacesByImage",le="+Inf"}']
        == count
    )
    assert metrics['faceprint_request_duration_seconds_sum{operation="SearchFacesByImage"}'] > 0


def test_heavy_requests_do_not_block_the_event_loop(server: RunningServer, admin: tuple[str, str]) -> None:
    rek = boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=admin[0],
        aws_secret_access_key=admin[1],
    )
    crowd = {"Bytes": (CROWD / "tinyfaces_worlds_largest_selfie.jpg").read_bytes()}
    start = time.perf_counter()
    rek.detect_faces(Image=crowd)
    alone = time.perf_counter() - start
    threads = [threading.Thread(target=rek.detect_faces, kwargs={"Image": crowd}) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(min(0.3, alone / 4))
    latencies = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert httpx.get(f"{server.url}/healthz", timeout=30).json()["status"] == "ok"
        latencies.append(time.perf_counter() - t0)
    busy = any(t.is_alive() for t in threads)
    for t in threads:
        t.join()
    assert busy, "the detections finished too soon to test anything"
    assert max(latencies) < max(0.5, alone / 4), (latencies, alone)


def test_overload_answers_throttling_exception(server: RunningServer, admin: tuple[str, str]) -> None:
    rek = boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=admin[0],
        aws_secret_access_key=admin[1],
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    photo = {"Bytes": (CROWD / "retinaface_test_crowd.jpg").read_bytes()}  # about a second of work
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def detect() -> None:
        barrier.wait()
        try:
            rek.detect_faces(Image=photo)
            outcomes.append("OK")
        except ClientError as exc:
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            outcomes.append(f"{exc.response['Error']['Code']}/{status}")

    threads = [threading.Thread(target=detect) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("OK") >= 3 and "ThrottlingException/503" in outcomes, outcomes
    assert set(outcomes) <= {"OK", "ThrottlingException/503"}


def test_web_page_is_served_at_the_root(server: RunningServer) -> None:
    """GET / is the web page (POST / stays the Rekognition endpoint); it drives the REST API above."""
    resp = httpx.get(f"{server.url}/", timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    page = resp.text + httpx.get(f"{server.url}/console/console.js", timeout=30).text
    for needle in (
        'id="search-form"',
        'id="index-form"',
        "/v1/collections",
        "/v1/sessions",
        "sessionStorage",
    ):
        assert needle in page, needle
