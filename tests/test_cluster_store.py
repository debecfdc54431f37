"""Two nodes on one real PostgreSQL database: access keys, the audit chain and video job leases are
shared, with `faceprint db upgrade` creating the schemas."""

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

from faceprint.audit import AuditLog, Caller, event
from faceprint.server.keys import KeyStore
from faceprint.video.jobs import IN_PROGRESS, SUCCEEDED, JobStore


@pytest.fixture
def cluster(postgres: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database upgraded with `faceprint db upgrade --json`, shared master and audit keys."""
    url = postgres.create_database(f"c{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    monkeypatch.setenv("FACEPRINT_DATABASE_URL", url)
    monkeypatch.setenv("FACEPRINT_MASTER_KEY_FILE", str(tmp_path / "shared" / "master.key"))
    monkeypatch.setenv("FACEPRINT_AUDIT_KEY", str(tmp_path / "shared" / "audit.key"))
    cli = [sys.executable, "-m", "faceprint", "db", "upgrade", "--json"]
    first = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert first["Database"] == "postgresql"
    assert {s: v["Version"] for s, v in first["Schemas"].items()} == {
        s: v["Latest"] for s, v in first["Schemas"].items()
    }
    again = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert all(not v["Applied"] for v in again["Schemas"].values())  # idempotent
    return url


def test_keys_created_and_revoked_on_one_node_work_on_the_other(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEPRINT_KEY_CACHE_SECONDS", "0.5")
    node_a, node_b = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    try:
        assert node_b.list() == []
        key, secret = node_a.create("app", allow=("SearchFaces*",))
        deadline = time.monotonic() + 0.5 + 0.5
        while node_b.check_secret(key.access_key_id, secret) is None:
            assert time.monotonic() < deadline, "the key did not reach node B within the cache time"
            time.sleep(0.05)
        assert node_b.get(key.access_key_id).policy.allow == ("SearchFaces*",)
        assert node_b.derived_secret("sessions") == node_a.derived_secret("sessions")  # one master key
        node_b.revoke(key.access_key_id)
        assert node_b.check_secret(key.access_key_id, secret) is None  # at once on the revoking node
        time.sleep(0.6)
        assert node_a.check_secret(key.access_key_id, secret) is None  # within the TTL on the other
        assert not (tmp_path / "a" / "server" / "keys.json").exists()  # not stored per node
    finally:
        node_a.close()
        node_b.close()


def test_one_audit_chain_across_nodes(cluster: str, tmp_path: Path) -> None:
    """Two nodes appending at the same time keep one gap-free HMAC chain that verifies, also with
    `faceprint audit-log --verify`."""
    logs = [AuditLog(tmp_path / n / "audit.sqlite", tmp_path / "shared" / "audit.key") for n in "ab"]
    caller = Caller("FPAKTEST", "127.0.0.1", None, "test")

    def append(log: AuditLog, node: str) -> None:
        for i in range(30):
            log.append_many([event("SearchFaces", caller, f"{node}{i}", 80.0, 1, "OK") for _ in range(2)])

    threads = [threading.Thread(target=append, args=(log, n)) for log, n in zip(logs, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        result = logs[1].verify()
        assert result.ok, result.reason
        assert result.rows == 120
        assert [r.seq for r in logs[0].records()] == list(range(1, 121))
        assert {r.collection[0] for r in logs[0].records()} == {"a", "b"}
    finally:
        for log in logs:
            log.close()
    out = subprocess.run(
        [sys.executable, "-m", "faceprint", "audit-log", "--verify", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "FACEPRINT_HOME": str(tmp_path / "c")},
    )
    assert out.returncode == 0, out.stderr
    verification = json.loads(out.stdout)["verification"]
    assert verification["ok"] is True and verification["rows"] == 120


def test_video_jobs_are_leased_once_and_resumed_when_a_node_dies(cluster: str, tmp_path: Path) -> None:
    """Two workers (two nodes) on one database: each job is claimed by one of them (SKIP LOCKED), a
    job whose worker stopped renewing its lease is resumed by the other, and the in-progress limit
    counts each job once across nodes."""
    node_a, node_b = JobStore(tmp_path / "a"), JobStore(tmp_path / "b")
    try:
        ids = [
            node_a.create("FaceDetection", "s3://v/x.mp4", {}, None, None, None, "d", None, max_active=3)[0],
            node_b.create("FaceDetection", "s3://v/y.mp4", {}, None, None, None, "d", None, max_active=3)[0],
            node_a.create("FaceDetection", "s3://v/z.mp4", {}, None, None, None, "d", None, max_active=3)[0],
        ]
        with pytest.raises(OverflowError):  # the limit sees the other node's jobs
            node_b.create("FaceDetection", "s3://v/w.mp4", {}, None, None, None, "d", None, max_active=3)

        claimed: dict[str, list[str]] = {"a": [], "b": []}

        def work(store: JobStore, name: str) -> None:
            while (job := store.claim(f"other-host-{name}:1:x", lease_seconds=1.0)) is not None:
                claimed[name].append(job.job_id)

        threads = [threading.Thread(target=work, args=(s, n)) for s, n in ((node_a, "a"), (node_b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed["a"] + claimed["b"]) == sorted(ids)  # each job leased exactly once

        # node A's worker "dies" (stops renewing); once its lease expires node B resumes the job
        dead = claimed["a"][0] if claimed["a"] else claimed["b"][0]
        assert node_b.claim("other-host-b2:1:x", lease_seconds=30.0, job_id=dead) is None  # lease held
        time.sleep(1.1)
        resumed = node_b.claim("other-host-b2:1:x", lease_seconds=30.0, job_id=dead)
        assert resumed is not None and resumed.attempts == 2 and resumed.status == IN_PROGRESS
        node_b.heartbeat(dead, "other-host-b2:1:x", progress=0.5)
        node_b.succeed(dead, "other-host-b2:1:x", {"Format": "mp4"})
        assert node_a.get(dead).status == SUCCEEDED
    finally:
        node_a.close()
        node_b.close()


def test_doctor_and_nodes_refuse_a_database_that_is_not_upgraded(
    postgres: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database without faceprint's schemas: doctor says to run `faceprint db upgrade`, a node refuses
    to open it with the same advice; after the upgrade doctor reports it current."""
    from faceprint.doctor import check_postgresql
    from faceprint.migrations import SchemaVersionError

    url = postgres.create_database(f"d{uuid.uuid4().hex[:12]}")  # type: ignore[attr-defined]
    monkeypatch.setenv("FACEPRINT_DATABASE_URL", url)
    check = check_postgresql()
    assert check.status == "error" and "not current" in check.detail and "db upgrade" in check.fix
    with pytest.raises(SchemaVersionError, match="faceprint db upgrade"):
        JobStore(tmp_path)
    subprocess.run([sys.executable, "-m", "faceprint", "db", "upgrade"], check=True, capture_output=True)
    assert check_postgresql().status == "ok"


@pytest.mark.slow
def test_video_job_of_a_killed_node_finishes_on_another(cluster: str, tmp_path: Path) -> None:
    """A real job started through node A, its worker process killed with SIGKILL mid-job; a worker of
    node B (another home, the same database) claims it and runs it to SUCCEEDED."""
    from faceprint.video.service import VideoJobs
    from test_video_worker import HAMILTON, _kill_mid_job, _wait_done, _worker

    node_a, node_b = tmp_path / "a", tmp_path / "b"
    with VideoJobs(node_a) as jobs:
        job_id = jobs.start_face_detection(Video=str(HAMILTON))["JobId"]
    _kill_mid_job(node_a, job_id)
    proc = _worker(node_b, "--once")
    try:
        response = _wait_done(node_b, job_id, proc)
    finally:
        proc.wait(timeout=120)
    assert response["JobStatus"] == "SUCCEEDED" and response["Faces"]
    with VideoJobs(node_a) as jobs:  # node A answers from the shared database too
        again = jobs.get_face_detection(JobId=job_id, MaxResults=1000)
    assert again["Faces"] == response["Faces"]
    store = JobStore(node_b)
    try:
        assert store.get(job_id).attempts == 2
    finally:
        store.close()
