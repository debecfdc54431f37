"""A durable SQLite file: WAL, synchronous=FULL, one connection per thread, explicit transactions.

The collections store and the video job store both build on it, so every acknowledged write in
faceprint has the same guarantee: once `write()` returns, the transaction survives a crash. Its schema
is a list of versioned migrations (`faceprint.migrations`), applied transparently on open; the
PostgreSQL twin with the same `read()`/`write()` interface is `faceprint.postgres.PostgresDatabase`.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from faceprint.files import private_file
from faceprint.migrations import Migration, apply_sqlite, as_migrations

BUSY_SECONDS = 60.0  # how long a connection waits for another process's lock


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another process holds the lock.

    Processes that open a new database at the same moment (the workers of `faceprint serve --workers 2`)
    race to switch its journal mode, and SQLite answers the loser "database is locked" at once, without
    waiting for the busy timeout.
    """
    deadline, pause = time.monotonic() + BUSY_SECONDS, 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.25)


class Database:
    """One SQLite file shared by threads (a connection each) and processes (WAL + busy timeout)."""

    row_factory: type | None = None
    dialect = "sqlite"

    def __init__(self, path: Path, schema: str | Sequence[Migration]) -> None:
        self.path = Path(path)
        private_file(self.path)  # faces and match results: owner only (0600 in a 0700 folder)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            self.schema_version = apply_sqlite(conn, as_migrations(schema))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('token_key', ?)", (secrets.token_bytes(32),))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
            )
            if self.row_factory is not None:
                conn.row_factory = self.row_factory
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self, serialised: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed durably on exit, rolled back on error.

        SQLite always serialises writers; `serialised=False` matters only to PostgreSQL."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def integrity_check(self) -> str:
        """'ok', or the problems `PRAGMA integrity_check` found."""
        with self.read() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def token_key(self) -> bytes:
        """Secret of this database, used to sign pagination tokens."""
        with self.read() as conn:
            return bytes(conn.execute("SELECT value FROM meta WHERE key='token_key'").fetchone()[0])
