"""Durable stream processors and the records they write, in SQLite (`<home>/streams/streams.db`, 0600).

A processor row holds its configuration (the CreateStreamProcessor request), its status and the lease of
the runner that runs it: a runner claims a processor that should run (STARTING, RUNNING, UPDATING) when
nobody holds its lease, the lease expired, or the holder is a dead process of this host; it renews the
lease while it runs. So exactly one runner runs a processor, across threads, processes and (with a shared
home) hosts. Output streams are append-only record logs with one shard: a record's sequence number is
taken from the stream's counter in the same transaction that inserts it (`synchronous=FULL`), so a record
a reader has seen survives a crash, and numbers are never reused after retention trims old records.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.database import Database
from faceprint.files import private_file
from faceprint.video.jobs import owner_is_dead

STOPPED, STARTING, RUNNING, FAILED, STOPPING, UPDATING = (
    "STOPPED",
    "STARTING",
    "RUNNING",
    "FAILED",
    "STOPPING",
    "UPDATING",
)
ACTIVE = (STARTING, RUNNING, UPDATING)  # a runner should be running these
DB_NAME = "streams.db"
DEFAULT_LEASE_SECONDS = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processors (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    status_message TEXT,
    config TEXT NOT NULL,
    source TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    session_id TEXT,
    stop_after REAL,
    owner TEXT,
    lease_expires REAL
);
CREATE TABLE IF NOT EXISTS outputs (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS records (
    output TEXT NOT NULL,
    seq INTEGER NOT NULL,
    arrival REAL NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (output, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_arrival ON records (output, arrival);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL
)
"""


class LeaseLostError(RuntimeError):
    """The runner no longer holds the processor's lease (stopped, deleted, or taken over)."""


@dataclass(frozen=True)
class Processor:
    name: str
    status: str
    status_message: str | None
    config: dict[str, Any]
    source: str
    collection_id: str
    output: str
    created: float
    updated: float
    session_id: str | None
    stop_after: float | None
    owner: str | None
    lease_expires: float | None


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    arrival: float
    partition_key: str
    data: bytes


def _processor(row: sqlite3.Row) -> Processor:
    return Processor(
        name=row["name"],
        status=row["status"],
        status_message=row["status_message"],
        config=json.loads(row["config"]),
        source=row["source"],
        collection_id=row["collection_id"],
        output=row["output"],
        created=row["created"],
        updated=row["updated"],
        session_id=row["session_id"],
        stop_after=row["stop_after"],
        owner=row["owner"],
        lease_expires=row["lease_expires"],
    )


def _claimable(row: sqlite3.Row, owner: str, now: float) -> bool:
    held = row["owner"]
    return held is None or (row["lease_expires"] or 0) < now or (held != owner and owner_is_dead(held))


class StreamStore(Database):
    """Transactional access to the processors and output streams of one home folder."""

    row_factory = sqlite3.Row

    def __init__(self, home: Path) -> None:
        path = private_file(Path(home) / "streams" / DB_NAME)  # 0600; SQLite's -wal/-shm follow it
        super().__init__(path, _SCHEMA)

    # -- processors -----------------------------------------------------------------------------------

    def create(
        self, name: str, config: dict, source: str, collection_id: str, output: str, max_processors: int
    ) -> Processor:
        """Insert a STOPPED processor (and its output stream if new). KeyError: the name is taken;
        OverflowError: `max_processors` exist already."""
        now = time.time()
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM processors WHERE name=?", (name,)).fetchone():
                raise KeyError(name)
            if conn.execute("SELECT COUNT(*) FROM processors").fetchone()[0] >= max_processors:
                raise OverflowError(max_processors)
            conn.execute(
                "INSERT INTO processors (name, status, config, source, collection_id, output, created, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, STOPPED, json.dumps(config), source, collection_id, output, now, now),
            )
            conn.execute("INSERT OR IGNORE INTO outputs (name, created) VALUES (?, ?)", (output, now))
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        return _processor(row)

    def get(self, name: str) -> Processor | None:
        with self.read() as conn:
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        return _processor(row) if row is not None else None

    def page(self, offset: int, limit: int) -> list[Processor]:
        """Processors by name."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT * FROM processors ORDER BY name LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [_processor(r) for r in rows]

    def transition(
        self,
        name: str,
        allowed: tuple[str, ...],
        status: str,
        message: str | None = None,
        **columns: Any,
    ) -> Processor:
        """Move a processor from one of `allowed` to `status` (setting `columns`) in one transaction.

        KeyError: no such processor; ValueError(current status): it is in another state."""
        with self.write() as conn:
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            if row["status"] not in allowed:
                raise ValueError(row["status"])
            sets = {"status": status, "status_message": message, "updated": time.time(), **columns}
            conn.execute(
                f"UPDATE processors SET {', '.join(f'{k}=?' for k in sets)} WHERE name=?",
                (*[json.dumps(v) if k == "config" else v for k, v in sets.items()], name),
            )
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        return _processor(row)

    def stop(self, name: str) -> Processor:
        """StopStreamProcessor: STOPPING while a live runner holds it (it finishes the stop), else STOPPED."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            if row["status"] not in ACTIVE:
                raise ValueError(row["status"])
            held = row["owner"] is not None and not _claimable(row, "", now)
            status = STOPPING if held else STOPPED
            conn.execute(
                "UPDATE processors SET status=?, status_message=NULL, updated=?"
                + ("" if held else ", owner=NULL, lease_expires=NULL")
                + " WHERE name=?",
                (status, now, name),
            )
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        return _processor(row)

    def delete(self, name: str) -> None:
        """Remove a STOPPED or FAILED processor (its output stream and records stay, as on AWS)."""
        with self.write() as conn:
            row = conn.execute("SELECT status FROM processors WHERE name=?", (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            if row["status"] not in (STOPPED, FAILED):
                raise ValueError(row["status"])
            conn.execute("DELETE FROM processors WHERE name=?", (name,))

    # -- runners --------------------------------------------------------------------------------------

    def claim(self, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> list[Processor]:
        """Take the lease of every processor that should run and that nobody (alive) runs. A processor
        found RUNNING that way lost its runner (a crash): it is STARTING again until frames flow. A
        STOPPING one whose runner died is STOPPED."""
        now = time.time()
        claimed: list[Processor] = []
        with self.read() as conn:  # the common case, nothing to take, needs no write lock
            rows = conn.execute(
                "SELECT * FROM processors WHERE status IN (?, ?, ?, ?)", (*ACTIVE, STOPPING)
            ).fetchall()
        if not any(_claimable(r, owner, now) and r["owner"] != owner for r in rows):
            return claimed
        with self.write() as conn:
            rows = conn.execute(
                "SELECT * FROM processors WHERE status IN (?, ?, ?, ?)", (*ACTIVE, STOPPING)
            ).fetchall()
            for row in rows:
                if not _claimable(row, owner, now) or row["owner"] == owner:
                    continue
                if row["status"] == STOPPING:
                    conn.execute(
                        "UPDATE processors SET status=?, owner=NULL, lease_expires=NULL, updated=? "
                        "WHERE name=?",
                        (STOPPED, now, row["name"]),
                    )
                    continue
                resumed = row["status"] != STARTING
                conn.execute(
                    "UPDATE processors SET status=?, status_message=?, owner=?, lease_expires=?, updated=? "
                    "WHERE name=?",
                    (
                        STARTING,
                        "resuming: the runner of this processor stopped" if resumed else None,
                        owner,
                        now + lease_seconds,
                        now,
                        row["name"],
                    ),
                )
                claimed.append(
                    _processor(
                        conn.execute("SELECT * FROM processors WHERE name=?", (row["name"],)).fetchone()
                    )
                )
        return claimed

    def _held(self, conn: sqlite3.Connection, name: str, owner: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        if row is None or row["owner"] != owner:
            raise LeaseLostError(name)
        return row

    def heartbeat(self, name: str, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Processor:
        """Renew the lease; returns the row (its status says whether to stop or reload settings)."""
        with self.write() as conn:
            self._held(conn, name, owner)
            conn.execute(
                "UPDATE processors SET lease_expires=? WHERE name=?", (time.time() + lease_seconds, name)
            )
            row = conn.execute("SELECT * FROM processors WHERE name=?", (name,)).fetchone()
        return _processor(row)

    def mark(self, name: str, owner: str, status: str, message: str | None = None) -> None:
        """Set the status of a held processor (RUNNING once frames flow, after an update, ...)."""
        with self.write() as conn:
            row = self._held(conn, name, owner)
            if row["status"] in (STOPPING,) and status != STOPPED:
                return  # a stop was asked for meanwhile: the runner will see it
            conn.execute(
                "UPDATE processors SET status=?, status_message=?, updated=? WHERE name=?",
                (status, message, time.time(), name),
            )

    def release(self, name: str, owner: str, status: str | None = None, message: str | None = None) -> None:
        """Give the lease back, ending in `status` (STOPPED, FAILED) or keeping the status (a runner that
        shuts down: another runner resumes the processor)."""
        with self.write() as conn:
            row = conn.execute("SELECT owner, status FROM processors WHERE name=?", (name,)).fetchone()
            if row is None or row["owner"] != owner:
                return
            if row["status"] == STOPPING:
                final, text = STOPPED, message if status == STOPPED else None
            elif status is not None:
                final, text = status, message
            else:  # a runner shutting down: the processor resumes on the next runner
                final, text = row["status"], None
            conn.execute(
                "UPDATE processors SET status=?, status_message=?, owner=NULL, lease_expires=NULL, updated=?"
                " WHERE name=?",
                (final, text, time.time(), name),
            )

    # -- sources --------------------------------------------------------------------------------------

    def register_sources(self, sources: dict[str, str]) -> None:
        """Record the local streams this server serves (what CreateStreamProcessor may name)."""
        with self.write() as conn:
            conn.execute("DELETE FROM sources")
            conn.executemany("INSERT INTO sources (name, source) VALUES (?, ?)", sorted(sources.items()))

    def sources(self) -> dict[str, str]:
        with self.read() as conn:
            return {r["name"]: r["source"] for r in conn.execute("SELECT name, source FROM sources")}

    # -- output streams -------------------------------------------------------------------------------

    def output_created(self, output: str) -> float | None:
        with self.read() as conn:
            row = conn.execute("SELECT created FROM outputs WHERE name=?", (output,)).fetchone()
        return row[0] if row is not None else None

    def output_collections(self, output: str) -> list[str]:
        """Collections of the processors that write to `output` (a reader needs the policy of each)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT collection_id FROM processors WHERE output=?", (output,)
            ).fetchall()
        return [r[0] for r in rows]

    def append(self, name: str, owner: str, output: str, data: bytes, arrival: float | None = None) -> int:
        """Append one record to `output` for the held processor `name`; returns its sequence number."""
        with self.write() as conn:
            self._held(conn, name, owner)
            seq = conn.execute("SELECT next_seq FROM outputs WHERE name=?", (output,)).fetchone()[0]
            conn.execute("UPDATE outputs SET next_seq=? WHERE name=?", (seq + 1, output))
            conn.execute(
                "INSERT INTO records (output, seq, arrival, partition_key, data) VALUES (?, ?, ?, ?, ?)",
                (output, seq, arrival or time.time(), name, data),
            )
        return int(seq)

    def next_seq(self, output: str) -> int:
        with self.read() as conn:
            row = conn.execute("SELECT next_seq FROM outputs WHERE name=?", (output,)).fetchone()
        return int(row[0]) if row is not None else 1

    def first_seq_since(self, output: str, since: float) -> int:
        """Sequence number of the first record that arrived at or after `since` (or the next one)."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT MIN(seq) FROM records WHERE output=? AND arrival>=?", (output, since)
            ).fetchone()
        return int(row[0]) if row[0] is not None else self.next_seq(output)

    def records(self, output: str, start_seq: int, limit: int) -> list[StoredRecord]:
        with self.read() as conn:
            rows = conn.execute(
                "SELECT seq, arrival, partition_key, data FROM records WHERE output=? AND seq>=? "
                "ORDER BY seq LIMIT ?",
                (output, start_seq, limit),
            ).fetchall()
        return [StoredRecord(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def latest_arrival(self, output: str) -> float | None:
        with self.read() as conn:
            row = conn.execute("SELECT MAX(arrival) FROM records WHERE output=?", (output,)).fetchone()
        return row[0]

    def trim(self, retention_seconds: float) -> int:
        """Delete the records older than the retention period; returns how many."""
        with self.write() as conn:
            cursor = conn.execute("DELETE FROM records WHERE arrival<?", (time.time() - retention_seconds,))
            return cursor.rowcount
