"""An append-only, hash-chained audit log in SQLite (`$FACEPRINT_HOME/server/audit.sqlite`).

Each row stores `hash = sha256(prev_hash + canonical JSON of the row)`; the first row chains from 64 zeros.
Triggers refuse UPDATE and DELETE; `verify` recomputes the chain, so a row edited or removed by going
around the triggers (or by editing the file) is found. Truncating the newest rows cannot be detected from
the table alone: compare the head hash `verify` prints with one kept elsewhere. Appends from several
processes are serialised by SQLite (`BEGIN IMMEDIATE`, WAL).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faceprint.database import enable_wal
from faceprint.files import private_file

GENESIS = "0" * 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    key_id TEXT,
    operation TEXT NOT NULL,
    collection TEXT,
    threshold REAL,
    matches INTEGER,
    request_id TEXT,
    outcome TEXT NOT NULL,
    detail TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
"""
_FIELDS = (
    "seq",
    "time",
    "key_id",
    "operation",
    "collection",
    "threshold",
    "matches",
    "request_id",
    "outcome",
    "detail",
)


@dataclass(frozen=True)
class AuditEvent:
    """What happened; `outcome` is "OK" or the error code."""

    operation: str
    key_id: str | None = None
    collection: str | None = None
    threshold: float | None = None
    matches: int | None = None
    request_id: str | None = None
    outcome: str = "OK"
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A stored row."""

    seq: int
    time: str
    key_id: str | None
    operation: str
    collection: str | None
    threshold: float | None
    matches: int | None
    request_id: str | None
    outcome: str
    detail: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    """The result of `AuditLog.verify`."""

    ok: bool
    rows: int
    head: str
    bad_seq: int | None = None
    reason: str = ""


def row_hash(prev_hash: str, values: dict[str, Any]) -> str:
    """sha256 over the previous hash and the row's fields as canonical JSON."""
    payload = json.dumps([values[f] for f in _FIELDS], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


class AuditLog:
    """One process's handle on the shared audit table."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_file(self.path)  # SQLite gives its -wal/-shm files the database file's mode
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)

    @classmethod
    def for_home(cls, home: Path) -> AuditLog:
        return cls(Path(home) / "server" / "audit.sqlite")

    def close(self) -> None:
        self._db.close()

    def append(self, event: AuditEvent) -> AuditRecord:
        """Append one row, chained to the current head (atomic across processes)."""
        return self.append_many([event])[0]

    def append_many(self, events: list[AuditEvent]) -> list[AuditRecord]:
        """Append rows in order in one transaction (all or none), chained to the current head."""
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        records: list[AuditRecord] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (head[0], head[1]) if head else (0, GENESIS)
                for event in events:
                    seq += 1
                    detail = event.detail
                    values = {
                        "seq": seq,
                        "time": now,
                        "key_id": event.key_id,
                        "operation": event.operation,
                        "collection": event.collection,
                        "threshold": None if event.threshold is None else float(event.threshold),
                        "matches": event.matches,
                        "request_id": event.request_id,
                        "outcome": event.outcome,
                        "detail": json.dumps(detail, sort_keys=True, separators=(",", ":"))
                        if detail
                        else None,
                    }
                    digest = row_hash(prev, values)
                    self._db.execute(
                        f"INSERT INTO audit ({', '.join(_FIELDS)}, prev_hash, hash) "
                        f"VALUES ({', '.join('?' * (len(_FIELDS) + 2))})",
                        [*values.values(), prev, digest],
                    )
                    records.append(AuditRecord(**values, prev_hash=prev, hash=digest))
                    prev = digest
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return records

    def records(self, since: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Rows in order, optionally from an ISO time (`since`) on, optionally only the last `limit`."""
        sql = f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit"
        args: list[Any] = []
        if since:
            sql += " WHERE time >= ?"
            args.append(since)
        sql += " ORDER BY seq"
        with self._lock:
            rows = [AuditRecord(*r) for r in self._db.execute(sql, args)]
        return rows[-limit:] if limit else rows

    def verify(self) -> Verification:
        """Recompute the chain; reports the first row whose link or content does not match."""
        prev = GENESIS
        expected_seq = 1
        count = 0
        for rec in self.records():
            values = {f: getattr(rec, f) for f in _FIELDS}
            if rec.seq != expected_seq:
                return Verification(False, count, prev, rec.seq, f"row {expected_seq} is missing")
            if rec.prev_hash != prev:
                return Verification(
                    False, count, prev, rec.seq, "prev_hash does not link to the previous row"
                )
            if row_hash(prev, values) != rec.hash:
                return Verification(False, count, prev, rec.seq, "row content does not match its hash")
            prev = rec.hash
            expected_seq += 1
            count += 1
        return Verification(True, count, prev)


def local_event(
    operation: str,
    collection: str | None = None,
    threshold: float | None = None,
    matches: int | None = None,
    detail: dict[str, Any] | None = None,
    outcome: str = "OK",
) -> AuditEvent:
    """The event of an operation run from the command line or the library (key id `local:<user>`)."""
    import getpass
    import uuid

    return AuditEvent(
        operation=operation,
        key_id=f"local:{getpass.getuser()}",
        collection=collection,
        threshold=threshold,
        matches=matches,
        request_id=str(uuid.uuid4()),
        outcome=outcome,
        detail={"via": "cli", **(detail or {})},
    )


def record_local(
    home: Path,
    operation: str,
    collection: str | None = None,
    threshold: float | None = None,
    matches: int | None = None,
) -> None:
    """Audit an operation run from the command line or the library (key id `local:<user>`)."""
    log = AuditLog.for_home(home)
    try:
        log.append(local_event(operation, collection, threshold, matches))
    finally:
        log.close()
