"""SQLite store of collections, faces, users and associations: the source of truth of every collection.

One database file per home folder (`<home>/faceprint.db`), in WAL mode with `synchronous=FULL`, so a
write that returned is on disk. Every write is one `BEGIN IMMEDIATE` transaction, so processes sharing a
home folder serialise their writes and readers always see a consistent snapshot.

Each face addition or removal also appends a row to `changes` (a global, never reused sequence) and moves
its collection's `last_seq`: the vector indexes (`IndexCache`, at the end of this module) are caches
that replay this log to catch up, and rebuild from the `faces` table when they cannot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.database import Database
from faceprint.errors import (
    ConflictError,
    FaceprintError,
    IdempotentParameterMismatchError,
    ResourceAlreadyExistsError,
    ResourceNotFoundError,
    ServiceQuotaExceededError,
)
from faceprint.files import private_dir

DB_NAME = "faceprint.db"
SCHEMA_VERSION = 1
ADD, REMOVE = 1, 2  # change-log operations
MAX_FACES_PER_USER = 100
TOKEN_TTL_SECONDS = 24 * 3600  # how long a ClientRequestToken is remembered
_CHUNK = 500  # SQL parameters per IN (...) list
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    model_version TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    face_count INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0,
    log_floor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created REAL NOT NULL,
    face_count INTEGER NOT NULL DEFAULT 0,
    template BLOB,
    UNIQUE (collection_id, user_id)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    face_id TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    external_image_id TEXT,
    box_left REAL NOT NULL, box_top REAL NOT NULL, box_width REAL NOT NULL, box_height REAL NOT NULL,
    confidence REAL NOT NULL,
    brightness REAL, sharpness REAL, roll REAL, yaw REAL, pitch REAL,
    embedding BLOB NOT NULL,
    model_version TEXT NOT NULL,
    user_row INTEGER REFERENCES users(id) ON DELETE SET NULL,
    chip BLOB,
    created REAL NOT NULL,
    cohort_mu REAL, cohort_sd REAL, cohort_tag TEXT
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces (collection_id, id);
CREATE INDEX IF NOT EXISTS faces_by_image ON faces (collection_id, image_sha256);
CREATE INDEX IF NOT EXISTS faces_by_user ON faces (user_row);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    op INTEGER NOT NULL,
    face_row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_collection ON changes (collection_id, seq);
CREATE TABLE IF NOT EXISTS requests (
    collection_id INTEGER NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    digest TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (collection_id, operation, token)
);
CREATE INDEX IF NOT EXISTS requests_by_age ON requests (created);
CREATE INDEX IF NOT EXISTS requests_by_token ON requests (operation, token);
"""

_FACE_COLUMNS = (
    "f.id, f.face_id, f.image_id, f.external_image_id, f.box_left, f.box_top, f.box_width, f.box_height, "
    "f.confidence, f.model_version, u.user_id, f.cohort_mu, f.cohort_sd, f.cohort_tag"
)
# columns added after the first release: (name, SQL type); a database without them gains them on open
_ADDED_FACE_COLUMNS = (("cohort_mu", "REAL"), ("cohort_sd", "REAL"), ("cohort_tag", "TEXT"))
_FACE_FROM = "faces f LEFT JOIN users u ON u.id = f.user_row"


@dataclass(frozen=True)
class CollectionRow:
    id: int
    name: str
    created: float
    model_version: str
    tags: dict[str, str]
    face_count: int
    last_seq: int
    log_floor: int


@dataclass(frozen=True)
class FaceRow:
    row: int  # vector id in the index (never reused)
    face_id: str
    image_id: str
    external_image_id: str | None
    box: tuple[float, float, float, float]  # Left, Top, Width, Height as ratios of the image
    confidence: float
    model_version: str
    user_id: str | None
    embedding: np.ndarray | None = None
    cohort: tuple[float, float] | None = None  # cohort statistics (mu, sd) stored at index time
    cohort_tag: str | None = None  # which cohort and k they were computed with (None: before the upgrade)


@dataclass
class NewFace:
    """A face about to be stored (box as ratios of the image, like Rekognition's BoundingBox)."""

    face_id: str
    box: tuple[float, float, float, float]
    confidence: float
    brightness: float
    sharpness: float
    pose: tuple[float, float, float]  # roll, yaw, pitch
    embedding: np.ndarray
    model_version: str
    chip: bytes | None = None
    cohort: tuple[float, float] | None = None  # the scorer's statistics of `embedding`
    cohort_tag: str | None = None


@dataclass(frozen=True)
class ImageFaces:
    """The faces of one image to store with `Store.add_images` (the arguments of `add_faces`)."""

    collection: str
    image_sha256: str
    image_id: str
    external_image_id: str | None
    faces: Sequence[NewFace]


@dataclass(frozen=True)
class UserRow:
    row: int
    user_id: str
    face_count: int
    template: np.ndarray | None

    @property
    def status(self) -> str:
        return "ACTIVE" if self.face_count else "CREATED"


@dataclass(frozen=True)
class IndexDelta:
    """What a vector index at some sequence number lacks to match SQLite."""

    last_seq: int
    face_count: int
    add_ids: np.ndarray
    add_vectors: np.ndarray | None
    remove_ids: np.ndarray


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def fuse_template(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    """One template for several faces of a person: their mean, rescaled to their mean length."""
    if not len(vectors):
        return None
    mat = np.asarray(vectors, dtype=np.float64)
    mean = mat.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        mean *= float(np.linalg.norm(mat, axis=1).mean()) / norm
    return mean.astype(np.float32)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (left, top, width, height) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Store(Database):
    """Transactional access to one home folder's database; safe across threads and processes."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        super().__init__(self.home / DB_NAME, _SCHEMA)
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            have = {r[1] for r in conn.execute("PRAGMA table_info(faces)")}
            for column, kind in _ADDED_FACE_COLUMNS:
                if column not in have:  # a collection stored before cohort normalisation: kept as is
                    conn.execute(f"ALTER TABLE faces ADD COLUMN {column} {kind}")

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, model_version: str, tags: dict[str, str]) -> CollectionRow:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM collections WHERE name=?", (name,)).fetchone():
                raise ResourceAlreadyExistsError(f"collection {name!r} already exists")
            conn.execute(
                "INSERT INTO collections (name, created, model_version, tags) VALUES (?, ?, ?, ?)",
                (name, time.time(), model_version, json.dumps(tags, sort_keys=True)),
            )
            return self._collection(conn, name)

    def delete_collection(self, name: str) -> int:
        """Delete a collection with its faces, users and log; returns its internal id."""
        with self.write() as conn:
            coll = self._collection(conn, name)
            for table in ("faces", "users", "changes", "requests"):
                conn.execute(f"DELETE FROM {table} WHERE collection_id=?", (coll.id,))
            conn.execute("DELETE FROM collections WHERE id=?", (coll.id,))
            return coll.id

    def update_tags(self, name: str, add: dict[str, str], remove: Sequence[str], max_tags: int) -> dict:
        """Set `add` and drop `remove` on a collection's tags in one transaction; returns the new tags."""
        with self.write() as conn:
            tags = {k: v for k, v in {**self._collection(conn, name).tags, **add}.items() if k not in remove}
            if len(tags) > max_tags:
                raise ServiceQuotaExceededError(
                    f"a collection holds at most {max_tags} tags, not {len(tags)}"
                )
            conn.execute(
                "UPDATE collections SET tags=? WHERE name=?", (json.dumps(tags, sort_keys=True), name)
            )
            return tags

    def collection(self, name: str) -> CollectionRow:
        with self.read() as conn:
            return self._collection(conn, name)

    def user_count(self, collection_id: int) -> int:
        with self.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM users WHERE collection_id=?", (collection_id,)
            ).fetchone()
        return int(row[0])

    def list_collections(self, after_id: int, limit: int) -> list[CollectionRow]:
        """Collections in creation order whose id is > `after_id`."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT * FROM collections WHERE id>? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [self._collection_row(r) for r in rows]

    @staticmethod
    def _collection_row(r: tuple) -> CollectionRow:
        return CollectionRow(
            id=r[0],
            name=r[1],
            created=r[2],
            model_version=r[3],
            tags=json.loads(r[4]),
            face_count=r[5],
            last_seq=r[6],
            log_floor=r[7],
        )

    def _collection(self, conn: sqlite3.Connection, name: str) -> CollectionRow:
        row = conn.execute("SELECT * FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"collection {name!r} does not exist")
        return self._collection_row(row)

    def _log(self, conn: sqlite3.Connection, coll: CollectionRow, op: int, rows: Sequence[int]) -> None:
        """Append face additions or removals to the change log and move the collection's counters."""
        if not rows:
            return
        conn.executemany(
            "INSERT INTO changes (collection_id, op, face_row) VALUES (?, ?, ?)",
            [(coll.id, op, r) for r in rows],
        )
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        delta = len(rows) if op == ADD else -len(rows)
        conn.execute(
            "UPDATE collections SET last_seq=?, face_count=face_count+? WHERE id=?", (last, delta, coll.id)
        )

    # -- faces ----------------------------------------------------------------------------------------

    def add_faces(
        self,
        name: str,
        image_sha256: str,
        image_id: str,
        external_image_id: str | None,
        faces: Sequence[NewFace],
        max_collection_faces: int,
    ) -> list[FaceRow]:
        """Store the faces of one image; returns one row per input face, in order.

        A face already stored from the same image bytes with the same ExternalImageId (its box overlapping
        by IoU >= 0.5) is returned as stored, not saved twice. Faces from an image already in the
        collection reuse that image's ImageId.
        """
        with self.write() as conn:
            return self._add_faces(
                conn, name, image_sha256, image_id, external_image_id, faces, max_collection_faces
            )

    def add_images(
        self, images: Sequence[ImageFaces], max_collection_faces: int
    ) -> list[list[FaceRow] | FaceprintError]:
        """`add_faces` for several images in one durable transaction (one commit, one fsync).

        Each image is stored in its own savepoint: one that fails (its collection was deleted, the quota
        is reached) gets its error in its place of the result and leaves the others stored.
        """
        out: list[list[FaceRow] | FaceprintError] = []
        with self.write() as conn:
            for item in images:
                conn.execute("SAVEPOINT image")
                try:
                    rows = self._add_faces(
                        conn,
                        item.collection,
                        item.image_sha256,
                        item.image_id,
                        item.external_image_id,
                        item.faces,
                        max_collection_faces,
                    )
                except FaceprintError as exc:
                    conn.execute("ROLLBACK TO image")
                    out.append(exc)
                else:
                    out.append(rows)
                conn.execute("RELEASE image")
        return out

    def _add_faces(
        self,
        conn: sqlite3.Connection,
        name: str,
        image_sha256: str,
        image_id: str,
        external_image_id: str | None,
        faces: Sequence[NewFace],
        max_collection_faces: int,
    ) -> list[FaceRow]:
        coll = self._collection(conn, name)
        existing = conn.execute(
            f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.collection_id=? AND f.image_sha256=? "
            "ORDER BY f.id",
            (coll.id, image_sha256),
        ).fetchall()
        stored = [self._face_row(r) for r in existing]
        if stored:
            image_id = stored[0].image_id
        same_ext = [f for f in stored if f.external_image_id == external_image_id]
        out: list[FaceRow] = []
        new_rows: list[int] = []
        now = time.time()
        for face in faces:
            dup = max(same_ext, key=lambda s: box_iou(s.box, face.box), default=None)
            if dup is not None and box_iou(dup.box, face.box) >= 0.5:
                same_ext.remove(dup)
                out.append(dup)
                continue
            cur = conn.execute(
                "INSERT INTO faces (collection_id, face_id, image_id, image_sha256, external_image_id, "
                "box_left, box_top, box_width, box_height, confidence, brightness, sharpness, roll, yaw, "
                "pitch, embedding, model_version, chip, created, cohort_mu, cohort_sd, cohort_tag) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    coll.id,
                    face.face_id,
                    image_id,
                    image_sha256,
                    external_image_id,
                    *face.box,
                    face.confidence,
                    face.brightness,
                    face.sharpness,
                    *face.pose,
                    to_blob(face.embedding),
                    face.model_version,
                    face.chip,
                    now,
                    *(face.cohort if face.cohort is not None else (None, None)),
                    face.cohort_tag if face.cohort is not None else None,
                ),
            )
            new_rows.append(int(cur.lastrowid))
            out.append(
                FaceRow(
                    row=int(cur.lastrowid),
                    face_id=face.face_id,
                    image_id=image_id,
                    external_image_id=external_image_id,
                    box=tuple(face.box),
                    confidence=face.confidence,
                    model_version=face.model_version,
                    user_id=None,
                    cohort=face.cohort,
                    cohort_tag=face.cohort_tag if face.cohort is not None else None,
                )
            )
        if coll.face_count + len(new_rows) > max_collection_faces:
            raise ServiceQuotaExceededError(
                f"collection {name!r} would exceed {max_collection_faces:,} faces"
            )
        self._log(conn, coll, ADD, new_rows)
        return out

    @staticmethod
    def _face_row(r: tuple, embedding: bytes | None = None) -> FaceRow:
        return FaceRow(
            row=r[0],
            face_id=r[1],
            image_id=r[2],
            external_image_id=r[3],
            box=(r[4], r[5], r[6], r[7]),
            confidence=r[8],
            model_version=r[9],
            user_id=r[10],
            embedding=from_blob(embedding) if embedding is not None else None,
            cohort=None if r[11] is None or r[12] is None else (float(r[11]), float(r[12])),
            cohort_tag=r[13],
        )

    def list_faces(
        self,
        collection_id: int,
        after_row: int,
        limit: int,
        face_ids: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> list[FaceRow]:
        """Faces in storage order after `after_row`, optionally only these FaceIds and/or this user's."""
        sql = f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.collection_id=? AND f.id>?"
        args: list = [collection_id, after_row]
        if user_id is not None:
            sql += " AND u.user_id=?"
            args.append(user_id)
        if face_ids is not None:
            sql += " AND f.face_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(face_ids)))
        sql += " ORDER BY f.id LIMIT ?"
        args.append(limit)
        with self.read() as conn:
            return [self._face_row(r) for r in conn.execute(sql, args).fetchall()]

    def face(self, collection_id: int, face_id: str, embedding: bool = False) -> FaceRow | None:
        """One face of a collection by FaceId, or None."""
        with self.read() as conn:
            row = conn.execute(
                f"SELECT {_FACE_COLUMNS}, f.embedding FROM {_FACE_FROM} "
                "WHERE f.collection_id=? AND f.face_id=?",
                (collection_id, face_id),
            ).fetchone()
        if row is None:
            return None
        return self._face_row(row[:-1], row[-1] if embedding else None)

    def faces_by_row(
        self, collection_id: int, rows: Iterable[int], embeddings: bool = False
    ) -> dict[int, FaceRow]:
        """The faces of a collection that still exist among these vector ids."""
        ids = [int(r) for r in rows]
        out: dict[int, FaceRow] = {}
        with self.read() as conn:
            for part in _chunks(ids):
                for r in conn.execute(
                    f"SELECT {_FACE_COLUMNS}, f.embedding FROM {_FACE_FROM} "
                    f"WHERE f.collection_id=? AND f.id IN ({_marks(len(part))})",
                    (collection_id, *part),
                ):
                    out[r[0]] = self._face_row(r[:-1], r[-1] if embeddings else None)
        return out

    def face_dates(self, collection_id: int, face_ids: Sequence[str]) -> dict[str, tuple[float, bool]]:
        """FaceId -> (time it was indexed, whether its chip was kept), for the faces found."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT face_id, created, chip IS NOT NULL FROM faces WHERE collection_id=? "
                "AND face_id IN (SELECT value FROM json_each(?))",
                (collection_id, json.dumps(list(face_ids))),
            ).fetchall()
        return {r[0]: (float(r[1]), bool(r[2])) for r in rows}

    def face_chip(self, collection_id: int, face_id: str) -> bytes | None:
        """The stored aligned chip (JPEG) of a face, when chips were kept."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT chip FROM faces WHERE collection_id=? AND face_id=?", (collection_id, face_id)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def delete_faces(self, name: str, face_ids: Sequence[str]) -> tuple[list[str], list[dict]]:
        """Delete faces; returns (deleted FaceIds, UnsuccessfulFaceDeletions)."""
        with self.write() as conn:
            coll = self._collection(conn, name)
            found = self._faces_with_owners(conn, coll.id, face_ids)
            deleted, failed, rows = [], [], []
            for fid in dict.fromkeys(face_ids):
                if fid not in found:
                    failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
                elif found[fid][1] is not None:
                    failed.append(
                        {
                            "FaceId": fid,
                            "UserId": found[fid][2],
                            "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"],
                        }
                    )
                else:
                    deleted.append(fid)
                    rows.append(found[fid][0])
            for part in _chunks(rows):
                conn.execute(f"DELETE FROM faces WHERE id IN ({_marks(len(part))})", part)
            self._log(conn, coll, REMOVE, rows)
            return deleted, failed

    # -- users ----------------------------------------------------------------------------------------

    def _replay(
        self, conn: sqlite3.Connection, coll_id: int, op: str, token: str | None, digest: str
    ) -> dict | None:
        """The stored response of a repeated ClientRequestToken, or None for a new one."""
        if token is None:
            return None
        conn.execute("DELETE FROM requests WHERE created<?", (time.time() - TOKEN_TTL_SECONDS,))
        rows = conn.execute(  # in any collection: a token reused on another collection is a mismatch
            "SELECT collection_id, digest, response FROM requests WHERE operation=? AND token=?",
            (op, token),
        ).fetchall()
        row = next((r[1:] for r in rows if r[0] == coll_id), None)
        if rows and (row is None or row[0] != digest):
            raise IdempotentParameterMismatchError(
                f"ClientRequestToken was already used for {op} with other parameters"
            )
        if row is None:
            return None
        return json.loads(row[1])

    @staticmethod
    def _remember(
        conn: sqlite3.Connection, coll_id: int, op: str, token: str | None, digest: str, response: dict
    ) -> dict:
        if token is not None:
            conn.execute(
                "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?)",
                (coll_id, op, token, digest, json.dumps(response), time.time()),
            )
        return response

    @staticmethod
    def _user(conn: sqlite3.Connection, coll_id: int, user_id: str) -> UserRow | None:
        row = conn.execute(
            "SELECT id, user_id, face_count, template FROM users WHERE collection_id=? AND user_id=?",
            (coll_id, user_id),
        ).fetchone()
        if row is None:
            return None
        return UserRow(row[0], row[1], row[2], from_blob(row[3]) if row[3] is not None else None)

    @classmethod
    def _existing_user(cls, conn: sqlite3.Connection, coll_id: int, user_id: str, name: str) -> UserRow:
        user = cls._user(conn, coll_id, user_id)
        if user is None:
            raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
        return user

    @staticmethod
    def _faces_with_owners(
        conn: sqlite3.Connection, coll_id: int, face_ids: Sequence[str], embeddings: bool = False
    ) -> dict[str, tuple[int, int | None, str | None, bytes | None]]:
        """FaceId -> (row, owner's user row, owner's UserId, embedding blob if asked) for the faces found."""
        column = "f.embedding" if embeddings else "NULL"
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in conn.execute(
                f"SELECT f.face_id, f.id, f.user_row, u.user_id, {column} FROM faces f "
                "LEFT JOIN users u ON u.id=f.user_row "
                "WHERE f.collection_id=? AND f.face_id IN (SELECT value FROM json_each(?))",
                (coll_id, json.dumps(list(face_ids))),
            )
        }

    def create_user(self, name: str, user_id: str, token: str | None, digest: str) -> dict:
        with self.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "CreateUser", token, digest)
            if replay is not None:
                return replay
            if self._user(conn, coll.id, user_id) is not None:
                raise ConflictError(f"user {user_id!r} already exists in collection {name!r}")
            conn.execute(
                "INSERT INTO users (collection_id, user_id, created) VALUES (?, ?, ?)",
                (coll.id, user_id, time.time()),
            )
            return self._remember(conn, coll.id, "CreateUser", token, digest, {})

    def delete_user(self, name: str, user_id: str, token: str | None, digest: str) -> dict:
        """Delete a user after disassociating its faces."""
        with self.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "DeleteUser", token, digest)
            if replay is not None:
                return replay
            user = self._existing_user(conn, coll.id, user_id, name)
            conn.execute("UPDATE faces SET user_row=NULL WHERE user_row=?", (user.row,))
            conn.execute("DELETE FROM users WHERE id=?", (user.row,))
            return self._remember(conn, coll.id, "DeleteUser", token, digest, {})

    def list_users(self, collection_id: int, after_row: int, limit: int) -> list[UserRow]:
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id, user_id, face_count FROM users WHERE collection_id=? AND id>? "
                "ORDER BY id LIMIT ?",
                (collection_id, after_row, limit),
            ).fetchall()
        return [UserRow(r[0], r[1], r[2], None) for r in rows]

    def user(self, collection_id: int, user_id: str) -> UserRow | None:
        with self.read() as conn:
            return self._user(conn, collection_id, user_id)

    def user_templates(self, collection_id: int) -> tuple[list[UserRow], np.ndarray | None]:
        """Every user that has faces, with its fused templates stacked (n, dim)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id, user_id, face_count, template FROM users "
                "WHERE collection_id=? AND template IS NOT NULL ORDER BY id",
                (collection_id,),
            ).fetchall()
        users = [UserRow(r[0], r[1], r[2], None) for r in rows]
        if not rows:
            return users, None
        return users, np.stack([from_blob(r[3]) for r in rows])

    def _user_vectors(self, conn: sqlite3.Connection, user_row: int) -> list[np.ndarray]:
        rows = conn.execute("SELECT embedding FROM faces WHERE user_row=? ORDER BY id", (user_row,))
        return [from_blob(r[0]) for r in rows]

    def _set_template(self, conn: sqlite3.Connection, user_row: int, vectors: list[np.ndarray]) -> None:
        template = fuse_template(vectors)
        conn.execute(
            "UPDATE users SET face_count=?, template=? WHERE id=?",
            (len(vectors), None if template is None else to_blob(template), user_row),
        )

    def associate_faces(
        self,
        name: str,
        user_id: str,
        face_ids: Sequence[str],
        threshold: float,
        score: Callable[[np.ndarray, np.ndarray], float],
        token: str | None,
        digest: str,
    ) -> dict:
        """AssociateFaces: each new face must score >= `threshold` against the user's fused template.

        For a user without faces the first valid face seeds the template and each further face is
        checked against the faces accepted before it. Returns the AssociateFaces response.
        """
        with self.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "AssociateFaces", token, digest)
            if replay is not None:
                return replay
            user = self._existing_user(conn, coll.id, user_id, name)
            found = self._faces_with_owners(conn, coll.id, face_ids, embeddings=True)
            wanted = list(dict.fromkeys(face_ids))
            candidates = [f for f in wanted if f in found and found[f][1] is None]
            if candidates and user.face_count >= MAX_FACES_PER_USER:
                raise ServiceQuotaExceededError(
                    f"user {user_id!r} has {user.face_count} faces; at most {MAX_FACES_PER_USER} are allowed"
                )
            accepted = self._user_vectors(conn, user.row)
            associated, failed = [], []
            for fid in wanted:
                if fid not in found:
                    failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
                    continue
                row, owner_row, owner_id, blob = found[fid]
                if owner_row == user.row:
                    continue  # already this user's: ignored, not returned
                if owner_row is not None:
                    failed.append(
                        {"FaceId": fid, "UserId": owner_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
                    )
                    continue
                if len(accepted) >= MAX_FACES_PER_USER:  # past the limit: reported, not associated
                    failed.append({"FaceId": fid, "UserId": user_id, "Reasons": []})
                    continue
                vector = from_blob(blob)
                if accepted:
                    confidence = float(score(fuse_template(accepted), vector))
                    if confidence < threshold:
                        failed.append(
                            {
                                "FaceId": fid,
                                "UserId": user_id,
                                "Confidence": confidence,
                                "Reasons": ["LOW_MATCH_CONFIDENCE"],
                            }
                        )
                        continue
                conn.execute("UPDATE faces SET user_row=? WHERE id=?", (user.row, row))
                accepted.append(vector)
                associated.append({"FaceId": fid})
            self._set_template(conn, user.row, accepted)
            response = {
                "AssociatedFaces": associated,
                "UnsuccessfulFaceAssociations": failed,
                "UserStatus": "ACTIVE" if accepted else "CREATED",
            }
            return self._remember(conn, coll.id, "AssociateFaces", token, digest, response)

    def disassociate_faces(
        self, name: str, user_id: str, face_ids: Sequence[str], token: str | None, digest: str
    ) -> dict:
        """DisassociateFaces; faces not associated with any user are ignored. Returns the response."""
        with self.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "DisassociateFaces", token, digest)
            if replay is not None:
                return replay
            user = self._existing_user(conn, coll.id, user_id, name)
            found = self._faces_with_owners(conn, coll.id, face_ids)
            done, failed = [], []
            for fid in dict.fromkeys(face_ids):
                if fid not in found:
                    failed.append({"FaceId": fid, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]})
                elif found[fid][1] == user.row:
                    conn.execute("UPDATE faces SET user_row=NULL WHERE id=?", (found[fid][0],))
                    done.append({"FaceId": fid})
                elif found[fid][1] is not None:
                    failed.append(
                        {
                            "FaceId": fid,
                            "UserId": found[fid][2],
                            "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"],
                        }
                    )
            remaining = self._user_vectors(conn, user.row)
            self._set_template(conn, user.row, remaining)
            response = {
                "DisassociatedFaces": done,
                "UnsuccessfulFaceDisassociations": failed,
                "UserStatus": "ACTIVE" if remaining else "CREATED",
            }
            return self._remember(conn, coll.id, "DisassociateFaces", token, digest, response)

    # -- change log for the vector indexes -------------------------------------------------------------

    def index_delta(self, collection_id: int, since_seq: int) -> IndexDelta | None:
        """What an index that has applied the log up to `since_seq` lacks, or None if it cannot catch up
        (the log was trimmed past it, or it is ahead of the database)."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT last_seq, log_floor, face_count FROM collections WHERE id=?", (collection_id,)
            ).fetchone()
            if row is None:
                raise ResourceNotFoundError(f"collection #{collection_id} no longer exists")
            last_seq, floor, count = row
            if since_seq < floor or since_seq > last_seq:
                return None
            added, removed = set(), set()
            for op, face_row in conn.execute(
                "SELECT op, face_row FROM changes WHERE collection_id=? AND seq>? AND seq<=?",
                (collection_id, since_seq, last_seq),
            ):
                (added if op == ADD else removed).add(face_row)
            added -= removed
            ids, vectors = self._embeddings(conn, collection_id, sorted(added))
        return IndexDelta(
            last_seq=last_seq,
            face_count=count,
            add_ids=ids,
            add_vectors=vectors,
            remove_ids=np.asarray(sorted(removed), dtype=np.int64),
        )

    def snapshot(self, collection_id: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        """(last_seq, ids, vectors) of every face of a collection, from one consistent snapshot."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT last_seq, face_count FROM collections WHERE id=?", (collection_id,)
            ).fetchone()
            if row is None:
                raise ResourceNotFoundError(f"collection #{collection_id} no longer exists")
            last_seq, count = int(row[0]), int(row[1])
            ids = np.zeros(count, dtype=np.int64)
            vectors: np.ndarray | None = None
            n = 0
            for face_row, blob in conn.execute(
                "SELECT id, embedding FROM faces WHERE collection_id=? ORDER BY id", (collection_id,)
            ):
                vector = from_blob(blob)
                if vectors is None:
                    vectors = np.zeros((count, len(vector)), dtype=np.float32)
                if n == count:  # cannot happen: face_count moves in the same transactions
                    raise RuntimeError(f"collection #{collection_id} holds more faces than its count")
                ids[n], vectors[n] = face_row, vector
                n += 1
        if vectors is None:
            return last_seq, np.zeros(0, dtype=np.int64), None
        return last_seq, ids[:n], vectors[:n]

    @staticmethod
    def _embeddings(
        conn: sqlite3.Connection, collection_id: int, rows: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        ids: list[int] = []
        blobs: list[bytes] = []
        for part in _chunks(rows):
            for r in conn.execute(
                f"SELECT id, embedding FROM faces WHERE collection_id=? AND id IN ({_marks(len(part))})",
                (collection_id, *part),
            ):
                ids.append(r[0])
                blobs.append(r[1])
        if not ids:
            return np.zeros(0, dtype=np.int64), None
        return np.asarray(ids, dtype=np.int64), np.stack([from_blob(b) for b in blobs])

    def trim_log(self, collection_id: int, upto_seq: int) -> None:
        """Forget log entries <= `upto_seq` (an index file at that sequence exists)."""
        with self.write() as conn:
            conn.execute("DELETE FROM changes WHERE collection_id=? AND seq<=?", (collection_id, upto_seq))
            conn.execute(
                "UPDATE collections SET log_floor=MAX(log_floor, ?) WHERE id=? AND last_seq>=?",
                (upto_seq, collection_id, upto_seq),
            )

    def integrity_check(self) -> str:
        with self.read() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# -- the per-process vector index cache ----------------------------------------------------------------


@dataclass
class _Entry:
    index: object | None  # a vector_index.VectorIndex, None while the collection is empty
    seq: int  # change-log sequence the index reflects
    saved_seq: int  # sequence of the newest file this process saved or loaded
    pending: int = 0  # changes applied since then


class IndexCache:
    """Vector indexes of collections, kept in step with SQLite through the change log.

    Before each search the index replays the log entries after its sequence number (adds and removes),
    and falls back to the newest persisted file (`<home>/index/c<collection>-<seq>.index`) or a full
    rebuild from the `faces` table when it cannot. Index files are caches: a crash can leave an old or
    half-written one, never a wrong answer, because callers keep only hits whose rows SQLite still holds.
    """

    def __init__(self, store: Store, persist_every: int = 2000, trim_every: int = 20000) -> None:
        self.store = store
        self.folder = store.home / "index"
        self.persist_every = persist_every
        self.trim_every = trim_every
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.RLock()
        self._save_failed = False  # logged once

    def search(self, collection_id: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(L2 distances ascending, vector ids) of the `k` nearest faces, -1 ids for padding."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        index = self.sync(collection_id).index  # the index itself is safe for parallel searches
        if index is None or len(index) == 0 or k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return index.search(queries, min(int(k), len(index)))

    def sync(self, collection_id: int) -> _Entry:
        """Bring this collection's index up to date with SQLite (replay, reload or rebuild)."""
        with self._lock:
            entry = self._entries.get(collection_id)
            if entry is not None and not self._catch_up(collection_id, entry):
                entry = None
            if entry is None:
                entry = self._load_newest(collection_id)
                if entry is not None and not self._catch_up(collection_id, entry):
                    entry = None
            if entry is None:
                entry = self._rebuild(collection_id)
            self._entries[collection_id] = entry
            if entry.pending >= self.persist_every:
                self._persist(collection_id, entry)
            return entry

    def flush(self) -> None:
        """Persist every index that has changes not yet on disk."""
        with self._lock:
            for cid, entry in list(self._entries.items()):
                if entry.seq != entry.saved_seq:
                    self._persist(cid, entry)

    def _persist(self, collection_id: int, entry: _Entry) -> None:
        """Save an index file; one that cannot be written (a read-only or broken folder, a directory where
        the file belongs) leaves the in-memory index, built from SQLite, serving. Logged once."""
        try:
            self._save(collection_id, entry)
        except OSError as exc:
            entry.pending = 0  # retried after another `persist_every` changes, not on every search
            if not self._save_failed:
                self._save_failed = True
                log.warning(
                    "vector index cache %s cannot be written (%s); searching from the in-memory index "
                    "rebuilt from the database instead",
                    self.folder,
                    exc,
                )

    def forget(self, collection_id: int) -> None:
        """Drop a deleted collection's index from memory and disk (and from Milvus, for that backend)."""
        with self._lock:
            entry = self._entries.pop(collection_id, None)
            indexes = [] if entry is None or entry.index is None else [entry.index]
            for path, _seq in self._files(collection_id):
                # best effort: a cache file that is already gone is fine
                with contextlib.suppress(Exception), path.open("rb") as fh:
                    if fh.read(8) == b"FPMILVUS":
                        from faceprint.collections.vector_index import load_index

                        indexes.append(load_index(path))
                with contextlib.suppress(OSError):  # e.g. a directory where the file belongs
                    path.unlink(missing_ok=True)
            for index in indexes:
                if hasattr(index, "drop"):
                    with contextlib.suppress(Exception):
                        index.drop()

    # -- internals ------------------------------------------------------------------------------------

    def _files(self, collection_id: int) -> list[tuple[Path, int]]:
        out = []
        try:
            found = list(self.folder.glob(f"c{collection_id}-*.index"))
        except OSError:  # an unreadable folder: no cache files
            found = []
        for path in found:
            seq = path.name[len(f"c{collection_id}-") : -len(".index")]
            if seq.isdigit():
                out.append((path, int(seq)))
        return sorted(out, key=lambda p: p[1])

    def _load_newest(self, collection_id: int) -> _Entry | None:
        from faceprint.collections.vector_index import load_index

        for path, seq in reversed(self._files(collection_id)):
            try:
                index = load_index(path)
            except Exception:  # a corrupt or vanished cache file: try the next, or rebuild
                continue
            return _Entry(index=index, seq=seq, saved_seq=seq)
        return None

    def _catch_up(self, collection_id: int, entry: _Entry) -> bool:
        """Apply the log to `entry`; False when it cannot be made exact (the caller rebuilds)."""
        delta = self.store.index_delta(collection_id, entry.seq)
        if delta is None:
            return False
        if len(delta.remove_ids) and entry.index is not None:
            entry.index.remove(delta.remove_ids)
        if delta.add_vectors is not None:
            if entry.index is None:
                entry.index = self._new_index(delta.add_vectors.shape[1])
            if entry.index.dim != delta.add_vectors.shape[1]:
                return False
            entry.index.remove(delta.add_ids)  # idempotent replay: never hold an id twice
            entry.index.add(delta.add_ids, delta.add_vectors)
        entry.pending += len(delta.add_ids) + len(delta.remove_ids)
        entry.seq = delta.last_seq
        size = 0 if entry.index is None else len(entry.index)
        return size == delta.face_count

    def _rebuild(self, collection_id: int) -> _Entry:
        seq, ids, vectors = self.store.snapshot(collection_id)
        entry = _Entry(index=None, seq=seq, saved_seq=-1)
        if vectors is not None:
            entry.index = self._new_index(vectors.shape[1])
            entry.index.add(ids, vectors)
            entry.pending = self.persist_every  # a rebuild is worth keeping
        return entry

    @staticmethod
    def _new_index(dim: int) -> object:
        from faceprint.collections.vector_index import open_index

        return open_index(None, int(dim))

    def _save(self, collection_id: int, entry: _Entry) -> None:
        if entry.index is None:
            return
        private_dir(self.folder)
        entry.index.save(self.folder / f"c{collection_id}-{entry.seq}.index")
        entry.saved_seq, entry.pending = entry.seq, 0
        for path, seq in self._files(collection_id):
            if seq < entry.seq:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        try:
            coll_floor = self._floor(collection_id)
        except ResourceNotFoundError:
            return
        if entry.seq - coll_floor >= self.trim_every:
            self.store.trim_log(collection_id, entry.seq)

    def _floor(self, collection_id: int) -> int:
        with self.store.read() as conn:
            row = conn.execute("SELECT log_floor FROM collections WHERE id=?", (collection_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"collection #{collection_id} no longer exists")
        return int(row[0])
