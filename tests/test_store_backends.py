"""The collections Store contract on both backends (SQLite, and a real PostgreSQL 15 started for the
session), durability under kill -9, two nodes sharing one database, and PostgreSQL going down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import EXAMPLES, KNN, LFW, once_back
from faceprint.collections.service import Collections
from faceprint.errors import IdempotentParameterMismatchError, InternalServerError
from faceprint.postgres import StorageUnavailableError, upgrade_all

OBAMA = KNN / "train" / "obama"
BIDEN = KNN / "train" / "biden"


def fresh_database(postgres: object) -> str:
    url = postgres.create_database(f"t{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    upgrade_all(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None for the embedded SQLite store, else the URL of a fresh, upgraded PostgreSQL database."""
    if request.param == "sqlite":
        monkeypatch.delenv("FACEPRINT_DATABASE_URL", raising=False)
        return None
    url = fresh_database(request.getfixturevalue("postgres"))
    monkeypatch.setenv("FACEPRINT_DATABASE_URL", url)
    return url


def _images(folder: Path, n: int) -> list[Path]:
    return sorted(folder.glob("*.jpg"))[:n]


def test_store_contract(backend: str | None, tmp_path: Path) -> None:
    """Collections, faces, users, associations, tokens and pagination behave the same on both stores."""
    with Collections(home=tmp_path / "a") as svc:
        svc.create_collection(CollectionId="c", Tags={"team": "x"})
        faces = []
        for path in _images(OBAMA, 2) + _images(BIDEN, 1):
            resp = svc.index_faces(CollectionId="c", Image=str(path), ExternalImageId=path.stem, MaxFaces=1)
            faces.append(resp["FaceRecords"][0]["Face"]["FaceId"])
        again = svc.index_faces(
            CollectionId="c", Image=str(_images(OBAMA, 1)[0]), ExternalImageId=_images(OBAMA, 1)[0].stem
        )
        assert [r["Face"]["FaceId"] for r in again["FaceRecords"]] == [faces[0]]  # stored once
        assert svc.describe_collection(CollectionId="c")["FaceCount"] == 3
        page = svc.list_faces(CollectionId="c", MaxResults=2)
        rest = svc.list_faces(CollectionId="c", NextToken=page["NextToken"])
        assert [f["FaceId"] for f in page["Faces"] + rest["Faces"]] == faces

        found = svc.search_faces_by_image(CollectionId="c", Image=str(sorted(OBAMA.glob("*.jpg"))[-1]))
        assert found["FaceMatches"][0]["Face"]["FaceId"] in faces[:2]

        svc.create_user(CollectionId="c", UserId="obama", ClientRequestToken="t1")
        svc.create_user(CollectionId="c", UserId="obama", ClientRequestToken="t1")  # replayed, no conflict
        assoc = svc.associate_faces(
            CollectionId="c",
            UserId="obama",
            FaceIds=[*faces, "00000000-0000-4000-8000-000000000000"],
            ClientRequestToken="t2",
        )
        assert [f["FaceId"] for f in assoc["AssociatedFaces"]] == faces[:2]
        reasons = {f["FaceId"]: f["Reasons"] for f in assoc["UnsuccessfulFaceAssociations"]}
        assert reasons == {
            faces[2]: ["LOW_MATCH_CONFIDENCE"],
            "00000000-0000-4000-8000-000000000000": ["FACE_NOT_FOUND"],
        }
        assert assoc["UserStatus"] == "ACTIVE"
        replay = svc.associate_faces(
            CollectionId="c",
            UserId="obama",
            FaceIds=[*faces, "00000000-0000-4000-8000-000000000000"],
            ClientRequestToken="t2",
        )
        assert replay == assoc
        with pytest.raises(IdempotentParameterMismatchError):
            svc.associate_faces(CollectionId="c", UserId="obama", FaceIds=faces[:1], ClientRequestToken="t2")
        refused = svc.delete_faces(CollectionId="c", FaceIds=[faces[0], faces[2]])
        assert refused["DeletedFaces"] == [faces[2]]
        assert refused["UnsuccessfulFaceDeletions"] == [
            {"FaceId": faces[0], "UserId": "obama", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
        ]
        users = svc.search_users_by_image(CollectionId="c", Image=str(sorted(OBAMA.glob("*.jpg"))[-1]))
        assert users["UserMatches"][0]["User"] == {"UserId": "obama", "UserStatus": "ACTIVE"}
        dis = svc.disassociate_faces(CollectionId="c", UserId="obama", FaceIds=faces[:2])
        assert dis["UserStatus"] == "CREATED" and len(dis["DisassociatedFaces"]) == 2
        assert svc.describe_collection(CollectionId="c")["FaceCount"] == 2
        assert svc.store.integrity_check() == "ok"
        first = svc.list_faces(CollectionId="c", MaxResults=1)

    if backend is None:
        return
    # a second node (its own home, the same database) sees everything at once, tokens included
    with Collections(home=tmp_path / "b") as node_b:
        assert node_b.describe_collection(CollectionId="c")["FaceCount"] == 2
        assert node_b.list_tags_for_resource(ResourceArn=node_b.arn("c"))["Tags"] == {"team": "x"}
        rest = node_b.list_faces(CollectionId="c", NextToken=first["NextToken"])
        assert [f["FaceId"] for f in rest["Faces"]] == [faces[1]]
        node_b.delete_faces(CollectionId="c", FaceIds=[faces[1]])
    with Collections(home=tmp_path / "a") as svc:
        probe = str(sorted(OBAMA.glob("*.jpg"))[-1])
        matches = svc.search_faces_by_image(CollectionId="c", Image=probe)["FaceMatches"]
        assert faces[1] not in {m["Face"]["FaceId"] for m in matches}  # deleted on B, never returned by A


CHILD = r"""
import json, sys
from faceprint.collections.service import Collections
home, files = sys.argv[1], sys.argv[2:]
svc = Collections(home=home)
for i, path in enumerate(files):
    resp = svc.index_faces(CollectionId="crash", Image=path, ExternalImageId=f"img{i}", MaxFaces=1)
    for rec in resp["FaceRecords"]:
        print(json.dumps({"added": rec["Face"]["FaceId"]}), flush=True)
print(json.dumps({"done": True}), flush=True)
"""


def test_kill_minus_9_keeps_every_acknowledged_face(backend: str | None, tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-ingest: every face it acknowledged is stored and counted."""
    home = tmp_path / "home"
    with Collections(home=home) as svc:
        svc.create_collection(CollectionId="crash")
    files = [str(next((LFW / p).glob("*.jpg"))) for p in sorted(os.listdir(LFW))[:40]]
    env = {**os.environ, "FACEPRINT_ONNX_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), *files], stdout=subprocess.PIPE, text=True, env=env
    )
    added: set[str] = set()
    assert child.stdout is not None
    for line in child.stdout:
        added.add(json.loads(line)["added"])
        if len(added) >= 6:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=60)
    added.update(json.loads(x)["added"] for x in rest.splitlines() if "added" in x)
    assert child.returncode == -signal.SIGKILL
    with Collections(home=home) as svc:
        stored = {f["FaceId"] for f in svc.list_faces(CollectionId="crash", MaxResults=4096)["Faces"]}
        assert added <= stored
        assert svc.describe_collection(CollectionId="crash")["FaceCount"] == len(stored)
        assert svc.store.integrity_check() == "ok"


def _once_back(call):
    """`call()` once the database answers again: after a failure a node fails fast for 1 s
    (faceprint.postgres), so the first call after a quick restart may still be refused."""
    return once_back(call, StorageUnavailableError, within=10.0, pause=0.2)


def test_postgres_down_answers_a_modeled_error_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL stopped mid-run: reads and writes fail with InternalServerError within the bound
    (FACEPRINT_DB_POOL_TIMEOUT), nothing acknowledged is lost, and the node recovers by itself."""
    from pg_server import postgres_server

    monkeypatch.setenv("FACEPRINT_DB_POOL_TIMEOUT", "2")
    monkeypatch.setenv("FACEPRINT_DB_CONNECT_TIMEOUT", "2")
    with postgres_server() as pg:  # its own server: this test stops it
        url = fresh_database(pg)
        monkeypatch.setenv("FACEPRINT_DATABASE_URL", url)
        image = str(EXAMPLES / "obama.jpg")
        with Collections(home=tmp_path / "node") as svc:
            svc.create_collection(CollectionId="c")
            face = svc.index_faces(CollectionId="c", Image=image)["FaceRecords"][0]["Face"]["FaceId"]
            pg.stop()
            for call in (
                lambda: svc.list_faces(CollectionId="c"),
                lambda: svc.index_faces(CollectionId="c", Image=str(EXAMPLES / "biden.jpg")),
                lambda: svc.search_faces_by_image(CollectionId="c", Image=image),
                lambda: svc.delete_faces(CollectionId="c", FaceIds=[face]),
            ):
                start = time.monotonic()
                with pytest.raises(StorageUnavailableError) as err:
                    call()
                assert isinstance(err.value, InternalServerError) and err.value.code == "InternalServerError"
                assert "unavailable" in str(err.value)
                assert time.monotonic() - start < 2 + 2 + 3  # pool wait + connect + slack
            pg.start()
            listed = _once_back(lambda: svc.list_faces(CollectionId="c"))["Faces"]  # same service
            assert [f["FaceId"] for f in listed] == [face]
            assert svc.describe_collection(CollectionId="c")["FaceCount"] == 1


def test_a_hung_postgres_answers_a_modeled_error_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL that accepts connections but never answers (SIGSTOP): the call fails with
    InternalServerError after the statement bound (statement timeout + 2 s watchdog), never hangs;
    once the server runs again the same service answers, with nothing lost."""
    from pg_server import postgres_server

    monkeypatch.setenv("FACEPRINT_DB_STATEMENT_TIMEOUT", "1")
    monkeypatch.setenv("FACEPRINT_DB_POOL_TIMEOUT", "2")
    monkeypatch.setenv("FACEPRINT_DB_CONNECT_TIMEOUT", "1")
    with postgres_server() as pg:
        url = fresh_database(pg)
        monkeypatch.setenv("FACEPRINT_DATABASE_URL", url)
        with Collections(home=tmp_path / "node") as svc:
            svc.create_collection(CollectionId="c")
            face = svc.index_faces(CollectionId="c", Image=str(EXAMPLES / "obama.jpg"))
            face_id = face["FaceRecords"][0]["Face"]["FaceId"]
            frozen = pg.freeze()
            try:
                for call in (
                    lambda: svc.describe_collection(CollectionId="c"),
                    lambda: svc.delete_faces(CollectionId="c", FaceIds=[face_id]),
                ):
                    start = time.monotonic()
                    with pytest.raises(StorageUnavailableError):
                        call()
                    assert time.monotonic() - start < 1 + 2 + 2 + 2  # connect, pool, watchdog, slack
            finally:
                pg.thaw(frozen)
            deadline = time.monotonic() + 10
            while True:  # the pool replaces the connections the watchdog cut
                try:
                    listed = svc.list_faces(CollectionId="c")["Faces"]
                    break
                except StorageUnavailableError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert [f["FaceId"] for f in listed] == [face_id]


def test_server_on_postgres_down_answers_internal_server_error(tmp_path: Path) -> None:
    """`faceprint serve` on PostgreSQL, called by boto3: with the database stopped, requests answer the
    modeled InternalServerError (HTTP 500) within the bound, never hang; once it is back they work again
    and the face indexed before is still there."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from faceprint.server.launcher import start_server
    from pg_server import postgres_server

    with postgres_server() as pg:
        url = fresh_database(pg)
        home = tmp_path / "node"
        env = {
            **os.environ,
            "FACEPRINT_HOME": str(home),
            "FACEPRINT_DATABASE_URL": url,
            "FACEPRINT_DB_POOL_TIMEOUT": "2",
            "FACEPRINT_DB_CONNECT_TIMEOUT": "1",
        }
        created = subprocess.run(
            [sys.executable, "-m", "faceprint", "keys", "create", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(created.stdout)["AccessKey"]
        server = start_server(home, env=env)
        try:
            client = boto3.client(
                "rekognition",
                endpoint_url=server.url,
                region_name="us-east-1",
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
                config=Config(retries={"max_attempts": 1}, read_timeout=60),
            )
            client.create_collection(CollectionId="c")
            image = {"Bytes": (EXAMPLES / "obama.jpg").read_bytes()}
            face_id = client.index_faces(CollectionId="c", Image=image)["FaceRecords"][0]["Face"]["FaceId"]
            pg.stop()
            for call in (
                lambda: client.list_faces(CollectionId="c"),
                lambda: client.index_faces(CollectionId="c", Image=image),
            ):
                start = time.monotonic()
                with pytest.raises(ClientError) as err:
                    call()
                assert err.value.response["Error"]["Code"] == "InternalServerError"
                assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
                # one wait for the pool (FACEPRINT_DB_POOL_TIMEOUT); later calls fail fast during the outage
                assert time.monotonic() - start < 2 + 2
            pg.start()
            deadline = time.monotonic() + 15
            while True:
                try:
                    faces = client.list_faces(CollectionId="c")["Faces"]
                    break
                except ClientError:
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
            assert [f["FaceId"] for f in faces] == [face_id]
        finally:
            server.stop()
