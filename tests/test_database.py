"""The SQLite files every process shares: processes that create one at the same moment all get it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from faceprint.audit import AuditEvent, AuditLog
from faceprint.database import Database

PROCESSES = 8
ROUNDS = 20


def _open(kind: str, path: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        if kind == "database":
            db = Database(Path(path), "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY)")
            with db.write() as conn:
                conn.execute("INSERT INTO jobs DEFAULT VALUES")
            db.close()
        else:
            log = AuditLog(Path(path))
            log.append(AuditEvent(operation="SearchFacesByImage", collection="c", matches=0))
            log.close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


@pytest.mark.parametrize("kind", ["database", "audit"])
def test_processes_creating_a_file_together_all_succeed(kind: str, tmp_path: Path) -> None:
    """`faceprint serve --workers 2` starts workers that create the same files at once. Before the fix,
    about 3 rounds in 10 like these failed with 'database is locked': SQLite's switch to WAL does not wait
    for the busy timeout. (It took down the server of tests/test_server_boto3.py in a clean-clone CI run.)"""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / f"{kind}.sqlite"
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        procs = [
            ctx.Process(target=_open, args=(kind, str(path), barrier, results)) for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        outcomes = [results.get(timeout=5) for _ in procs]
        assert outcomes == ["ok"] * PROCESSES, (round_, outcomes)
    if kind == "audit":
        log = AuditLog(path)
        assert len(log.records()) == PROCESSES and log.verify().ok
        log.close()
