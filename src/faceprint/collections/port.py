"""The storage port of collections: the `Store` interface and the typed domain rows it speaks.

The service (collections/service.py) talks to storage only through `Store`; its implementations
(collections/store.py: SQLite, the embedded default, and PostgreSQL, the cluster source of truth) hold no
Rekognition shapes and no vector index. Refusals are domain reasons (`Refusal`); the service turns them
into Rekognition's `Reasons` lists.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from faceprint.errors import FaceprintError

MAX_FACES_PER_USER = 100


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    created: float
    model_version: str
    tags: dict[str, str]
    face_count: int
    last_seq: int  # newest change-log sequence of this collection
    log_floor: int  # change-log entries <= this were trimmed


@dataclass(frozen=True)
class FaceRecord:
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
    """The faces of one image to store with `Store.add_images`."""

    collection: str
    image_sha256: str
    image_id: str
    external_image_id: str | None
    faces: Sequence[NewFace]


@dataclass(frozen=True)
class User:
    row: int
    user_id: str
    face_count: int
    template: np.ndarray | None

    @property
    def active(self) -> bool:
        return self.face_count > 0


@dataclass(frozen=True)
class IndexDelta:
    """What a vector index at some sequence number lacks to match the store."""

    last_seq: int
    face_count: int
    add_ids: np.ndarray
    add_vectors: np.ndarray | None
    remove_ids: np.ndarray


class Refusal(enum.StrEnum):
    """Why a face of a request was not deleted, associated or disassociated."""

    FACE_NOT_FOUND = "FACE_NOT_FOUND"
    ASSOCIATED_TO_AN_EXISTING_USER = "ASSOCIATED_TO_AN_EXISTING_USER"  # DeleteFaces
    ASSOCIATED_TO_A_DIFFERENT_USER = "ASSOCIATED_TO_A_DIFFERENT_USER"
    LOW_MATCH_CONFIDENCE = "LOW_MATCH_CONFIDENCE"
    USER_FACE_LIMIT = "USER_FACE_LIMIT"  # the user already holds MAX_FACES_PER_USER faces


@dataclass(frozen=True)
class RefusedFace:
    face_id: str
    reason: Refusal
    user_id: str | None = None  # the owner that blocked it, or the user asked for
    confidence: float | None = None  # the score that was too low


@dataclass(frozen=True)
class FaceChanges:
    """The outcome of DeleteFaces, AssociateFaces or DisassociateFaces."""

    done: list[str]  # FaceIds deleted, associated or disassociated
    refused: list[RefusedFace] = field(default_factory=list)
    user_active: bool = False  # the user holds faces afterwards (associations only)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceChanges:
        refused = [
            RefusedFace(r["face_id"], Refusal(r["reason"]), r.get("user_id"), r.get("confidence"))
            for r in data["refused"]
        ]
        return cls(list(data["done"]), refused, bool(data["user_active"]))


Scorer = Callable[[np.ndarray, np.ndarray], float]


class Store(Protocol):
    """Transactional storage of collections, faces, users and associations, with a change log that
    vector indexes replay. Every write returns once it is durable; every read sees one snapshot."""

    def close(self) -> None: ...
    def token_key(self) -> bytes: ...
    def integrity_check(self) -> str: ...

    # collections
    def create_collection(self, name: str, model_version: str, tags: dict[str, str]) -> Collection: ...
    def delete_collection(self, name: str) -> int: ...
    def update_tags(
        self, name: str, add: dict[str, str], remove: Sequence[str], max_tags: int
    ) -> dict[str, str]: ...
    def collection(self, name: str) -> Collection: ...
    def list_collections(self, after_id: int, limit: int) -> list[Collection]: ...
    def user_count(self, collection_id: int) -> int: ...

    # faces
    def add_images(
        self, images: Sequence[ImageFaces], max_collection_faces: int
    ) -> list[list[FaceRecord] | FaceprintError]: ...
    def list_faces(
        self,
        collection_id: int,
        after_row: int,
        limit: int,
        face_ids: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> list[FaceRecord]: ...
    def face(self, collection_id: int, face_id: str, embedding: bool = False) -> FaceRecord | None: ...
    def faces_by_row(
        self, collection_id: int, rows: Iterable[int], embeddings: bool = False
    ) -> dict[int, FaceRecord]: ...
    def face_dates(self, collection_id: int, face_ids: Sequence[str]) -> dict[str, tuple[float, bool]]: ...
    def face_chip(self, collection_id: int, face_id: str) -> bytes | None: ...
    def delete_faces(self, name: str, face_ids: Sequence[str]) -> FaceChanges: ...

    # users
    def create_user(self, name: str, user_id: str, token: str | None, digest: str) -> None: ...
    def delete_user(self, name: str, user_id: str, token: str | None, digest: str) -> None: ...
    def user(self, collection_id: int, user_id: str) -> User | None: ...
    def list_users(self, collection_id: int, after_row: int, limit: int) -> list[User]: ...
    def user_templates(self, collection_id: int) -> tuple[list[User], np.ndarray | None]: ...
    def associate_faces(
        self,
        name: str,
        user_id: str,
        face_ids: Sequence[str],
        threshold: float,
        score: Scorer,
        token: str | None,
        digest: str,
    ) -> FaceChanges: ...
    def disassociate_faces(
        self, name: str, user_id: str, face_ids: Sequence[str], token: str | None, digest: str
    ) -> FaceChanges: ...

    # change log for the vector indexes
    def index_delta(self, collection_id: int, since_seq: int) -> IndexDelta | None: ...
    def snapshot(self, collection_id: int) -> tuple[int, np.ndarray, np.ndarray | None]: ...
    def log_floor(self, collection_id: int) -> int: ...
    def trim_log(self, collection_id: int, upto_seq: int) -> None: ...


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
