"""Durable video jobs in SQLite: job rows, leases that workers hold while they run a job, and results.

One database per home folder (`<home>/video/jobs.db`, WAL, `synchronous=FULL`). A worker claims a job by
taking its lease (`owner`, `lease_expires`) in one `BEGIN IMMEDIATE` transaction and renews it while it
runs. A job whose lease expired, or whose owner is a process of this host that no longer exists, is
claimed again and re-run from the start (its partial results are dropped), up to `max_attempts` claims;
then it is marked FAILED with a message. Results become visible only with the SUCCEEDED status, which is
written in the same transaction as the last results.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint import config
from faceprint.database import Database
from faceprint.migrations import Migration

IN_PROGRESS, SUCCEEDED, FAILED = "IN_PROGRESS", "SUCCEEDED", "FAILED"
FACE_DETECTION, FACE_SEARCH = "FaceDetection", "FaceSearch"
DB_NAME = "jobs.db"
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    video TEXT,
    source TEXT NOT NULL,
    params TEXT NOT NULL,
    job_tag TEXT,
    client_token TEXT,
    request_digest TEXT,
    metadata TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    owner TEXT,
    lease_expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_token ON jobs (kind, client_token) WHERE client_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS faces (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persons (
    job_id TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    person_index INTEGER NOT NULL,
    PRIMARY KEY (job_id, track_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matches (
    job_id TEXT NOT NULL,
    person_index INTEGER NOT NULL,
    matches TEXT NOT NULL,
    PRIMARY KEY (job_id, person_index)
) WITHOUT ROWID
"""
_LEASE_INDEX = "CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (status, lease_expires)"
MIGRATIONS = (
    Migration(1, "video jobs, leases and results", _SCHEMA, _SCHEMA),
    Migration(2, "claimable jobs by lease", _LEASE_INDEX, _LEASE_INDEX),
)


class LeaseLostError(RuntimeError):
    """The worker no longer holds the job's lease (it expired and another worker took the job)."""


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str
    status: str
    status_message: str | None
    video: dict | None
    source: str
    params: dict
    job_tag: str | None
    metadata: dict | None
    created: float
    owner: str | None
    attempts: int
    progress: float


def worker_identity() -> str:
    """`host:pid:nonce`: who holds a lease, precise enough to tell that a local process has died."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` is a process of this host that no longer runs."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _job(row: sqlite3.Row) -> Job:
    return Job(
        job_id=row["job_id"],
        kind=row["kind"],
        status=row["status"],
        status_message=row["status_message"],
        video=json.loads(row["video"]) if row["video"] else None,
        source=row["source"],
        params=json.loads(row["params"]),
        job_tag=row["job_tag"],
        metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        created=row["created"],
        owner=row["owner"],
        attempts=row["attempts"],
        progress=row["progress"],
    )


class _SqliteJobs(Database):
    row_factory = sqlite3.Row


class JobStore:
    """Transactional access to the video jobs of one home folder (SQLite) or of the cluster (PostgreSQL,
    `FACEPRINT_DATABASE_URL`); safe across threads, processes and nodes.

    In PostgreSQL a worker claims a job with `SELECT ... FOR UPDATE SKIP LOCKED` (workers on other nodes
    skip the row another is claiming), and job creation takes the schema's write lock so that the limit
    of jobs in progress counts each job once, cluster-wide."""

    def __init__(self, home: Path, max_attempts: int | None = None, database_url: str | None = None) -> None:
        self.folder = Path(home) / "video"
        self.max_attempts = max_attempts or int(
            os.environ.get("FACEPRINT_VIDEO_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
        )
        url = database_url if database_url is not None else config.database_url()
        if url:
            from faceprint.postgres import PostgresDatabase

            self.db: Any = PostgresDatabase(url, "video", MIGRATIONS)
            self.path: Path | str = "PostgreSQL (schema video)"
        else:
            self.db = _SqliteJobs(self.folder / DB_NAME, MIGRATIONS)
            self.path = self.db.path
        self.write, self.read = self.db.write, self.db.read

    def close(self) -> None:
        self.db.close()

    def token_key(self) -> bytes:
        """Secret of this database, used to sign pagination tokens (the same on every node)."""
        return self.db.token_key()

    # -- jobs -----------------------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        source: str,
        params: dict,
        video: dict | None,
        job_tag: str | None,
        client_token: str | None,
        digest: str,
        metadata: dict | None,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_active: int | None = None,
    ) -> tuple[str, bool]:
        """Insert a job (IN_PROGRESS), or find the one made earlier with this ClientRequestToken.

        Returns (job id, created). `owner` creates it already claimed (a foreground run). Raises
        KeyError when the token was used with other parameters, OverflowError past `max_active` jobs.
        """
        now = time.time()
        with self.write() as conn:
            if client_token is not None:
                row = conn.execute(
                    "SELECT job_id, request_digest FROM jobs WHERE kind=? AND client_token=?",
                    (kind, client_token),
                ).fetchone()
                if row is not None:
                    if row["request_digest"] != digest:
                        raise KeyError(client_token)
                    return row["job_id"], False
            if max_active is not None:
                active = conn.execute("SELECT COUNT(*) FROM jobs WHERE status=?", (IN_PROGRESS,)).fetchone()[
                    0
                ]
                if active >= max_active:
                    raise OverflowError(active)
            job_id = secrets.token_hex(32)
            conn.execute(
                "INSERT INTO jobs (job_id, kind, status, video, source, params, job_tag, client_token, "
                "request_digest, metadata, created, updated, owner, lease_expires, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    kind,
                    IN_PROGRESS,
                    json.dumps(video) if video is not None else None,
                    source,
                    json.dumps(params),
                    job_tag,
                    client_token,
                    digest,
                    json.dumps(metadata) if metadata is not None else None,
                    now,
                    now,
                    owner,
                    now + lease_seconds if owner else None,
                    1 if owner else 0,
                ),
            )
            return job_id, True

    def find_token(self, kind: str, client_token: str) -> tuple[str, str] | None:
        """(job id, request digest) of the job started earlier with this ClientRequestToken."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT job_id, request_digest FROM jobs WHERE kind=? AND client_token=?",
                (kind, client_token),
            ).fetchone()
        return (row[0], row[1]) if row is not None else None

    def get(self, job_id: str) -> Job | None:
        with self.read() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def claim(
        self, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, job_id: str | None = None
    ) -> Job | None:
        """Take the lease of the oldest claimable job (or of `job_id`): never claimed, lease expired, or
        held by a dead local process. Partial results of an earlier attempt are dropped. A job already
        claimed `max_attempts` times is marked FAILED instead."""
        while True:
            now = time.time()
            with self.write(serialised=False) as conn:
                query = (
                    "SELECT * FROM jobs WHERE status=? AND (owner IS NULL OR lease_expires IS NULL "
                    "OR lease_expires<? OR owner LIKE ?)"
                )
                args: list[Any] = [IN_PROGRESS, now, socket.gethostname() + ":%"]
                if job_id is not None:
                    query += " AND job_id=?"
                    args.append(job_id)
                query += " ORDER BY created"
                if self.db.dialect == "postgres":  # rows another node is claiming are skipped, not waited for
                    query += " FOR UPDATE SKIP LOCKED"
                candidates = conn.execute(query, args).fetchall()
                row = next(
                    (
                        r
                        for r in candidates
                        if r["owner"] is None
                        or (r["lease_expires"] or 0) < now
                        or (r["owner"] != owner and owner_is_dead(r["owner"]))
                    ),
                    None,
                )
                if row is None:
                    return None
                if row["attempts"] >= self.max_attempts:
                    conn.execute(
                        "UPDATE jobs SET status=?, status_message=?, owner=NULL, updated=? WHERE job_id=?",
                        (
                            FAILED,
                            f"the worker running this job stopped {row['attempts']} time(s) "
                            "before finishing; giving up",
                            now,
                            row["job_id"],
                        ),
                    )
                    self._drop_results(conn, row["job_id"])
                    continue
                conn.execute(
                    "UPDATE jobs SET owner=?, lease_expires=?, attempts=attempts+1, progress=0, updated=? "
                    "WHERE job_id=?",
                    (owner, now + lease_seconds, now, row["job_id"]),
                )
                self._drop_results(conn, row["job_id"])
                claimed = conn.execute("SELECT * FROM jobs WHERE job_id=?", (row["job_id"],)).fetchone()
                return _job(claimed)

    @staticmethod
    def _drop_results(conn: sqlite3.Connection, job_id: str) -> None:
        for table in ("faces", "persons", "matches"):
            conn.execute(f"DELETE FROM {table} WHERE job_id=?", (job_id,))

    def _check_owner(self, conn: Any, job_id: str, owner: str) -> None:
        """LeaseLostError unless `owner` holds the job; in PostgreSQL the row stays locked until the
        transaction ends, so no other node can claim the job (and drop results) halfway through it."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        row = conn.execute(f"SELECT owner, status FROM jobs WHERE job_id=?{lock}", (job_id,)).fetchone()
        if row is None or row["owner"] != owner or row["status"] != IN_PROGRESS:
            raise LeaseLostError(job_id)

    def heartbeat(
        self,
        job_id: str,
        owner: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        progress: float | None = None,
    ) -> None:
        """Renew the lease (and record progress); LeaseLostError if another worker has the job now."""
        now = time.time()
        with self.write() as conn:
            self._check_owner(conn, job_id, owner)
            if progress is None:
                conn.execute("UPDATE jobs SET lease_expires=? WHERE job_id=?", (now + lease_seconds, job_id))
            else:
                conn.execute(
                    "UPDATE jobs SET lease_expires=?, progress=? WHERE job_id=?",
                    (now + lease_seconds, float(progress), job_id),
                )

    def add_faces(
        self, job_id: str, owner: str, start_seq: int, rows: Sequence[tuple[int, int, str]]
    ) -> None:
        """Append (timestamp_ms, track_id, FaceDetail JSON) rows numbered from `start_seq`."""
        with self.write() as conn:
            self._check_owner(conn, job_id, owner)
            conn.executemany(
                "INSERT INTO faces (job_id, seq, timestamp_ms, track_id, detail) VALUES (?, ?, ?, ?, ?)",
                [(job_id, start_seq + i, ts, track, detail) for i, (ts, track, detail) in enumerate(rows)],
            )

    def succeed(
        self,
        job_id: str,
        owner: str,
        metadata: dict,
        persons: dict[int, int] | None = None,
        matches: dict[int, list[dict]] | None = None,
    ) -> None:
        """Store the person indexes and matches and mark the job SUCCEEDED, in one transaction."""
        with self.write() as conn:
            self._check_owner(conn, job_id, owner)
            conn.executemany(
                "INSERT INTO persons (job_id, track_id, person_index) VALUES (?, ?, ?)",
                [(job_id, track, index) for track, index in (persons or {}).items()],
            )
            conn.executemany(
                "INSERT INTO matches (job_id, person_index, matches) VALUES (?, ?, ?)",
                [(job_id, index, json.dumps(found)) for index, found in (matches or {}).items()],
            )
            conn.execute(
                "UPDATE jobs SET status=?, metadata=?, progress=1, owner=NULL, lease_expires=NULL, updated=? "
                "WHERE job_id=?",
                (SUCCEEDED, json.dumps(metadata), time.time(), job_id),
            )

    def fail(self, job_id: str, owner: str | None, message: str) -> None:
        """Mark the job FAILED with `message` (only if `owner` still holds it, when given)."""
        with self.write() as conn:
            if owner is not None:
                self._check_owner(conn, job_id, owner)
            conn.execute(
                "UPDATE jobs SET status=?, status_message=?, owner=NULL, lease_expires=NULL, updated=? "
                "WHERE job_id=? AND status=?",
                (FAILED, message[:1000], time.time(), job_id, IN_PROGRESS),
            )
            self._drop_results(conn, job_id)

    def release(self, job_id: str, owner: str) -> None:
        """Give the job back unfinished (a worker stopping): another worker may claim it at once."""
        with self.write() as conn:
            conn.execute(
                "UPDATE jobs SET owner=NULL, lease_expires=NULL, "
                "attempts=CASE WHEN attempts>0 THEN attempts-1 ELSE 0 END "
                "WHERE job_id=? AND owner=? AND status=?",
                (job_id, owner, IN_PROGRESS),
            )
            self._drop_results(conn, job_id)

    # -- results --------------------------------------------------------------------------------------

    def count_faces(self, job_id: str) -> int:
        with self.read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM faces WHERE job_id=?", (job_id,)).fetchone()[0])

    def faces_page(self, job_id: str, offset: int, limit: int) -> list[tuple[int, dict]]:
        """(Timestamp, FaceDetail) in time order (then face order within a frame)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT timestamp_ms, detail FROM faces WHERE job_id=? "
                "ORDER BY timestamp_ms, seq LIMIT ? OFFSET ?",
                (job_id, limit, offset),
            ).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    def persons_page(
        self, job_id: str, offset: int, limit: int, by_index: bool
    ) -> list[tuple[int, int, dict]]:
        """(Timestamp, Person Index, FaceDetail), by time then index, or by index then time."""
        order = (
            "p.person_index, f.timestamp_ms, f.seq" if by_index else "f.timestamp_ms, p.person_index, f.seq"
        )
        with self.read() as conn:
            rows = conn.execute(
                "SELECT f.timestamp_ms, p.person_index, f.detail FROM faces f JOIN persons p "
                "ON p.job_id = f.job_id AND p.track_id = f.track_id "
                f"WHERE f.job_id=? ORDER BY {order} LIMIT ? OFFSET ?",
                (job_id, limit, offset),
            ).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def person_matches(self, job_id: str, indexes: Sequence[int]) -> dict[int, list[dict]]:
        if not indexes:
            return {}
        marks = ",".join("?" * len(set(indexes)))
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT person_index, matches FROM matches WHERE job_id=? AND person_index IN ({marks})",
                (job_id, *sorted(set(indexes))),
            ).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}
