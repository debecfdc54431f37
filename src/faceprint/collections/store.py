"""The SQL implementation of the collections `Store` port, on SQLite (embedded) or PostgreSQL (cluster).

SQLite: one database file per home folder (`<home>/collections/faceprint.db`), in WAL mode with
`synchronous=FULL`, so a write that returned is on disk. PostgreSQL (`FACEPRINT_DATABASE_URL`): the
`collections` schema of the shared database, every write committed durably before it is acknowledged.
Every write is one transaction holding the database's write lock (`BEGIN IMMEDIATE` in SQLite, an
advisory transaction lock in PostgreSQL), so processes and nodes serialise their writes, and readers
always see a consistent snapshot. The SQL below is the subset both engines run unchanged.

Each face addition or removal also appends a row to `changes` (a global, never reused sequence) and moves
its collection's `last_seq`: the vector indexes (collections/index_cache.py) replay this log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.collections.port import (
    MAX_FACES_PER_USER,
    Collection,
    FaceChanges,
    FaceRecord,
    ImageFaces,
    IndexDelta,
    NewFace,
    Refusal,
    RefusedFace,
    Scorer,
    User,
    box_iou,
    fuse_template,
)
from faceprint.database import Database
from faceprint.errors import (
    ConflictError,
    FaceprintError,
    IdempotentParameterMismatchError,
    ResourceAlreadyExistsError,
    ResourceNotFoundError,
    ServiceQuotaExceededError,
)
from faceprint.migrations import Migration

DB_NAME = "faceprint.db"
ADD, REMOVE = 1, 2  # change-log operations
TOKEN_TTL_SECONDS = 24 * 3600  # how long a ClientRequestToken is remembered
_CHUNK = 500  # SQL parameters per IN (...) list
Conn = Any  # a Conn, or faceprint.postgres's connection with the same execute()

_SCHEMA = """
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


def _add_cohort_columns(conn: Conn) -> None:
    """Collections stored before cohort normalisation gain its columns (their faces are kept as is)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(faces)")}
    for column, kind in (("cohort_mu", "REAL"), ("cohort_sd", "REAL"), ("cohort_tag", "TEXT")):
        if column not in have:
            conn.execute(f"ALTER TABLE faces ADD COLUMN {column} {kind}")


MIGRATIONS = (
    Migration(1, "collections, users, faces, change log, request tokens", _SCHEMA, _SCHEMA),
    Migration(2, "cohort statistics of faces", _add_cohort_columns, ""),  # in PostgreSQL's first schema
    Migration(3, "request tokens remember typed outcomes", "DELETE FROM requests", ""),
)

_COLLECTION_COLUMNS = "id, name, created, model_version, tags, face_count, last_seq, log_floor"
_FACE_COLUMNS = (
    "f.id, f.face_id, f.image_id, f.external_image_id, f.box_left, f.box_top, f.box_width, f.box_height, "
    "f.confidence, f.model_version, u.user_id, f.cohort_mu, f.cohort_sd, f.cohort_tag"
)
_FACE_FROM = "faces f LEFT JOIN users u ON u.id = f.user_row"


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _marks(n: int) -> str:
    """The placeholders of an IN (...) list of n values (NULL, matching nothing, when n is 0)."""
    return ",".join("?" * n) if n else "NULL"


class SqlStore:
    """The `Store` port over a SQL database (`Database` or `PostgresDatabase`); safe across threads,
    processes and nodes."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def token_key(self) -> bytes:
        """Secret of this database, used to sign pagination tokens (the same on every node)."""
        return self.db.token_key()

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, model_version: str, tags: dict[str, str]) -> Collection:
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM collections WHERE name=?", (name,)).fetchone():
                raise ResourceAlreadyExistsError(f"collection {name!r} already exists")
            conn.execute(
                "INSERT INTO collections (name, created, model_version, tags) VALUES (?, ?, ?, ?)",
                (name, time.time(), model_version, json.dumps(tags, sort_keys=True)),
            )
            return self._collection(conn, name)

    def delete_collection(self, name: str) -> int:
        """Delete a collection with its faces, users and log; returns its internal id."""
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            for table in ("faces", "users", "changes", "requests"):
                conn.execute(f"DELETE FROM {table} WHERE collection_id=?", (coll.id,))
            conn.execute("DELETE FROM collections WHERE id=?", (coll.id,))
            return coll.id

    def update_tags(self, name: str, add: dict[str, str], remove: Sequence[str], max_tags: int) -> dict:
        """Set `add` and drop `remove` on a collection's tags in one transaction; returns the new tags."""
        with self.db.write() as conn:
            tags = {k: v for k, v in {**self._collection(conn, name).tags, **add}.items() if k not in remove}
            if len(tags) > max_tags:
                raise ServiceQuotaExceededError(
                    f"a collection holds at most {max_tags} tags, not {len(tags)}"
                )
            conn.execute(
                "UPDATE collections SET tags=? WHERE name=?", (json.dumps(tags, sort_keys=True), name)
            )
            return tags

    def collection(self, name: str) -> Collection:
        with self.db.read() as conn:
            return self._collection(conn, name)

    def user_count(self, collection_id: int) -> int:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM users WHERE collection_id=?", (collection_id,)
            ).fetchone()
        return int(row[0])

    def list_collections(self, after_id: int, limit: int) -> list[Collection]:
        """Collections in creation order whose id is > `after_id`."""
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE id>? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [self._collection_row(r) for r in rows]

    @staticmethod
    def _collection_row(r: tuple) -> Collection:
        return Collection(
            id=r[0],
            name=r[1],
            created=r[2],
            model_version=r[3],
            tags=json.loads(r[4]),
            face_count=r[5],
            last_seq=r[6],
            log_floor=r[7],
        )

    def _collection(self, conn: Conn, name: str) -> Collection:
        row = conn.execute(f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"collection {name!r} does not exist")
        return self._collection_row(row)

    def _log(self, conn: Conn, coll: Collection, op: int, rows: Sequence[int]) -> None:
        """Append face additions or removals to the change log and move the collection's counters."""
        if not rows:
            return
        conn.executemany(
            "INSERT INTO changes (collection_id, op, face_row) VALUES (?, ?, ?)",
            [(coll.id, op, r) for r in rows],
        )
        last = conn.execute("SELECT MAX(seq) FROM changes WHERE collection_id=?", (coll.id,)).fetchone()[0]
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
    ) -> list[FaceRecord]:
        """Store the faces of one image; returns one row per input face, in order.

        A face already stored from the same image bytes with the same ExternalImageId (its box overlapping
        by IoU >= 0.5) is returned as stored, not saved twice. Faces from an image already in the
        collection reuse that image's ImageId.
        """
        with self.db.write() as conn:
            return self._add_faces(
                conn, name, image_sha256, image_id, external_image_id, faces, max_collection_faces
            )

    def add_images(
        self, images: Sequence[ImageFaces], max_collection_faces: int
    ) -> list[list[FaceRecord] | FaceprintError]:
        """`add_faces` for several images in one durable transaction (one commit, one fsync).

        Each image is stored in its own savepoint: one that fails (its collection was deleted, the quota
        is reached) gets its error in its place of the result and leaves the others stored.
        """
        out: list[list[FaceRecord] | FaceprintError] = []
        with self.db.write() as conn:
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
                    conn.execute("ROLLBACK TO SAVEPOINT image")
                    out.append(exc)
                else:
                    out.append(rows)
                conn.execute("RELEASE SAVEPOINT image")
        return out

    def _add_faces(
        self,
        conn: Conn,
        name: str,
        image_sha256: str,
        image_id: str,
        external_image_id: str | None,
        faces: Sequence[NewFace],
        max_collection_faces: int,
    ) -> list[FaceRecord]:
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
        out: list[FaceRecord] = []
        new_rows: list[int] = []
        now = time.time()
        for face in faces:
            dup = max(same_ext, key=lambda s: box_iou(s.box, face.box), default=None)
            if dup is not None and box_iou(dup.box, face.box) >= 0.5:
                same_ext.remove(dup)
                out.append(dup)
                continue
            face_row = conn.execute(
                "INSERT INTO faces (collection_id, face_id, image_id, image_sha256, external_image_id, "
                "box_left, box_top, box_width, box_height, confidence, brightness, sharpness, roll, yaw, "
                "pitch, embedding, model_version, chip, created, cohort_mu, cohort_sd, cohort_tag) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            ).fetchone()[0]
            new_rows.append(int(face_row))
            out.append(
                FaceRecord(
                    row=int(face_row),
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
    def _face_row(r: tuple, embedding: bytes | None = None) -> FaceRecord:
        return FaceRecord(
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
    ) -> list[FaceRecord]:
        """Faces in storage order after `after_row`, optionally only these FaceIds and/or this user's."""
        sql = f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.collection_id=? AND f.id>?"
        args: list = [collection_id, after_row]
        if user_id is not None:
            sql += " AND u.user_id=?"
            args.append(user_id)
        if face_ids is not None:
            sql += f" AND f.face_id IN ({_marks(len(face_ids))})"
            args.extend(face_ids)
        sql += " ORDER BY f.id LIMIT ?"
        args.append(limit)
        with self.db.read() as conn:
            return [self._face_row(r) for r in conn.execute(sql, args).fetchall()]

    def face(self, collection_id: int, face_id: str, embedding: bool = False) -> FaceRecord | None:
        """One face of a collection by FaceId, or None."""
        with self.db.read() as conn:
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
    ) -> dict[int, FaceRecord]:
        """The faces of a collection that still exist among these vector ids."""
        ids = [int(r) for r in rows]
        out: dict[int, FaceRecord] = {}
        with self.db.read() as conn:
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
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT face_id, created, chip IS NOT NULL FROM faces WHERE collection_id=? "
                f"AND face_id IN ({_marks(len(face_ids))})",
                (collection_id, *face_ids),
            ).fetchall()
        return {r[0]: (float(r[1]), bool(r[2])) for r in rows}

    def face_chip(self, collection_id: int, face_id: str) -> bytes | None:
        """The stored aligned chip (JPEG) of a face, when chips were kept."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT chip FROM faces WHERE collection_id=? AND face_id=?", (collection_id, face_id)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def delete_faces(self, name: str, face_ids: Sequence[str]) -> FaceChanges:
        """Delete faces; a face associated with a user is refused."""
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            found = self._faces_with_owners(conn, coll.id, face_ids)
            deleted: list[str] = []
            failed: list[RefusedFace] = []
            rows: list[int] = []
            for fid in dict.fromkeys(face_ids):
                if fid not in found:
                    failed.append(RefusedFace(fid, Refusal.FACE_NOT_FOUND))
                elif found[fid][1] is not None:
                    failed.append(RefusedFace(fid, Refusal.ASSOCIATED_TO_AN_EXISTING_USER, found[fid][2]))
                else:
                    deleted.append(fid)
                    rows.append(found[fid][0])
            for part in _chunks(rows):
                conn.execute(f"DELETE FROM faces WHERE id IN ({_marks(len(part))})", part)
            self._log(conn, coll, REMOVE, rows)
            return FaceChanges(deleted, failed)

    # -- users ----------------------------------------------------------------------------------------

    def _replay(self, conn: Conn, coll_id: int, op: str, token: str | None, digest: str) -> dict | None:
        """The stored outcome (JSON) of a repeated ClientRequestToken, or None for a new one."""
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
    def _remember(conn: Conn, coll_id: int, op: str, token: str | None, digest: str, outcome: dict) -> None:
        if token is not None:
            conn.execute(
                "INSERT INTO requests (collection_id, operation, token, digest, response, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (coll_id, op, token, digest, json.dumps(outcome), time.time()),
            )

    @staticmethod
    def _user(conn: Conn, coll_id: int, user_id: str) -> User | None:
        row = conn.execute(
            "SELECT id, user_id, face_count, template FROM users WHERE collection_id=? AND user_id=?",
            (coll_id, user_id),
        ).fetchone()
        if row is None:
            return None
        return User(row[0], row[1], row[2], from_blob(row[3]) if row[3] is not None else None)

    @classmethod
    def _existing_user(cls, conn: Conn, coll_id: int, user_id: str, name: str) -> User:
        user = cls._user(conn, coll_id, user_id)
        if user is None:
            raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
        return user

    @staticmethod
    def _faces_with_owners(
        conn: Conn, coll_id: int, face_ids: Sequence[str], embeddings: bool = False
    ) -> dict[str, tuple[int, int | None, str | None, bytes | None]]:
        """FaceId -> (row, owner's user row, owner's UserId, embedding blob if asked) for the faces found."""
        column = "f.embedding" if embeddings else "NULL"
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in conn.execute(
                f"SELECT f.face_id, f.id, f.user_row, u.user_id, {column} FROM faces f "
                "LEFT JOIN users u ON u.id=f.user_row "
                f"WHERE f.collection_id=? AND f.face_id IN ({_marks(len(face_ids))})",
                (coll_id, *face_ids),
            )
        }

    def create_user(self, name: str, user_id: str, token: str | None, digest: str) -> None:
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            if self._replay(conn, coll.id, "CreateUser", token, digest) is not None:
                return
            if self._user(conn, coll.id, user_id) is not None:
                raise ConflictError(f"user {user_id!r} already exists in collection {name!r}")
            conn.execute(
                "INSERT INTO users (collection_id, user_id, created) VALUES (?, ?, ?)",
                (coll.id, user_id, time.time()),
            )
            self._remember(conn, coll.id, "CreateUser", token, digest, {})

    def delete_user(self, name: str, user_id: str, token: str | None, digest: str) -> None:
        """Delete a user after disassociating its faces."""
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            if self._replay(conn, coll.id, "DeleteUser", token, digest) is not None:
                return
            user = self._existing_user(conn, coll.id, user_id, name)
            conn.execute("UPDATE faces SET user_row=NULL WHERE user_row=?", (user.row,))
            conn.execute("DELETE FROM users WHERE id=?", (user.row,))
            self._remember(conn, coll.id, "DeleteUser", token, digest, {})

    def list_users(self, collection_id: int, after_row: int, limit: int) -> list[User]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, user_id, face_count FROM users WHERE collection_id=? AND id>? "
                "ORDER BY id LIMIT ?",
                (collection_id, after_row, limit),
            ).fetchall()
        return [User(r[0], r[1], r[2], None) for r in rows]

    def user(self, collection_id: int, user_id: str) -> User | None:
        with self.db.read() as conn:
            return self._user(conn, collection_id, user_id)

    def user_templates(self, collection_id: int) -> tuple[list[User], np.ndarray | None]:
        """Every user that has faces, with its fused templates stacked (n, dim)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, user_id, face_count, template FROM users "
                "WHERE collection_id=? AND template IS NOT NULL ORDER BY id",
                (collection_id,),
            ).fetchall()
        users = [User(r[0], r[1], r[2], None) for r in rows]
        if not rows:
            return users, None
        return users, np.stack([from_blob(r[3]) for r in rows])

    def _user_vectors(self, conn: Conn, user_row: int) -> list[np.ndarray]:
        rows = conn.execute("SELECT embedding FROM faces WHERE user_row=? ORDER BY id", (user_row,))
        return [from_blob(r[0]) for r in rows]

    def _set_template(self, conn: Conn, user_row: int, vectors: list[np.ndarray]) -> None:
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
        score: Scorer,
        token: str | None,
        digest: str,
    ) -> FaceChanges:
        """AssociateFaces: each new face must score >= `threshold` against the user's fused template.

        For a user without faces the first valid face seeds the template and each further face is
        checked against the faces accepted before it.
        """
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "AssociateFaces", token, digest)
            if replay is not None:
                return FaceChanges.from_json(replay)
            user = self._existing_user(conn, coll.id, user_id, name)
            found = self._faces_with_owners(conn, coll.id, face_ids, embeddings=True)
            wanted = list(dict.fromkeys(face_ids))
            candidates = [f for f in wanted if f in found and found[f][1] is None]
            if candidates and user.face_count >= MAX_FACES_PER_USER:
                raise ServiceQuotaExceededError(
                    f"user {user_id!r} has {user.face_count} faces; at most {MAX_FACES_PER_USER} are allowed"
                )
            accepted = self._user_vectors(conn, user.row)
            associated: list[str] = []
            failed: list[RefusedFace] = []
            for fid in wanted:
                if fid not in found:
                    failed.append(RefusedFace(fid, Refusal.FACE_NOT_FOUND))
                    continue
                row, owner_row, owner_id, blob = found[fid]
                if owner_row == user.row:
                    continue  # already this user's: ignored, not returned
                if owner_row is not None:
                    failed.append(RefusedFace(fid, Refusal.ASSOCIATED_TO_A_DIFFERENT_USER, owner_id))
                    continue
                if len(accepted) >= MAX_FACES_PER_USER:  # past the limit: reported, not associated
                    failed.append(RefusedFace(fid, Refusal.USER_FACE_LIMIT, user_id))
                    continue
                vector = from_blob(blob)
                if accepted:
                    confidence = float(score(fuse_template(accepted), vector))
                    if confidence < threshold:
                        failed.append(RefusedFace(fid, Refusal.LOW_MATCH_CONFIDENCE, user_id, confidence))
                        continue
                conn.execute("UPDATE faces SET user_row=? WHERE id=?", (user.row, row))
                accepted.append(vector)
                associated.append(fid)
            self._set_template(conn, user.row, accepted)
            outcome = FaceChanges(associated, failed, bool(accepted))
            self._remember(conn, coll.id, "AssociateFaces", token, digest, outcome.to_json())
            return outcome

    def disassociate_faces(
        self, name: str, user_id: str, face_ids: Sequence[str], token: str | None, digest: str
    ) -> FaceChanges:
        """DisassociateFaces; faces not associated with any user are ignored."""
        with self.db.write() as conn:
            coll = self._collection(conn, name)
            replay = self._replay(conn, coll.id, "DisassociateFaces", token, digest)
            if replay is not None:
                return FaceChanges.from_json(replay)
            user = self._existing_user(conn, coll.id, user_id, name)
            found = self._faces_with_owners(conn, coll.id, face_ids)
            done: list[str] = []
            failed: list[RefusedFace] = []
            for fid in dict.fromkeys(face_ids):
                if fid not in found:
                    failed.append(RefusedFace(fid, Refusal.FACE_NOT_FOUND, user_id))
                elif found[fid][1] == user.row:
                    conn.execute("UPDATE faces SET user_row=NULL WHERE id=?", (found[fid][0],))
                    done.append(fid)
                elif found[fid][1] is not None:
                    failed.append(RefusedFace(fid, Refusal.ASSOCIATED_TO_A_DIFFERENT_USER, found[fid][2]))
            remaining = self._user_vectors(conn, user.row)
            self._set_template(conn, user.row, remaining)
            outcome = FaceChanges(done, failed, bool(remaining))
            self._remember(conn, coll.id, "DisassociateFaces", token, digest, outcome.to_json())
            return outcome

    # -- change log for the vector indexes -------------------------------------------------------------

    def index_delta(self, collection_id: int, since_seq: int) -> IndexDelta | None:
        """What an index that has applied the log up to `since_seq` lacks, or None if it cannot catch up
        (the log was trimmed past it, or it is ahead of the database)."""
        with self.db.read() as conn:
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
        with self.db.read() as conn:
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
        conn: Conn, collection_id: int, rows: Sequence[int]
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
        with self.db.write() as conn:
            conn.execute("DELETE FROM changes WHERE collection_id=? AND seq<=?", (collection_id, upto_seq))
            conn.execute(
                "UPDATE collections SET log_floor=CASE WHEN log_floor>? THEN log_floor ELSE ? END "
                "WHERE id=? AND last_seq>=?",
                (upto_seq, upto_seq, collection_id, upto_seq),
            )

    def integrity_check(self) -> str:
        """'ok', or what SQLite's integrity check found (PostgreSQL checks its own pages)."""
        return self.db.integrity_check()

    def log_floor(self, collection_id: int) -> int:
        with self.db.read() as conn:
            row = conn.execute("SELECT log_floor FROM collections WHERE id=?", (collection_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"collection #{collection_id} no longer exists")
        return int(row[0])


class SqliteStore(SqlStore):
    """The embedded store: one SQLite file per home folder (`<home>/collections/faceprint.db`)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        super().__init__(Database(self.home / DB_NAME, MIGRATIONS))


def open_store(folder: Path, database_url: str | None = None) -> SqlStore:
    """The store of a home's collections folder: PostgreSQL when `database_url` is set, else SQLite."""
    if database_url:
        from faceprint.postgres import PostgresDatabase

        return SqlStore(PostgresDatabase(database_url, "collections", MIGRATIONS))
    return SqliteStore(folder)
