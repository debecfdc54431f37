"""Access keys: creation, listing, revocation, and a small IAM-like policy per key.

Storage (`$FACEPRINT_HOME/server/`, both files mode 0600):
- `master.key`: 32 random bytes, created once.
- `keys.json`: per key its id, name, dates, status, policy and a random 16-byte `nonce`.

A secret is never stored: it is derived as `base64(HMAC-SHA256(master, "faceprint-secret-v1|id|nonce"))`,
shown once by `faceprint keys create`, and re-derived by the server to verify SigV4 (which needs the
secret itself, since the signing key is `HMAC("AWS4"+secret, date...)`). `keys.json` alone (a backup,
a log) reveals no secret; `master.key` plus `keys.json` reveal all of them, so keep the folder private.
Several processes may share the folder: writes take an exclusive `flock` and replace the file atomically;
readers reload it when its mtime/size/inode change.

Cluster mode (`FACEPRINT_DATABASE_URL`): the keys live in PostgreSQL (schema `keys`, one row per key,
written under the schema's advisory lock) and the master key comes from `FACEPRINT_MASTER_KEY_FILE`,
one file shared by every node. A node re-reads the keys at most `FACEPRINT_KEY_CACHE_SECONDS` (default
2) after its last read, so a key created or revoked on one node works, or stops working, on every node
within that time.
"""

from __future__ import annotations

import base64
import fcntl
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from faceprint import config
from faceprint.errors import InvalidParameterError, ResourceNotFoundError
from faceprint.files import private_dir, private_file, write_atomically
from faceprint.migrations import Migration

MIGRATIONS = (
    Migration(
        1,
        "access keys",
        "CREATE TABLE IF NOT EXISTS access_keys (access_key_id TEXT PRIMARY KEY, data TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS access_keys (access_key_id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    ),
)

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ID_PREFIX = "FPAK"


@dataclass(frozen=True)
class Policy:
    """Operations (globs over names like `SearchFaces*`, optional `rekognition:` prefix) and collections."""

    allow: tuple[str, ...] = ("*",)
    collections: tuple[str, ...] = ("*",)

    def allows_action(self, operation: str) -> bool:
        op = operation.lower()
        return any(fnmatch.fnmatchcase(op, _strip_service(p).lower()) for p in self.allow)

    def allows_collection(self, collection_id: str) -> bool:
        return any(fnmatch.fnmatchcase(collection_id, p) for p in self.collections)


def _strip_service(pattern: str) -> str:
    return pattern.split(":", 1)[1] if pattern.lower().startswith(("rekognition:", "kinesis:")) else pattern


@dataclass(frozen=True)
class AccessKey:
    """A stored key: everything but the secret."""

    access_key_id: str
    name: str
    created: float
    nonce: str
    status: str = "Active"  # or "Revoked"
    revoked: float | None = None
    policy: Policy = field(default_factory=Policy)

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def public(self) -> dict[str, object]:
        """What `keys list` shows (no nonce)."""
        return {
            "AccessKeyId": self.access_key_id,
            "Name": self.name,
            "Status": self.status,
            "Created": self.created,
            "Revoked": self.revoked,
            "Allow": list(self.policy.allow),
            "Collections": list(self.policy.collections),
        }


def parse_patterns(text: str | Iterable[str] | None, known: Iterable[str] | None = None) -> tuple[str, ...]:
    """Split a comma-separated pattern list; with `known`, every pattern must match a known name."""
    if text is None:
        return ("*",)
    items = text.split(",") if isinstance(text, str) else list(text)
    patterns = tuple(p.strip() for p in items if p.strip())
    if not patterns:
        raise InvalidParameterError("an empty pattern list allows nothing; omit the option to allow all")
    if known is not None:
        names = [k.lower() for k in known]
        for p in patterns:
            if not any(fnmatch.fnmatchcase(n, _strip_service(p).lower()) for n in names):
                raise InvalidParameterError(f"'{p}' matches no operation")
    return patterns


class KeyStore:
    """The keys of one home folder."""

    def __init__(self, home: Path, database_url: str | None = None) -> None:
        self.folder = Path(home) / "server"
        self.path = self.folder / "keys.json"
        self.master_path = config.master_key_file(Path(home))
        self.lock_path = self.folder / "keys.lock"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | float | None = None
        url = database_url if database_url is not None else config.database_url()
        self._db: Any = None
        self._tx = threading.local()  # the PostgreSQL write transaction of `_exclusive`, per thread
        if url:
            from faceprint.postgres import PostgresDatabase

            self._db = PostgresDatabase(url, "keys", MIGRATIONS)
            self.cache_seconds = config.key_cache_seconds()
        self._keys: dict[str, AccessKey] = {}
        self._master: bytes | None = None
        if self.folder.is_dir():  # a home made by an older faceprint: tighten what it left readable
            private_dir(self.folder)
            for path in (self.path, self.master_path):
                if path.exists():
                    private_file(path)

    # --- public API ---------------------------------------------------------------------------------
    def create(
        self, name: str = "", allow: tuple[str, ...] = ("*",), collections: tuple[str, ...] = ("*",)
    ) -> tuple[AccessKey, str]:
        """Create a key; returns it and its secret (the only time the secret is returned)."""
        with self._exclusive():
            keys = self._read()
            key_id = ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
            key = AccessKey(
                access_key_id=key_id,
                name=name or key_id,
                created=time.time(),
                nonce=secrets.token_hex(16),
                policy=Policy(tuple(allow), tuple(collections)),
            )
            keys[key_id] = key
            self._write(keys)
        return key, self._derive(key)

    def revoke(self, key_id: str) -> AccessKey:
        """Mark a key revoked; it stops verifying immediately in every server process."""
        with self._exclusive():
            keys = self._read()
            if key_id not in keys:
                raise ResourceNotFoundError(f"no access key {key_id}")
            key = keys[key_id]
            if key.active:
                key = replace(key, status="Revoked", revoked=time.time())
                keys[key_id] = key
                self._write(keys)
        return key

    def list(self) -> list[AccessKey]:
        """All keys, oldest first."""
        return sorted(self._current().values(), key=lambda k: k.created)

    def get(self, key_id: str) -> AccessKey | None:
        """The active key with this id, or None."""
        key = self._current().get(key_id)
        return key if key is not None and key.active else None

    def secret_for(self, key_id: str) -> str | None:
        """The secret of an active key (re-derived), or None."""
        key = self.get(key_id)
        return self._derive(key) if key is not None else None

    def check_secret(self, key_id: str, secret: str) -> AccessKey | None:
        """The active key if `secret` is its secret (constant-time), else None."""
        expected = self.secret_for(key_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return None
        return self.get(key_id)

    def derived_secret(self, purpose: str) -> bytes:
        """A server-side secret for `purpose` (e.g. signing session tokens), derived from the master key."""
        return hmac.new(self._master_key(), f"faceprint-{purpose}-v1".encode(), hashlib.sha256).digest()

    # --- storage ------------------------------------------------------------------------------------
    def _derive(self, key: AccessKey) -> str:
        message = f"faceprint-secret-v1|{key.access_key_id}|{key.nonce}".encode()
        digest = hmac.new(self._master_key(), message, hashlib.sha256).digest()
        return base64.b64encode(digest[:30]).decode()  # 40 characters, like AWS secrets

    def _master_key(self) -> bytes:
        if self._master is None:
            with self._file_lock():
                if not self.master_path.exists():
                    private_dir(self.master_path.parent)
                    write_atomically(self.master_path, lambda fh: fh.write(secrets.token_bytes(32)))  # 0600
                self._master = self.master_path.read_bytes()
        return self._master

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """The home's `keys.lock`, held exclusively (key file writes and master key creation)."""
        private_dir(self.folder)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _current(self) -> dict[str, AccessKey]:
        if self._db is not None:  # the cluster's keys, re-read at most every `cache_seconds`
            with self._lock:
                now = time.monotonic()
                if not isinstance(self._stamp, float) or now - self._stamp >= self.cache_seconds:
                    self._keys = self._read()
                    self._stamp = now
                return self._keys
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._keys = self._read()
                self._stamp = stamp
            return self._keys

    def _read(self) -> dict[str, AccessKey]:
        if self._db is not None:
            conn = getattr(self._tx, "conn", None)
            if conn is not None:
                items = [json.loads(r[0]) for r in conn.execute("SELECT data FROM access_keys")]
            else:
                with self._db.read() as conn:
                    items = [json.loads(r[0]) for r in conn.execute("SELECT data FROM access_keys")]
        else:
            try:
                items = json.loads(self.path.read_text()).get("keys", [])
            except FileNotFoundError:
                return {}
        keys = {}
        for item in items:
            policy = Policy(tuple(item.pop("allow", ["*"])), tuple(item.pop("collections", ["*"])))
            keys[item["access_key_id"]] = AccessKey(policy=policy, **item)
        return keys

    def _write(self, keys: dict[str, AccessKey]) -> None:
        items = []
        for key in keys.values():
            item = asdict(key)
            policy = item.pop("policy")
            items.append({**item, "allow": list(policy["allow"]), "collections": list(policy["collections"])})
        if self._db is not None:
            conn = self._tx.conn  # inside `_exclusive`
            conn.execute("DELETE FROM access_keys")
            conn.executemany(
                "INSERT INTO access_keys (access_key_id, data) VALUES (?, ?)",
                [(item["access_key_id"], json.dumps(item)) for item in items],
            )
            self._stamp = None  # this node sees its own change at once
            return
        data = json.dumps({"version": 1, "keys": items}, indent=1).encode()
        write_atomically(self.path, lambda fh: fh.write(data))  # 0600

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self._db is not None:  # one write transaction under the schema's advisory lock
            with self._db.write() as conn:
                self._tx.conn = conn
                try:
                    yield
                finally:
                    self._tx.conn = None
            return
        with self._file_lock():
            yield
