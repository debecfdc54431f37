"""PostgreSQL twin of `faceprint.database.Database`: pooled connections, the same `read()`/`write()`.

Each faceprint component keeps its tables in its own PostgreSQL schema (`collections`, `video`,
`audit`, `keys`) of the one shared database, so their SQL runs unchanged on SQLite and PostgreSQL: the
connection adapter turns `?` placeholders into `%s` and returns rows readable by position or by name.

- Every connection comes from a `psycopg_pool.ConnectionPool` (per process and schema), checked before
  use, so a restarted PostgreSQL costs no failed request after the first reconnect.
- Writes are one READ COMMITTED transaction that first takes the schema's advisory transaction lock
  (`serialised=True`, the default): writers serialise across nodes as SQLite's `BEGIN IMMEDIATE`
  serialises processes. Reads are one REPEATABLE READ, READ ONLY transaction (one snapshot).
- A PostgreSQL that is down, unreachable or stuck answers `StorageUnavailableError` (the modeled
  `InternalServerError`, HTTP 500) within a bounded time: `connect_timeout`, `statement_timeout` and
  `lock_timeout` on the server, the pool's wait timeout and a watchdog on the client (see
  `PostgresSettings`). After one failed call, calls to the same database fail at once for
  `OUTAGE_SECONDS`, so a request that touches several schemas (keys, collections, audit) waits once.
- Schema versions are not upgraded implicitly: `faceprint db upgrade` applies the migrations; a node
  refuses a database at another version than its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from faceprint.config import PostgresSettings
from faceprint.errors import InternalServerError
from faceprint.migrations import Migration, apply, check, latest

SCHEMAS = ("collections", "video", "audit", "keys")
log = logging.getLogger(__name__)


class StorageUnavailableError(InternalServerError):
    """PostgreSQL could not be reached or did not answer in time (nothing was written)."""


class Row(tuple):
    """A result row readable by position (`row[0]`) and by column name (`row["job_id"]`)."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` (faceprint's SQL has no `?` or `%` inside literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Watchdog:
    """Cuts the socket of a connection whose server has not answered for `seconds`.

    `statement_timeout` bounds a query on a live server; a server that stopped answering altogether (a
    frozen host or process) answers nothing, not even the timeout, and TCP keeps the socket open. The
    watchdog shuts such a socket down, so the waiting call fails at once (psycopg's OperationalError,
    then StorageUnavailableError) instead of hanging."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._due: dict[int, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @contextmanager
    def guard(self, raw: Any, seconds: float | None = None) -> Iterator[None]:
        """Bound one round trip of `raw` to the server."""
        with self._lock:
            self._due[id(raw)] = (raw, time.monotonic() + (seconds or self.seconds))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="faceprint-pg-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(id(raw), None)

    def _run(self) -> None:
        while not self._stopped.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [raw for raw, due in self._due.values() if due < now]
                for raw in late:
                    self._due.pop(id(raw), None)
            for raw in late:
                log.warning("PostgreSQL did not answer within %.1f s: closing the connection", self.seconds)
                with contextlib.suppress(Exception):  # the dup'd socket: shutdown reaches the shared one
                    sock = socket.socket(fileno=os.dup(raw.pgconn.socket))
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def stop(self) -> None:
        self._stopped.set()


class Connection:
    """The slice of sqlite3.Connection that faceprint's stores use, over a psycopg connection; every
    statement is bounded by the watchdog."""

    def __init__(self, conn: Any, watchdog: Watchdog) -> None:
        self.raw = conn
        self._watchdog = watchdog

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._watchdog.guard(self.raw):
            return self.raw.execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._watchdog.guard(self.raw), self.raw.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)


def lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


OUTAGE_SECONDS = 1.0  # after a failed call, calls to the same database fail at once for this long
_outages: dict[str, float] = {}  # database URL -> monotonic time until which it is known to be out


def _unavailable(exc: BaseException, schema: str) -> StorageUnavailableError:
    """The client learns that the database is out (not its address); the log has the cause."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    log.warning("PostgreSQL (%s schema) is unavailable: %s", schema, detail)
    return StorageUnavailableError("the database is unavailable; try your call again")


class PostgresDatabase:
    """One schema of the shared PostgreSQL database, used by threads through a connection pool."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        schema: str,
        migrations: Sequence[Migration],
        settings: PostgresSettings | None = None,
        upgrade: bool = False,
    ) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        if schema not in SCHEMAS:
            raise ValueError(f"unknown schema {schema!r}")
        self.schema = schema
        self.url = url
        self.settings = settings or PostgresSettings.from_env()
        self.migrations = migrations
        self._errors: tuple[type[BaseException], ...] = (psycopg.OperationalError, PoolTimeout)
        self._psycopg = psycopg
        s = self.settings
        options = (
            f"-c search_path={schema} -c statement_timeout={int(s.statement_timeout * 1000)} "
            f"-c lock_timeout={int(s.lock_timeout * 1000)} "
            f"-c idle_in_transaction_session_timeout={int(s.statement_timeout * 2000)}"
        )
        self.pool = ConnectionPool(
            url,
            kwargs={
                "connect_timeout": max(1, round(s.connect_timeout)),
                "options": options,
                "application_name": f"faceprint-{schema}",
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 2,
                "tcp_user_timeout": int(s.statement_timeout * 1000),
                "row_factory": _row_factory,
            },
            min_size=s.pool_min,
            max_size=s.pool_max,
            timeout=s.pool_timeout,
            check=self._check,
            reconnect_timeout=s.pool_timeout,
            open=False,
            name=f"faceprint-{schema}",
        )
        # a server that is alive answers within statement_timeout; the watchdog waits a little longer
        self.watchdog = Watchdog(s.statement_timeout + 2.0)
        self.pool.open(wait=False)
        self._lock_key = lock_key(f"faceprint:{schema}:write")
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            self._prepare(upgrade)
        except BaseException:
            self.close()
            raise

    def _check(self, raw: Any) -> None:
        """The pool's check of a connection before lending it (an empty query), bounded as a connect."""
        with self.watchdog.guard(raw, self.settings.connect_timeout):
            raw.autocommit = True
            try:
                raw.execute("")
            finally:
                raw.autocommit = False

    def _prepare(self, upgrade: bool) -> None:
        with self._connection() as raw:
            conn = Connection(raw, self.watchdog)
            if upgrade:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                conn.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key,))
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)")
                self.schema_version, self.applied = apply(conn, self.migrations, "postgres")
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('token_key', ?) ON CONFLICT (key) DO NOTHING",
                    (secrets.token_bytes(32),),
                )
            else:
                exists = conn.execute(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema=? AND table_name='meta'",
                    (self.schema,),
                ).fetchone()
                if exists is None:
                    from faceprint.migrations import SchemaVersionError

                    raise SchemaVersionError(
                        f"the PostgreSQL database has no faceprint {self.schema} schema yet: "
                        "run `faceprint db upgrade`"
                    )
                self.schema_version = check(conn, self.migrations, self.schema)
                self.applied = []

    @contextmanager
    def _connection(self, read_only: bool = False) -> Iterator[Any]:
        """A pooled connection in a transaction, committed on exit; outages become
        StorageUnavailableError. Writes run READ COMMITTED (each statement sees the rows the previous
        lock holder committed); reads REPEATABLE READ, READ ONLY (one snapshot). psycopg opens the
        transaction with these (`BEGIN ISOLATION LEVEL ...`): no extra round trip."""
        if _outages.get(self.url, 0.0) > time.monotonic():  # known to be out: do not wait again
            raise StorageUnavailableError("the database is unavailable; try your call again")
        try:
            with self.pool.connection() as raw:
                if read_only:
                    raw.isolation_level = self._psycopg.IsolationLevel.REPEATABLE_READ
                    raw.read_only = True
                else:
                    raw.isolation_level, raw.read_only = None, False
                yield raw
                with self.watchdog.guard(raw):
                    raw.commit()
        except self._errors as exc:
            _outages[self.url] = time.monotonic() + OUTAGE_SECONDS
            raise _unavailable(exc, self.schema) from exc

    @contextmanager
    def write(self, serialised: bool = True) -> Iterator[Connection]:
        """One write transaction, committed (durably) on exit and rolled back on error. `serialised`
        first takes this schema's advisory lock, so writers run one at a time across nodes."""
        with self._connection() as raw:
            conn = Connection(raw, self.watchdog)
            if serialised:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key,))
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction on one snapshot."""
        with self._connection(read_only=True) as raw:
            yield Connection(raw, self.watchdog)

    def token_key(self) -> bytes:
        with self.read() as conn:
            return bytes(conn.execute("SELECT value FROM meta WHERE key='token_key'").fetchone()[0])

    def integrity_check(self) -> str:
        with self.read() as conn:
            conn.execute("SELECT 1")
        return "ok"

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self.pool.close(timeout=self.settings.pool_timeout)
                self.watchdog.stop()


def components() -> list[tuple[str, Sequence[Migration]]]:
    """(PostgreSQL schema, migrations) of every component stored in the shared database."""
    from faceprint.audit import MIGRATIONS as AUDIT
    from faceprint.collections.store import MIGRATIONS as COLLECTIONS
    from faceprint.server.keys import MIGRATIONS as KEYS
    from faceprint.video.jobs import MIGRATIONS as VIDEO

    return [("collections", COLLECTIONS), ("video", VIDEO), ("audit", AUDIT), ("keys", KEYS)]


def upgrade_all(url: str, settings: PostgresSettings | None = None) -> dict[str, Any]:
    """Apply every component's pending migrations (idempotent); returns per schema its version, the
    latest version and the migrations applied now."""
    out: dict[str, Any] = {}
    for schema, migrations in components():
        db = PostgresDatabase(url, schema, migrations, settings, upgrade=True)
        try:
            out[schema] = {
                "Version": db.schema_version,
                "Latest": latest(migrations),
                "Applied": [{"Version": m.version, "Description": m.description} for m in db.applied],
            }
        finally:
            db.close()
    return out
