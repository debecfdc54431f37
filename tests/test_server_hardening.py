"""Issue 11's attacks on a real `faceprint serve`, by boto3, botocore-signed raw requests and raw sockets.

The signature must bind the operation; connections without a key must not fill the server; browsers on
other sites cannot write; only an explicit value turns authentication off; files holding faces are the
owner's; malformed JSON gets a modeled 400; MPO photos decode.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
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
from PIL import Image

from conftest import DATA, KNN
from faceprint.server.launcher import RunningServer, free_port, start_server

pytestmark = pytest.mark.slow
TRAIN = KNN / "train"
VIDEO = DATA / "video"
TIMEOUT = 3  # the body and header deadlines of the test server, in seconds
BUDGET = 4 * 1024 * 1024  # its unauthenticated-body budget
Key = tuple[str, str]


def create_key(home: Path, *args: str) -> Key:
    out = subprocess.run(
        [sys.executable, "-m", "faceprint", "keys", "create", "--json", *args],
        env={**os.environ, "FACEPRINT_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(out.stdout)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bucket holding the first 64 KB of a real MP4 (its moov atom is missing: FFmpeg cannot open it)."""
    folder = tmp_path_factory.mktemp("videos")
    data = (VIDEO / "face_recognition_short_hamilton_clip.mp4").read_bytes()[:65536]
    (folder / "cut.mp4").write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def old_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Key]:
    """A home with a key, made readable by everyone (as an older faceprint left it)."""
    home = tmp_path_factory.mktemp("hardening-home")
    key = create_key(home, "--name", "admin")
    for folder in (home, home / "server"):
        folder.chmod(0o755)
    for name in ("keys.json", "master.key"):
        (home / "server" / name).chmod(0o644)
    return home, key


@pytest.fixture(scope="module")
def server(old_home: tuple[Path, Key], videos: Path) -> Iterator[RunningServer]:
    env = {
        "FACEPRINT_SERVER_BODY_TIMEOUT": str(TIMEOUT),
        "FACEPRINT_SERVER_HEADER_TIMEOUT": str(TIMEOUT),
        "FACEPRINT_SERVER_MAX_BODY": str(2 * 1024 * 1024),
        "FACEPRINT_SERVER_MAX_UNAUTHENTICATED_BYTES": str(BUDGET),
        "FACEPRINT_ALLOWED_ORIGINS": "https://console.example",
    }
    with start_server(old_home[0], "--bucket", f"vids={videos}", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer, old_home: tuple[Path, Key]) -> Key:
    return old_home[1]


def client(server: RunningServer, key: Key) -> object:
    return boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def signed(server: RunningServer, key: Key, body: bytes, **headers: str) -> dict[str, str]:
    """Headers botocore's own SigV4 signer produces for POST / carrying exactly `headers`."""
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(*key), "rekognition", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def call(server: RunningServer, key: Key, target: str, body: bytes) -> httpx.Response:
    headers = {"X-Amz-Target": f"RekognitionService.{target}", "Content-Type": "application/x-amz-json-1.1"}
    return httpx.post(
        server.url + "/", content=body, headers=signed(server, key, body, **headers), timeout=30
    )


# --- item 1: the signature binds the operation -----------------------------------------------------------
def test_headers_added_after_signing_are_refused(server: RunningServer, admin: Key) -> None:
    rek = client(server, admin)
    rek.create_collection(CollectionId="bound")
    body = json.dumps({"CollectionId": "bound"}).encode()
    unsigned_target = signed(server, admin, body)  # SignedHeaders=host;x-amz-date only
    unsigned_target |= {
        "X-Amz-Target": "RekognitionService.DeleteCollection",
        "Content-Type": "application/x-amz-json-1.1",
    }
    resp = httpx.post(server.url + "/", content=body, headers=unsigned_target, timeout=30)
    assert resp.status_code == 400 and resp.json()["__type"] == "InvalidSignatureException", resp.text
    assert "x-amz-target" in resp.json()["Message"]

    target_only = signed(server, admin, body, **{"X-Amz-Target": "RekognitionService.DeleteCollection"})
    target_only["Content-Type"] = "application/x-amz-json-1.1"
    resp = httpx.post(server.url + "/", content=body, headers=target_only, timeout=30)
    assert resp.status_code == 400 and resp.json()["__type"] == "InvalidSignatureException", resp.text
    assert rek.describe_collection(CollectionId="bound")["FaceCount"] == 0  # still there


# --- item 2: slow clients without a key ------------------------------------------------------------------
def slow_connection(server: RunningServer, length: int = 1000, body: bytes = b"{") -> socket.socket:
    """Request headers of an unsigned POST / announcing `length` bytes, then only `body`."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: RekognitionService.ListCollections\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n%s" % (length, body)
    )
    return sock


def response_of(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_64_slow_connections_do_not_block_signed_requests(server: RunningServer, admin: Key) -> None:
    slow = [slow_connection(server) for _ in range(64)]
    try:
        time.sleep(0.5)
        rek = client(server, admin)
        for _ in range(5):
            assert "CollectionIds" in rek.list_collections()
        started = time.monotonic()
        answer = response_of(slow[0])  # the body deadline ends them with a modeled error
        assert time.monotonic() - started < TIMEOUT + 3
        assert b" 408 " in answer.split(b"\r\n")[0] and b"RequestTimeoutException" in answer, answer
    finally:
        for sock in slow:
            sock.close()


def test_slow_headers_are_cut_off(server: RunningServer) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT + 5)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    started = time.monotonic()
    assert sock.recv(100) == b""  # closed by the server (a socket timeout would raise instead)
    assert time.monotonic() - started < TIMEOUT + 2
    sock.close()


def test_unauthenticated_bodies_have_a_memory_budget(server: RunningServer, admin: Key) -> None:
    mib = 1024 * 1024
    held = [slow_connection(server, mib) for _ in range(BUDGET // mib - 1)]  # 3 of the 4 MiB
    try:
        time.sleep(0.5)
        refused = slow_connection(server, 2 * mib)  # within the body limit, beyond what is left
        answer = response_of(refused)
        assert b" 503 " in answer.split(b"\r\n")[0] and b'"ThrottlingException"' in answer, answer
        refused.close()
        assert "CollectionIds" in client(server, admin).list_collections()  # signed: within the budget
    finally:
        for sock in held:
            sock.close()


# --- item 4: cross-origin writes -------------------------------------------------------------------------
def test_cross_origin_writes_are_refused_and_cors_stays_closed(server: RunningServer, admin: Key) -> None:
    client(server, admin).create_collection(CollectionId="web")
    photo = (TRAIN / "obama" / "obama.jpg").read_bytes()
    url = f"{server.url}/v1/collections/web/faces"
    files = {"image": ("obama.jpg", photo, "image/jpeg")}
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        resp = httpx.post(url, files=files, auth=admin, headers=headers, timeout=30)
        assert resp.status_code == 403, (headers, resp.text)
        assert resp.json()["error"]["code"] == "AccessDeniedException"
    body = json.dumps({"CollectionId": "web"}).encode()
    aws = signed(server, admin, body, **{"X-Amz-Target": "RekognitionService.DeleteCollection"})
    resp = httpx.post(server.url + "/", content=body, headers={**aws, "Origin": "http://evil.example"})
    assert resp.status_code == 403 and resp.json()["__type"] == "AccessDeniedException"

    own, listed = server.url, "https://console.example"
    for origin in (own, listed):
        resp = httpx.post(url, files=files, auth=admin, headers={"Origin": origin}, timeout=30)
        assert resp.status_code == 200, resp.text
    read = httpx.get(f"{server.url}/v1/collections", auth=admin, headers={"Origin": "http://evil.example"})
    assert read.status_code == 200
    assert not [h for h in read.headers if h.lower().startswith("access-control-")]
    anonymous = httpx.post(url, files=files, timeout=30)
    assert anonymous.status_code == 401 and "www-authenticate" not in anonymous.headers


# --- item 5: the off switch, file modes, paths -----------------------------------------------------------
def test_only_an_explicit_value_turns_authentication_off(tmp_path: Path) -> None:
    """`uvicorn faceprint.server.app:create_app --factory` with FACEPRINT_AUTH='0 ' keeps auth on."""
    port = free_port()
    env = {**os.environ, "FACEPRINT_HOME": str(tmp_path), "FACEPRINT_AUTH": "0 "}
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "faceprint.server.app:create_app",
        "--factory",
        "--port",
        str(port),
    ]
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.2)
        assert health.json()["auth"] is True
        headers = {"X-Amz-Target": "RekognitionService.ListCollections"}
        resp = httpx.post(url + "/", content=b"{}", headers=headers, timeout=10)
        assert resp.json()["__type"] == "MissingAuthenticationTokenException"
        assert "authentication stays ON" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_holding_faces_are_private_and_video_errors_hide_paths(
    server: RunningServer, admin: Key, videos: Path
) -> None:
    rek = client(server, admin)
    rek.create_collection(CollectionId="modes")
    photo = {"Bytes": (TRAIN / "biden" / "biden.jpg").read_bytes()}
    rek.index_faces(CollectionId="modes", Image=photo, MaxFaces=1)
    try:  # refused at once, or failed by the worker: either way without a server path
        job = rek.start_face_detection(Video={"S3Object": {"Bucket": "vids", "Name": "cut.mp4"}})["JobId"]
        deadline = time.monotonic() + 60
        while (result := rek.get_face_detection(JobId=job))["JobStatus"] == "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert result["JobStatus"] == "FAILED"
        message = result["StatusMessage"]
    except ClientError as exc:
        message = exc.response["Error"]["Message"]
    assert str(videos) not in message and "cut.mp4" in message, message

    home = server.home
    folders = [home, home / "collections", home / "video", home / "server"]
    files = [
        home / "collections" / "faceprint.db",
        home / "video" / "jobs.db",
        home / "server" / "audit.sqlite",
        home / "server" / "keys.json",
        home / "server" / "master.key",
    ]
    files += [p for p in home.glob("*/*") if p.name.endswith(("-wal", "-shm", ".index"))]
    assert {str(p): oct(mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}


# --- item 6: malformed JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("ListCollections", b'{"MaxResults": NaN}'),
        ("ListCollections", b'{"MaxResults": Infinity}'),
        ("ListCollections", b'{"MaxResults": -Infinity}'),
        ("ListCollections", b'{"MaxResults": 1e309}'),
        ("ListCollections", b'{"MaxResults": ' + b"9" * 5000 + b"}"),
        ("ListCollections", b'{"A": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
        ("SearchFaces", b'{"CollectionId": "\\ud800", "FaceId": "0b5b4ba5-0c54-4fa8-9df3-2c6e7d6b6c1a"}'),
        ("DetectFaces", b'{"Image": {"S3Object": {"Bucket": "vids", "Name": "a\\u0000b.jpg"}}}'),
    ],
)
def test_malformed_json_gets_a_modeled_400(
    server: RunningServer, admin: Key, target: str, body: bytes
) -> None:
    resp = call(server, admin, target, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["__type"] in {"SerializationException", "InvalidParameterException"}


# --- item 9: MPO -----------------------------------------------------------------------------------------
def test_mpo_photos_decode_their_first_picture(server: RunningServer, admin: Key) -> None:
    """An MPO (as phone cameras write) of Obama then Biden: its face is Obama's."""
    first = Image.open(TRAIN / "obama" / "obama.jpg").convert("RGB")
    second = Image.open(TRAIN / "biden" / "biden.jpg").convert("RGB")
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[second])
    mpo = buf.getvalue()
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    rek = client(server, admin)
    assert len(rek.detect_faces(Image={"Bytes": mpo})["FaceDetails"]) == 1
    obama2 = {"Bytes": (TRAIN / "obama" / "obama2.jpg").read_bytes()}
    biden2 = {"Bytes": (TRAIN / "biden" / "biden2.jpg").read_bytes()}
    assert rek.compare_faces(SourceImage={"Bytes": mpo}, TargetImage=obama2)["FaceMatches"]
    assert not rek.compare_faces(SourceImage={"Bytes": mpo}, TargetImage=biden2)["FaceMatches"]
