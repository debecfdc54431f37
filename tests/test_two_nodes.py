"""Two `faceprint serve` nodes, each with its own home, on one PostgreSQL database and one Milvus server.

Real boto3 with SigV4 against both: a face indexed on A is found on B, a face deleted on B is never returned
by A, A killed (kill -9) during concurrent IndexFaces loses no acknowledged face (each is listed and found
through B), a video job started on A and orphaned by a kill -9 finishes on B, and `faceprint audit-log
--verify` passes over the one chain both nodes wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import DATA, LFW
from faceprint.server.launcher import RunningServer, start_server

boto3 = pytest.importorskip("boto3")
Config = pytest.importorskip("botocore.config").Config

PEOPLE = sorted(p.name for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").exists())[:16]
CLIP = {"S3Object": {"Bucket": "data", "Name": "video/face_recognition_short_hamilton_clip.mp4"}}


def _bytes(person: str, n: int) -> dict:
    return {"Bytes": (LFW / person / f"{person}_{n:04d}.jpg").read_bytes()}


class Cluster:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        from faceprint.server.keys import KeyStore

        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.key, self.secret = KeyStore(root / "admin").create("two-nodes")
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    def start(self, node: str) -> RunningServer:
        return start_server(self.root / node, "--bucket", f"data={DATA}", env=self.env, timeout=120)

    def client(self, server: RunningServer):
        return boto3.client(
            "rekognition",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=self.key.access_key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=120),
        )


@pytest.fixture
def cluster(postgres, milvus, tmp_path: Path) -> Cluster:
    url = postgres.create_database(f"two_nodes_{uuid.uuid4().hex[:8]}")
    env = {
        "FACEPRINT_DATABASE_URL": url,
        "FACEPRINT_MASTER_KEY_FILE": str(tmp_path / "shared" / "master.key"),
        "FACEPRINT_AUDIT_KEY": str(tmp_path / "shared" / "audit.key"),
        "FACEPRINT_VECTOR_BACKEND": "milvus",
        "FACEPRINT_MILVUS_URI": milvus.uri,
        "FACEPRINT_MILVUS_PREFIX": f"two{uuid.uuid4().hex[:8]}",
        "FACEPRINT_ONNX_THREADS": "1",
    }
    upgrade = [sys.executable, "-m", "faceprint", "db", "upgrade"]
    subprocess.run(upgrade, env={**os.environ, **env}, capture_output=True, check=True, timeout=120)
    return Cluster(tmp_path, env)


def _best(rek, person: str, n: int = 2) -> list[str]:
    resp = rek.search_faces_by_image(
        CollectionId="shared", Image=_bytes(person, n), FaceMatchThreshold=0, MaxFaces=20
    )
    return [m["Face"]["FaceId"] for m in resp["FaceMatches"]]


def test_two_nodes_share_one_store_and_one_milvus(cluster: Cluster) -> None:
    a_server, b_server = cluster.start("a"), cluster.start("b")
    try:
        a, b = cluster.client(a_server), cluster.client(b_server)
        a.create_collection(CollectionId="shared")
        faces = {}
        for person in PEOPLE[:4]:
            rec = a.index_faces(
                CollectionId="shared", Image=_bytes(person, 1), ExternalImageId=person, MaxFaces=1
            )
            faces[person] = rec["FaceRecords"][0]["Face"]["FaceId"]
        for person in PEOPLE[:4]:  # acknowledged on A: found by B at once
            assert _best(b, person)[0] == faces[person]
        gone = faces[PEOPLE[0]]
        assert b.delete_faces(CollectionId="shared", FaceIds=[gone])["DeletedFaces"] == [gone]
        for person in PEOPLE[:4]:  # deleted on B: never returned by A
            assert gone not in _best(a, person)

        # A is killed (kill -9) while 4 clients index on it; every face it acknowledged survives on B
        acked: dict[str, str] = {}
        todo = list(PEOPLE[4:])
        lock = threading.Lock()
        clients = [cluster.client(a_server) for _ in range(4)]

        def work(rek) -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    person = todo.pop()
                try:
                    rec = rek.index_faces(
                        CollectionId="shared", Image=_bytes(person, 1), ExternalImageId=person, MaxFaces=1
                    )
                except Exception:  # the node died under this request
                    return
                with lock:
                    acked[person] = rec["FaceRecords"][0]["Face"]["FaceId"]

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acked) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        a_server.process.kill()
        a_server.process.wait(10)
        for t in threads:
            t.join(60)
        assert len(acked) >= 3 and todo  # killed mid-way
        listed = {f["FaceId"] for f in b.list_faces(CollectionId="shared", MaxResults=100)["Faces"]}
        assert set(acked.values()) <= listed
        for person, face_id in acked.items():
            assert _best(b, person, 1)[0] == face_id  # its own image: found first
        count = b.describe_collection(CollectionId="shared")["FaceCount"]
        assert count == len(listed)

        # a video job started on A (restarted), orphaned by kill -9, finishes on B
        a_server = cluster.start("a")
        a = cluster.client(a_server)
        job = a.start_face_detection(Video=CLIP)["JobId"]
        time.sleep(0.5)
        a_server.process.kill()
        a_server.process.wait(10)
        deadline = time.monotonic() + 240
        while (status := b.get_face_detection(JobId=job)["JobStatus"]) == "IN_PROGRESS":
            assert time.monotonic() < deadline, "the orphaned job was not resumed by B"
            time.sleep(1)
        assert status == "SUCCEEDED" and b.get_face_detection(JobId=job)["Faces"]
    finally:
        for server in (a_server, b_server):
            server.stop()
    out = subprocess.run(
        [sys.executable, "-m", "faceprint", "audit-log", "--verify", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **cluster.env, "FACEPRINT_HOME": str(cluster.root / "b")},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    verification = json.loads(out.stdout)["verification"]
    assert verification["ok"] is True and verification["rows"] > 20
