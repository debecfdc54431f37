"""The audit log: every operation on biometric data, HMAC-chained in SQLite (`<home>/server/audit.sqlite`).

Who records: the core (collections service, image operations, video service) through `@audited`, so the
wire, REST, CLI and library adapters all write the same rows. An adapter only says who is calling
(`calling_as(Caller(...))`: key id, client address, request id); without one, the caller is the local OS
user from `local`. A request refused before it reaches the core (failed authentication, policy, validation)
is recorded by the server's dispatcher with `record_refusal`. Each row holds who, from where, what, which
collection, the threshold, the result count and the outcome ("OK" or the error code).

The chain: row n stores `hash = HMAC-SHA256(key, hash(n-1) + canonical JSON of row n)`, the first row
chaining from 64 zeros. The key lives apart from the log, in `<home>/server/audit.key` (0600, created on
first use, `FACEPRINT_AUDIT_KEY` names another path); it also records the first keyed row. Rows before that
(written by faceprint before the HMAC chain) keep their plain sha256 links: `verify` checks them as a
*legacy* chain and says so. Triggers refuse UPDATE and DELETE; `verify` finds an edited, deleted,
reordered or forged row, and a chain recomputed by someone without the key. A cut tail is found by
`verify(against=checkpoint)`, where the checkpoint is a signed head (`checkpoint()`) kept elsewhere.
Appends from several processes are serialised by SQLite (`BEGIN IMMEDIATE`, WAL); `append_many` writes
several events in one transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import getpass
import hashlib
import hmac
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from faceprint import config
from faceprint.database import enable_wal
from faceprint.files import private_file
from faceprint.migrations import Migration

GENESIS = "0" * 64
KEY_ENV = "FACEPRINT_AUDIT_KEY"
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
    hash TEXT NOT NULL,
    client TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
"""
_PG_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS audit (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, key_id TEXT, "
    "operation TEXT NOT NULL, collection TEXT, threshold DOUBLE PRECISION, matches BIGINT, request_id TEXT, "
    "outcome TEXT NOT NULL, detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, client TEXT)",
    "CREATE INDEX IF NOT EXISTS audit_time ON audit(time)",
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
)


def _pg_schema(conn: Any) -> None:
    for statement in _PG_STATEMENTS:
        conn.execute(statement)


# PostgreSQL only (`FACEPRINT_DATABASE_URL`); the SQLite file keeps creating its schema on open
MIGRATIONS = (Migration(1, "the HMAC-chained audit table, append-only", "", _pg_schema),)

_LEGACY_FIELDS = (
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
_FIELDS = (*_LEGACY_FIELDS, "client")
_COLUMNS = (*_LEGACY_FIELDS, "prev_hash", "hash", "client")


class AuditLogError(Exception):
    """The audit file or its key cannot be used (unreadable, not a database, key missing)."""


@dataclass(frozen=True)
class AuditEvent:
    """What happened; `outcome` is "OK" or the error code; `client` is the address or "local"."""

    operation: str
    key_id: str | None = None
    collection: str | None = None
    threshold: float | None = None
    matches: int | None = None
    request_id: str | None = None
    outcome: str = "OK"
    detail: dict[str, Any] | None = None
    client: str | None = None


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
    client: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """A signed head of the chain, to keep somewhere the log's writers cannot reach."""

    rows: int
    head: str
    time: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        try:
            return cls(int(data["rows"]), str(data["head"]), str(data["time"]), str(data["signature"]))
        except (TypeError, KeyError, ValueError):
            raise AuditLogError(
                "not a faceprint audit checkpoint (needs rows, head, time, signature)"
            ) from None


@dataclass(frozen=True)
class Verification:
    """The result of `AuditLog.verify`; `legacy_rows` were chained with plain sha256 (no key)."""

    ok: bool
    rows: int
    head: str
    bad_seq: int | None = None
    reason: str = ""
    legacy_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _payload(values: dict[str, Any], fields: tuple[str, ...]) -> bytes:
    return json.dumps([values[f] for f in fields], separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str, values: dict[str, Any]) -> str:
    """The legacy link: sha256 over the previous hash and the row's fields as canonical JSON."""
    return hashlib.sha256(prev_hash.encode() + _payload(values, _LEGACY_FIELDS)).hexdigest()


def row_mac(key: bytes, prev_hash: str, values: dict[str, Any]) -> str:
    """The keyed link: HMAC-SHA256 over the previous hash and the row's fields as canonical JSON."""
    return hmac.new(key, prev_hash.encode() + _payload(values, _FIELDS), hashlib.sha256).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChainKey:
    """The HMAC key and the first row it signs (earlier rows are the legacy sha256 chain)."""

    secret: bytes
    first_seq: int

    def checkpoint_signature(self, rows: int, head: str, time: str) -> str:
        signer = hmac.new(self.secret, b"faceprint-audit-checkpoint", hashlib.sha256).digest()
        message = json.dumps([rows, head, time], separators=(",", ":")).encode()
        return hmac.new(signer, message, hashlib.sha256).hexdigest()


def key_path(home: Path) -> Path:
    env = os.environ.get(KEY_ENV)
    return Path(env).expanduser() if env else Path(home) / "server" / "audit.key"


def _read_key(path: Path) -> ChainKey | None:
    try:
        data = json.loads(path.read_text())
        return ChainKey(bytes.fromhex(data["key"]), int(data["first_seq"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditLogError(f"the audit key {path} is unreadable: {exc}") from None


def _create_key(path: Path, first_seq: int) -> ChainKey:
    """Write a new key file (0600) unless another process just did; returns the key on disk."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"key": os.urandom(32).hex(), "first_seq": first_seq, "created": _now()})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    key = _read_key(path)
    assert key is not None
    return key


class AuditLog:
    """One process's handle on the shared audit table."""

    def __init__(self, path: Path, key_file: Path | None = None, database_url: str | None = None) -> None:
        self.path = Path(path)
        self.key_file = Path(key_file) if key_file is not None else self.path.parent / "audit.key"
        self._lock = threading.Lock()
        self._key: ChainKey | None = None
        url = database_url if database_url is not None else config.database_url()
        self._pg: Any = None
        if url:  # one chain for the whole cluster; appends serialised by the schema's advisory lock
            from faceprint.postgres import PostgresDatabase

            try:
                self._pg = PostgresDatabase(url, "audit", MIGRATIONS)
            except Exception as exc:
                raise AuditLogError(f"cannot open the audit log in PostgreSQL: {exc}") from None
            return
        try:
            private_file(self.path)  # SQLite gives its -wal/-shm files the database file's mode
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise AuditLogError(f"cannot open the audit log {self.path}: {exc}") from None
        try:
            enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                self._db.executescript(_SCHEMA)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(audit)")}
                if "client" not in columns:  # a log written before rows carried the client address
                    self._db.execute("ALTER TABLE audit ADD COLUMN client TEXT")
        except sqlite3.Error as exc:
            self._db.close()
            raise AuditLogError(f"the audit log {self.path} is unusable: {exc}") from None

    @classmethod
    def for_home(cls, home: Path) -> AuditLog:
        return cls(Path(home) / "server" / "audit.sqlite", key_path(home))

    def close(self) -> None:
        (self._pg if self._pg is not None else self._db).close()

    @contextlib.contextmanager
    def _appending(self) -> Iterator[Any]:
        """The append transaction: it holds the head of the chain until it commits."""
        if self._pg is not None:
            with self._lock, self._pg.write() as conn:
                yield conn
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        if self._pg is not None:
            with self._pg.read() as conn:
                yield conn
            return
        with self._lock:
            yield self._db

    def _chain_key(self, next_seq: int) -> ChainKey:
        if self._key is None:
            self._key = _read_key(self.key_file) or _create_key(self.key_file, next_seq)
        return self._key

    def append(self, event: AuditEvent) -> AuditRecord:
        """Append one row, chained to the current head (atomic across processes)."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[AuditEvent]) -> list[AuditRecord]:
        """Append several rows in one transaction (one commit for a batch, e.g. bulk indexing)."""
        events = list(events)
        now = _now()
        out: list[AuditRecord] = []
        with self._appending() as db:
            head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (head[0], head[1]) if head else (0, GENESIS)
            key = self._chain_key(seq + 1)
            for event in events:
                seq += 1
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
                    "detail": (
                        json.dumps(event.detail, sort_keys=True, separators=(",", ":"))
                        if event.detail
                        else None
                    ),
                    "client": event.client,
                }
                digest = row_mac(key.secret, prev, values)
                db.execute(
                    f"INSERT INTO audit ({', '.join(_FIELDS)}, prev_hash, hash) "
                    f"VALUES ({', '.join('?' * (len(_FIELDS) + 2))})",
                    [*values.values(), prev, digest],
                )
                out.append(AuditRecord(**values, prev_hash=prev, hash=digest))
                prev = digest
        return out

    def records(self, since: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Rows in order, optionally from an ISO time (`since`) on, optionally only the last `limit`."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit"
        args: list[Any] = []
        if since:
            sql += " WHERE time >= ?"
            args.append(since)
        sql += " ORDER BY seq"
        with self._reading() as db:
            rows = [AuditRecord(*r) for r in db.execute(sql, args)]
        return rows[-limit:] if limit else rows

    def checkpoint(self) -> Checkpoint:
        """The signed head: row count, last hash, time. Keep it elsewhere; `verify(against=...)` uses it."""
        with self._reading() as db:
            head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        rows, last = (int(head[0]), str(head[1])) if head else (0, GENESIS)
        key = _read_key(self.key_file) or self._chain_key(rows + 1)
        when = _now()
        return Checkpoint(rows, last, when, key.checkpoint_signature(rows, last, when))

    def verify(self, against: Checkpoint | None = None) -> Verification:
        """Recompute the chain (and compare with a checkpoint); reports the first row that does not match."""
        try:
            key = _read_key(self.key_file)
            records = self.records()
        except sqlite3.Error as exc:
            return Verification(False, 0, GENESIS, None, f"the audit file is corrupt: {exc}")
        except AuditLogError as exc:
            return Verification(False, 0, GENESIS, None, str(exc))
        prev, count, legacy = GENESIS, 0, 0
        for rec in records:
            values = {f: getattr(rec, f) for f in _FIELDS}
            if rec.seq != count + 1:
                what = "out of order" if rec.seq < count + 1 else f"row {count + 1} is missing"
                return Verification(False, count, prev, rec.seq, what, legacy)
            if rec.prev_hash != prev:
                return Verification(
                    False, count, prev, rec.seq, "prev_hash does not link to the previous row", legacy
                )
            keyed = key is not None and rec.seq >= key.first_seq
            expected = row_mac(key.secret, prev, values) if keyed else row_hash(prev, values)  # type: ignore[union-attr]
            if not hmac.compare_digest(expected, rec.hash):
                reason = (
                    "row content does not match its HMAC" if keyed else "row content does not match its hash"
                )
                if key is None:
                    reason += f" (and the audit key {self.key_file} is missing)"
                return Verification(False, count, prev, rec.seq, reason, legacy)
            legacy += not keyed
            prev = rec.hash
            count += 1
        if against is not None:
            problem = self._check_checkpoint(against, key, records)
            if problem:
                return Verification(False, count, prev, None, problem, legacy)
        return Verification(True, count, prev, legacy_rows=legacy)

    @staticmethod
    def _check_checkpoint(cp: Checkpoint, key: ChainKey | None, records: list[AuditRecord]) -> str:
        if key is None:
            return "the audit key is missing: the checkpoint's signature cannot be checked"
        if not hmac.compare_digest(key.checkpoint_signature(cp.rows, cp.head, cp.time), cp.signature):
            return "the checkpoint's signature is not valid for this log's key"
        if len(records) < cp.rows:
            return (
                f"the log has {len(records)} rows but the checkpoint of {cp.time} saw {cp.rows}: "
                "rows were removed from the tail"
            )
        if cp.rows and records[cp.rows - 1].hash != cp.head:
            return f"row {cp.rows} is not the row the checkpoint of {cp.time} signed"
        return ""


# -- who is calling ----------------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who calls the core, from where: a key id and client address (server), or the local OS user."""

    principal: str | None
    client: str
    request_id: str | None = None
    via: str = "library"
    recorded: bool = field(default=False, compare=False)  # the core has written this request's row


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("faceprint_caller", default=None)
_active: contextvars.ContextVar[bool] = contextvars.ContextVar("faceprint_audit_active", default=False)


@functools.cache
def local_user() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"local:uid{os.getuid()}"


def current_caller() -> Caller:
    """The caller set by an adapter, or the local OS user calling from `local`."""
    caller = _caller.get()
    return caller if caller is not None else Caller(local_user(), "local")


@contextlib.contextmanager
def calling_as(caller: Caller) -> Iterator[Caller]:
    """Run core calls on behalf of `caller` (what the audit rows and idempotency scopes name)."""
    token = _caller.set(caller)
    try:
        yield caller
    finally:
        _caller.reset(token)


def scoped_token(token: str | None) -> str | None:
    """A ClientRequestToken as stored: scoped to the caller, so one key never sees another's request."""
    if token is None:
        return None
    return f"{current_caller().principal or '-'}\x1f{token}"


# -- recording -------------------------------------------------------------------------------------------

_logs: dict[tuple[int, str], AuditLog] = {}
_logs_lock = threading.Lock()
_MAX_HANDLES = 32


def log_for(home: Path) -> AuditLog:
    """This process's handle on a home folder's audit log (opened once, shared by the core)."""
    slot = (os.getpid(), str(home))  # no path resolution on every request
    log = _logs.get(slot)
    if log is not None:
        return log
    with _logs_lock:
        log = _logs.get(slot)
        if log is None:
            path = Path(home).expanduser().resolve() / "server" / "audit.sqlite"
            if len(_logs) >= _MAX_HANDLES:  # many homes in one process (tests): forget the oldest handle;
                _logs.pop(next(iter(_logs)))  # its connection closes when its last user drops it
            log = _logs[slot] = AuditLog(path, key_path(home))
        return log


def event(
    operation: str,
    caller: Caller,
    collection: Any,
    threshold: Any,
    matches: int | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """The row of one operation by `caller` (for `AuditLog.append_many` when a batch is written at once)."""
    return AuditEvent(
        operation=_text(operation) or "-",
        key_id=_text(caller.principal),
        collection=_text(collection),
        threshold=float(threshold)
        if isinstance(threshold, int | float) and not isinstance(threshold, bool)
        else None,
        matches=matches,
        request_id=_text(caller.request_id),
        outcome=outcome,
        detail={"via": caller.via, **(detail or {})},
        client=_text(caller.client),
    )


def _text(value: Any) -> str | None:
    """A string as it can be stored: text the caller sent may hold lone surrogates, which UTF-8 cannot."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def record_refusal(
    home: Path, operation: str, code: str, collection: Any = None, threshold: Any = None
) -> None:
    """Record a request refused before it reached the core (authentication, policy, validation)."""
    caller = current_caller()
    log_for(home).append(event(operation, caller, collection, threshold, None, code))
    caller.recorded = True


F = TypeVar("F", bound=Callable[..., Any])


def audited(operation: str, threshold: str | None = None, matches: str | None = None) -> Callable[[F], F]:
    """Record every call of a core operation: OK with the result count, or the error code it raised.

    The home folder is the service's `home` attribute (methods) or `$FACEPRINT_HOME` (functions).
    A core operation called by another one (a video start checking its collection) is not recorded twice.
    """

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if _active.get():
                return func(*args, **kwargs)
            from faceprint.config import home_dir
            from faceprint.errors import FaceprintError

            home = getattr(args[0], "home", None) if args else None
            log = log_for(home if isinstance(home, Path) else home_dir())
            caller = current_caller()
            collection = collection_of(kwargs)
            passed = _threshold(kwargs, threshold)
            token = _active.set(True)
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                code = exc.code if isinstance(exc, FaceprintError) else "InternalServerError"
                log.append(event(operation, caller, collection, passed, None, code))
                caller.recorded = True
                raise
            finally:
                _active.reset(token)
            out = result if isinstance(result, dict) else {}
            used = out.get(threshold) if threshold and passed is None else passed
            count = len(out.get(matches) or []) if matches else None
            detail = follow_up(operation, kwargs, out, threshold)
            log.append(event(operation, caller, collection, used, count, "OK", detail))
            caller.recorded = True
            return result

        return inner  # type: ignore[return-value]

    return wrap


def collection_of(kwargs: dict[str, Any]) -> Any:
    """The collection a call works on: CollectionId, or the collection a ResourceArn names (tags)."""
    if "CollectionId" in kwargs or "ResourceArn" not in kwargs:
        return kwargs.get("CollectionId")
    from faceprint.rekognition import collection_of_arn

    return (collection_of_arn(kwargs["ResourceArn"]) or (None, None))[1]


def _threshold(kwargs: dict[str, Any], member: str | None) -> Any:
    """The threshold the caller passed (Rekognition's member name, or its snake_case in the library)."""
    if not member:
        return None
    value = kwargs.get(member)
    if value is None:
        import re

        value = kwargs.get(re.sub(r"(?<!^)(?=[A-Z])", "_", member).lower())
    return value


def follow_up(
    name: str, params: dict[str, Any], result: dict[str, Any], threshold: str | None
) -> dict[str, Any]:
    """The ids an auditor needs to follow up (matched and changed faces and users, at most 100 each)."""
    detail: dict[str, Any] = {}
    if name in ("SearchFaces", "SearchFacesByImage"):
        detail["face_ids"] = [m.get("Face", {}).get("FaceId") for m in result.get("FaceMatches") or []][:100]
    elif name in ("SearchUsers", "SearchUsersByImage"):
        detail["user_ids"] = [m.get("User", {}).get("UserId") for m in result.get("UserMatches") or []][:100]
    elif name == "IndexFaces":
        detail["face_ids"] = [r.get("Face", {}).get("FaceId") for r in result.get("FaceRecords") or []][:100]
        if isinstance(params.get("ExternalImageId"), str):
            detail["external_image_id"] = params["ExternalImageId"]
    elif name == "DeleteFaces":
        detail["face_ids"] = list(result.get("DeletedFaces") or [])[:100]
    elif name.startswith(("Start", "Get")) and isinstance(params.get("JobId") or result.get("JobId"), str):
        detail["job_id"] = params.get("JobId") or result.get("JobId")
    if threshold and _threshold(params, threshold) is None:  # the core's (calibrated) default was used
        detail["threshold"] = "default"
    for member in ("UserId", "FaceId"):
        if isinstance(params.get(member), str):
            detail[member.lower().replace("id", "_id")] = params[member]
    return detail


def record_local(
    home: Path,
    operation: str,
    collection: str | None = None,
    threshold: float | None = None,
    matches: int | None = None,
) -> None:
    """Append one row for the current caller (the local OS user by default). Core operations record
    themselves; this is for work that is not a core operation (kept for callers written before)."""
    log_for(home).append(event(operation, current_caller(), collection, threshold, matches, "OK"))
