"""Rekognition's collection operations, transport-free: collections, faces, users and search.

`Collections` has one method per operation (snake_case), taking keyword arguments named like the
Rekognition request members and returning dicts in the response shape of the wire contract. Extra
members that boto3 ignores: `EstimatedFalseMatchRate` on every FaceMatch and UserMatch, and
`ExpectedFalseMatches` on SearchFaces / SearchFacesByImage responses.

faceprint's choices where the model gives no default: ListCollections/ListFaces return 1000 items a page
(MaxResults 0 means the default), ListUsers 500, SearchFaces/SearchFacesByImage/SearchUsers return at
most 100 matches. FaceMatchThreshold and UserMatchThreshold for searches default to the calibrated
`default_search_threshold(size)`; AssociateFaces' UserMatchThreshold defaults to Rekognition's 75.

Every Similarity is the scorer's (`faceprint.scoring`, cohort-normalised): a search takes a shortlist of
the `SHORTLIST` nearest faces by raw distance from the vector index and re-ranks it by normalised score.
Each face's cohort statistics are stored at index time; a face stored before cohort normalisation (or
with another cohort) gets them computed from its stored vector when it is scored, so old collections keep
working without re-indexing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint import audit, scoring
from faceprint.collections.index_cache import IndexCache
from faceprint.collections.ingest import GroupRunner, PreparedIndex
from faceprint.collections.port import (
    Collection,
    FaceChanges,
    FaceRecord,
    ImageFaces,
    NewFace,
    Refusal,
    RefusedFace,
    Store,
    User,
)
from faceprint.collections.quality import check_quality_filter, unindexed_reasons
from faceprint.collections.store import open_store
from faceprint.config import (
    ImageLimits,
    MilvusSettings,
    database_url,
    default_model,
    home_dir,
    vector_backend,
)
from faceprint.config import keep_chips as keep_chips_setting
from faceprint.engine import MAX_FACES, Face, FaceEngine
from faceprint.errors import (
    FaceprintError,
    ImageTooLargeError,
    InvalidParameterError,
    InvalidS3ObjectError,
    ResourceNotFoundError,
)
from faceprint.files import private_dir
from faceprint.images import LoadedImage, decode_image_bytes, load_image
from faceprint.models import FaceModel, get_model, model_for_version
from faceprint.models.crops import crop_jpeg, wide_crop
from faceprint.pagination import PaginationTokens
from faceprint.rekognition import (
    CLIENT_TOKEN_RE,
    COLLECTION_ID_RE,
    EXTERNAL_IMAGE_ID_RE,
    FACE_ID_RE,
    USER_ID_RE,
    bounding_box,
    collection_of_arn,
    face_detail,
    validate_attributes,
)

if TYPE_CHECKING:
    from faceprint.collections.milvus_index import MilvusVectors

TAG_CHARS = set("_.:/=+-@")

MAX_COLLECTION_FACES = 20_000_000  # Rekognition's quota of faces per collection
MAX_PAGE = 4096  # ListCollections / ListFaces MaxResults
DEFAULT_PAGE = 1000
MAX_USER_PAGE = 500
MAX_SEARCH_FACES = 4096
DEFAULT_SEARCH_FACES = 100
MAX_USERS = 500
DEFAULT_MAX_USERS = 100
MAX_FACE_ID_LIST = 4096
MAX_ASSOCIATE_FACES = 100
MAX_TAGS = 50  # Rekognition's quota of tags per resource
ASSOCIATE_DEFAULT_THRESHOLD = 75.0
INDEX_GROUP_IMAGES = 16  # concurrent IndexFaces calls embedded and committed together, at most
SHORTLIST = 200  # faces taken from the index by raw distance, then re-ranked by normalised score

log = logging.getLogger(__name__)


# -- validation --------------------------------------------------------------------------------------


def _pattern(value: Any, regex: re.Pattern, name: str) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise InvalidParameterError(f"{name} {value!r} is not valid (pattern {regex.pattern})")
    return value


def _optional(value: Any, regex: re.Pattern, name: str) -> str | None:
    return None if value is None else _pattern(value, regex, name)


def _integer(value: Any, name: str, low: int, high: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidParameterError(f"{name} must be {bound}, got {value}")
    return int(value)


def _percent(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidParameterError(f"{name} must be a number between 0 and 100, got {value!r}")
    if not 0.0 <= float(value) <= 100.0:
        raise InvalidParameterError(f"{name} must be between 0 and 100, got {value}")
    return float(value)


def _face_ids(value: Any, name: str, high: int) -> list[str]:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= high:
        raise InvalidParameterError(f"{name} must be a list of 1 to {high} FaceIds")
    return [_pattern(v, FACE_ID_RE, "FaceId") for v in value]


def _tag_text_ok(text: str) -> bool:
    return all(ch in TAG_CHARS or unicodedata.category(ch)[0] in "LNZ" for ch in text)


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 200:
        raise InvalidParameterError("Tags must be a map of at most 200 entries")
    for key, val in value.items():
        if (
            not isinstance(key, str)
            or not 1 <= len(key) <= 128
            or key.startswith("aws:")
            or not _tag_text_ok(key)
        ):
            raise InvalidParameterError(f"tag key {key!r} is not valid")
        if not isinstance(val, str) or len(val) > 256 or not _tag_text_ok(val):
            raise InvalidParameterError(f"tag value {val!r} is not valid")
    return dict(value)


def _token(value: Any) -> str | None:
    """A ClientRequestToken, validated and scoped to the caller (another key's token is another token)."""
    return audit.scoped_token(_optional(value, CLIENT_TOKEN_RE, "ClientRequestToken"))


def _digest(**params: Any) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


# -- pagination tokens -------------------------------------------------------------------------------


# -- response shapes ---------------------------------------------------------------------------------


def _box(box: Sequence[float]) -> dict[str, float]:
    left, top, width, height = box
    return {"Width": width, "Height": height, "Left": left, "Top": top}


def face_shape(face: FaceRecord, full: bool = True) -> dict:
    """Rekognition `Face`; `full` adds IndexFacesModelVersion and UserId (ListFaces, FaceMatch)."""
    out: dict[str, Any] = {"FaceId": face.face_id, "BoundingBox": _box(face.box), "ImageId": face.image_id}
    if face.external_image_id is not None:
        out["ExternalImageId"] = face.external_image_id
    out["Confidence"] = face.confidence
    if full:
        out["IndexFacesModelVersion"] = face.model_version
        if face.user_id is not None:
            out["UserId"] = face.user_id
    return out


def user_status(user: User | bool) -> str:
    """Rekognition's UserStatus: ACTIVE once the user holds faces."""
    active = user if isinstance(user, bool) else user.active
    return "ACTIVE" if active else "CREATED"


def refused_shape(refused: RefusedFace) -> dict[str, Any]:
    """One Unsuccessful* entry of DeleteFaces, AssociateFaces or DisassociateFaces."""
    out: dict[str, Any] = {"FaceId": refused.face_id}
    if refused.user_id is not None:
        out["UserId"] = refused.user_id
    if refused.confidence is not None:
        out["Confidence"] = refused.confidence
    out["Reasons"] = [] if refused.reason is Refusal.USER_FACE_LIMIT else [refused.reason.value]
    return out


def _changes_shape(changes: FaceChanges, done: str, failed: str) -> dict[str, Any]:
    return {
        done: [{"FaceId": f} for f in changes.done],
        failed: [refused_shape(r) for r in changes.refused],
        "UserStatus": user_status(changes.user_active),
    }


MODEL_TAG = "faceprint:model"  # CreateCollection tag naming the collection's face model


def uncalibrated_note(model: FaceModel) -> str:
    """What responses of an uncalibrated model's collection say instead of false match rates."""
    return (
        f"face model {model.name!r} (FaceModelVersion {model.version}) is not calibrated: its false match "
        f"rates are unknown and its default threshold is {scoring.UNCALIBRATED_THRESHOLD:g}; run "
        f"`faceprint calibrate --model {model.name}`"
    )


def _error_rate_members(threshold: float, coll: Collection, scorer: scoring.Scorer) -> dict:
    """faceprint's extra search members: the threshold used, the expected number of false matches
    (FMR x collection size) and, when that exceeds 1, a warning (also logged). An uncalibrated model's
    collection says its false match rates are unknown instead."""
    fmr = scorer.false_match_rate(threshold)
    if fmr is None:
        model = model_for_version(coll.model_version)
        return {
            "FaceMatchThreshold": threshold,
            "ExpectedFalseMatches": None,
            "Calibration": {"Status": "uncalibrated", "Note": uncalibrated_note(model)},
        }
    expected = fmr * coll.face_count
    members: dict[str, Any] = {"FaceMatchThreshold": threshold, "ExpectedFalseMatches": expected}
    if expected > 1.0:
        warning = (
            f"FaceMatchThreshold {threshold:g} implies {expected:.1f} expected false matches per search in "
            f"collection {coll.name!r} ({coll.face_count:,} faces); faceprint's default for this size is "
            f"{scorer.default_search_threshold(coll.face_count):.2f}"
        )
        log.warning(warning)
        members["Warnings"] = [warning]
    return members


def _milvus_vectors(store: Store, home: Path) -> MilvusVectors:
    from faceprint.collections.milvus_index import MilvusVectors

    return MilvusVectors(store, MilvusSettings.from_env(home))


class Collections:
    """The collection operations over one home folder (`$FACEPRINT_HOME` unless `home` is given)."""

    def __init__(
        self,
        home: Path | str | None = None,
        engine: FaceEngine | None = None,
        keep_chips: bool | None = None,
        region: str | None = None,
        account_id: str | None = None,
        model: str | None = None,
    ) -> None:
        """`model`: the face model of collections created without one (`FACEPRINT_MODEL`, default dlib-int8;
        the engine's when an engine is given)."""
        self.home = private_dir(Path(home).expanduser() if home is not None else home_dir())
        self.store: Store = open_store(self.home / "collections", database_url())
        self.indexes: IndexCache | MilvusVectors = (
            _milvus_vectors(self.store, self.home)
            if vector_backend() == "milvus"
            else IndexCache(self.store, self.home / "collections" / "index")
        )
        # keep each face's wide crop (`FACEPRINT_KEEP_CHIPS` for IndexFaces on the server)
        self.keep_chips = keep_chips_setting() if keep_chips is None else keep_chips
        self.region = region or os.environ.get("FACEPRINT_REGION", "us-east-1")
        self.account_id = account_id or os.environ.get("FACEPRINT_ACCOUNT_ID", "000000000000")
        self._engine = engine
        self.default_model = engine.model.name if engine is not None else (model or default_model())
        self._tokens = PaginationTokens(self.store.token_key())
        self._index_group = GroupRunner(self._index_batch, max_items=INDEX_GROUP_IMAGES)

    @property
    def engine(self) -> FaceEngine:
        if self._engine is None:
            self._engine = FaceEngine.shared()
        return self._engine

    @property
    def model_version(self) -> str:
        """FaceModelVersion of collections created without a model (the default model's), known without
        loading the model's embedder."""
        return get_model(self.default_model).version

    @property
    def scorer(self) -> scoring.Scorer:
        """The default model's scorer."""
        return get_model(self.default_model).scorer()

    def _model_for(self, coll: Collection) -> FaceModel:
        """The face model of a collection's vectors; a clear error (and nothing touched) when that model is
        not in this installation and home any more."""
        try:
            return model_for_version(coll.model_version)
        except ResourceNotFoundError as exc:
            raise InvalidParameterError(f"collection {coll.name!r}: {exc.message}") from None

    def _engine_for(self, coll: Collection) -> FaceEngine:
        """The engine that embeds probes for `coll`: its model, the shared detector and landmarks."""
        return self.engine.with_model(self._model_for(coll))

    def _scorer_for(self, coll: Collection) -> scoring.Scorer:
        model = self._model_for(coll)
        scorer = model.scorer()
        scorer.check(model.version, model.dim)
        return scorer

    def _check_vector(self, coll: Collection, vector: np.ndarray, model_version: str | None) -> np.ndarray:
        """A probe vector for `coll`, refused (InvalidParameterError) when it is of another face model."""
        model = self._model_for(coll)
        if model_version is not None and str(model_version) != coll.model_version:
            raise InvalidParameterError(
                f"the face vector is of FaceModelVersion {model_version}, but collection {coll.name!r} holds "
                f"faces of model {model.name!r} (FaceModelVersion {coll.model_version}); vectors of "
                "different models cannot be compared"
            )
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != model.dim:
            raise InvalidParameterError(
                f"the face vector has {vector.shape[0]} values, but collection {coll.name!r} holds "
                f"{model.dim}-D vectors of model {model.name!r} (FaceModelVersion {coll.model_version})"
            )
        return vector

    def _face_stats(self, scorer: scoring.Scorer, rows: Sequence[FaceRecord]) -> np.ndarray:
        """(n, 2) cohort statistics of stored faces: as stored, or computed from the stored vector for
        faces indexed before cohort normalisation (or with another cohort)."""
        out = np.empty((len(rows), 2), dtype=np.float32)
        stale = []
        for i, row in enumerate(rows):
            if row.cohort is not None and row.cohort_tag == scorer.tag:
                out[i] = row.cohort
            else:
                stale.append(i)
        if stale:
            out[stale] = scorer.stats(np.stack([rows[i].embedding for i in stale]))
        return out

    def close(self) -> None:
        """Persist changed vector indexes and close the database connections."""
        self.indexes.flush()
        self.store.close()

    def __enter__(self) -> Collections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def arn(self, collection_id: str) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.account_id}:collection/{collection_id}"

    def _collection(self, collection_id: Any) -> Collection:
        return self.store.collection(_pattern(collection_id, COLLECTION_ID_RE, "CollectionId"))

    # -- collections ----------------------------------------------------------------------------------

    @audit.audited("CreateCollection")
    def create_collection(self, *, CollectionId: str, Tags: dict[str, str] | None = None) -> dict:
        """CreateCollection; the `faceprint:model` tag names the collection's face model (default: the
        server's default model)."""
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        tags = _tags(Tags)
        model_name = tags.get(MODEL_TAG, self.default_model)
        try:
            model = get_model(model_name)
        except ResourceNotFoundError as exc:
            raise InvalidParameterError(f"tag {MODEL_TAG}: {exc.message}") from None
        coll = self.store.create_collection(name, model.version, tags)
        return {"StatusCode": 200, "CollectionArn": self.arn(name), "FaceModelVersion": coll.model_version}

    @audit.audited("DeleteCollection")
    def delete_collection(self, *, CollectionId: str) -> dict:
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        self.indexes.forget(self.store.delete_collection(name))
        return {"StatusCode": 200}

    @audit.audited("DescribeCollection")
    def describe_collection(self, *, CollectionId: str) -> dict:
        coll = self._collection(CollectionId)
        return {
            "FaceCount": coll.face_count,
            "FaceModelVersion": coll.model_version,
            "CollectionARN": self.arn(coll.name),
            "CreationTimestamp": coll.created,
            "UserCount": self.store.user_count(coll.id),
        }

    @audit.audited("ListCollections", matches="CollectionIds")
    def list_collections(self, *, NextToken: str | None = None, MaxResults: int | None = None) -> dict:
        limit = _integer(MaxResults, "MaxResults", 0, MAX_PAGE, DEFAULT_PAGE) or DEFAULT_PAGE
        after = self._tokens.parse(NextToken, "collections")
        rows = self.store.list_collections(after, limit + 1)
        page = rows[:limit]
        out: dict[str, Any] = {
            "CollectionIds": [c.name for c in page],
            "FaceModelVersions": [c.model_version for c in page],
        }
        if len(rows) > limit:
            out["NextToken"] = self._tokens.make("collections", page[-1].id)
        return out

    # -- tags -----------------------------------------------------------------------------------------

    def _tagged(self, arn: Any) -> str:
        """The CollectionId of a collection ARN of this account (the only resources faceprint tags)."""
        parsed = collection_of_arn(arn)
        if parsed is None:
            raise InvalidParameterError(
                f"ResourceArn {arn!r} is not a collection ARN (arn:aws:rekognition:<region>:<account>:"
                "collection/<CollectionId>); faceprint tags collections only"
            )
        if parsed[0] != self.account_id:
            raise ResourceNotFoundError(f"resource {arn} does not exist in account {self.account_id}")
        return parsed[1]

    @audit.audited("TagResource")
    def tag_resource(self, *, ResourceArn: str, Tags: dict[str, str]) -> dict:
        """TagResource: add or overwrite tags of a collection (at most 50 per collection, as on AWS)."""
        name = self._tagged(ResourceArn)
        self.store.update_tags(name, _tags(Tags), (), MAX_TAGS)
        return {}

    @audit.audited("UntagResource")
    def untag_resource(self, *, ResourceArn: str, TagKeys: list[str]) -> dict:
        """UntagResource: remove tags of a collection (keys it does not have are ignored)."""
        name = self._tagged(ResourceArn)
        if not isinstance(TagKeys, list | tuple) or not all(isinstance(k, str) for k in TagKeys):
            raise InvalidParameterError("TagKeys must be a list of tag keys")
        self.store.update_tags(name, {}, tuple(TagKeys), MAX_TAGS)
        return {}

    @audit.audited("ListTagsForResource")
    def list_tags_for_resource(self, *, ResourceArn: str) -> dict:
        return {"Tags": self.store.collection(self._tagged(ResourceArn)).tags}

    # -- images and faces -----------------------------------------------------------------------------

    def _image(self, image: Any) -> tuple[LoadedImage, str]:
        """Decode the Image member ({"Bytes": ...}; bytes, a path or pixels also work in the core)."""
        limits = ImageLimits.from_env()
        if isinstance(image, dict):
            if "S3Object" in image and "Bytes" not in image:
                raise InvalidS3ObjectError("S3 objects are not supported by faceprint; send the image Bytes")
            if "Bytes" not in image:
                raise InvalidParameterError("Image must have Bytes")
            image = image["Bytes"]
        if isinstance(image, bytes | bytearray | memoryview):
            data = bytes(image)
            return decode_image_bytes(data, limits), hashlib.sha256(data).hexdigest()
        if isinstance(image, str | Path):
            path = Path(image)
            if not path.is_file():
                raise InvalidParameterError(f"no such image file: {path}")
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise ImageTooLargeError(f"image is {size:,} bytes; the limit is {limits.max_bytes:,} bytes")
            data = path.read_bytes()
            return decode_image_bytes(data, limits, name=path.name), hashlib.sha256(data).hexdigest()
        if isinstance(image, LoadedImage | np.ndarray):
            img = load_image(image, limits)
            return img, hashlib.sha256(img.pixels.tobytes()).hexdigest()
        raise InvalidParameterError("Image must be {'Bytes': <image bytes>}")

    @audit.audited("IndexFaces", matches="FaceRecords")
    def index_faces(
        self,
        *,
        CollectionId: str,
        Image: Any,
        ExternalImageId: str | None = None,
        DetectionAttributes: list[str] | None = None,
        MaxFaces: int | None = None,
        QualityFilter: str | None = None,
    ) -> dict:
        """IndexFaces: store the faces that pass QualityFilter (default AUTO), at most MaxFaces (<= 100).

        Concurrent calls (the server's worker threads) share embedder batches and one commit: see
        `ingest.GroupRunner`. Many images from one caller go faster through `ingest.Indexer`.
        """
        prepared = self.prepare_index(
            CollectionId=CollectionId,
            Image=Image,
            ExternalImageId=ExternalImageId,
            DetectionAttributes=DetectionAttributes,
            MaxFaces=MaxFaces,
            QualityFilter=QualityFilter,
        )
        result = self._index_group(prepared)
        if isinstance(result, BaseException):
            raise result
        return result

    def prepare_index(
        self,
        *,
        CollectionId: str,
        Image: Any,
        ExternalImageId: str | None = None,
        DetectionAttributes: list[str] | None = None,
        MaxFaces: int | None = None,
        QualityFilter: str | None = None,
    ) -> PreparedIndex:
        """IndexFaces up to its embedding: validate, decode, detect, filter, and cut the kept faces' chips."""
        external_id = _optional(ExternalImageId, EXTERNAL_IMAGE_ID_RE, "ExternalImageId")
        attrs = validate_attributes(DetectionAttributes)
        max_faces = min(_integer(MaxFaces, "MaxFaces", 1, None, MAX_FACES), MAX_FACES)
        qfilter = check_quality_filter(QualityFilter, "AUTO")
        coll = self._collection(CollectionId)
        engine = self._engine_for(coll)
        self._scorer_for(coll)  # a cohort of another model is refused before any work
        img, sha = self._image(Image)
        w, h = img.width, img.height
        faces = engine.analyze(img, max_faces=MAX_FACES, embed=False)
        passing: list[Face] = []
        unindexed: list[tuple[Face, list[str]]] = []
        for face in faces:
            reasons = unindexed_reasons(face, w, h, qfilter)
            if reasons:
                unindexed.append((face, reasons))
            else:
                passing.append(face)
        kept = self._keep(passing, max_faces, w, h)
        unindexed += [(f, ["EXCEEDS_MAX_FACES"]) for f in passing if not any(f is k for k in kept)]
        order = {id(f): i for i, f in enumerate(faces)}
        unindexed.sort(key=lambda item: order[id(item[0])])
        for face in kept:
            _ = face.views  # cut the chips now, in the caller's thread, and let go of the image
            if self.keep_chips:  # a crop any model can re-embed from (`collections migrate`)
                face.crop = wide_crop(img.pixels, face.box)
        return PreparedIndex(coll.name, external_id, attrs, sha, w, h, kept, unindexed, coll.model_version)

    def embed_prepared(self, prepared: Sequence[PreparedIndex]) -> None:
        """Embed the kept faces of several prepared images, in one embedder call per face model."""
        by_model: dict[str, list[Face]] = {}
        for p in prepared:
            by_model.setdefault(p.model_version, []).extend(p.kept)
        for version, faces in by_model.items():
            self.engine.with_model(model_for_version(version)).embed_faces(None, faces)

    def store_prepared(self, prepared: Sequence[PreparedIndex]) -> list[dict | FaceprintError]:
        """Store embedded prepared images in one durable transaction; the IndexFaces response of each, or
        the error that image alone met (its collection was deleted meanwhile, the quota is reached)."""
        scorers = {p.model_version: model_for_version(p.model_version).scorer() for p in prepared}
        stats = [
            scorers[p.model_version].stats(np.stack([f.embedding for f in p.kept]))
            if p.kept
            else np.zeros((0, 2))
            for p in prepared
        ]
        items = [
            ImageFaces(
                collection=p.collection,
                image_sha256=p.sha256,
                image_id=str(uuid.uuid4()),
                external_image_id=p.external_image_id,
                faces=[
                    NewFace(
                        face_id=str(uuid.uuid4()),
                        box=tuple(
                            bounding_box(f.box, p.width, p.height)[k]
                            for k in ("Left", "Top", "Width", "Height")
                        ),
                        confidence=f.confidence,
                        brightness=f.quality.brightness,
                        sharpness=f.quality.sharpness,
                        pose=(f.pose.roll, f.pose.yaw, f.pose.pitch),
                        embedding=f.embedding,
                        model_version=p.model_version,
                        chip=crop_jpeg(f.crop) if f.crop is not None else None,
                        cohort=(float(st[0]), float(st[1])) if scorers[p.model_version].normalised else None,
                        cohort_tag=scorers[p.model_version].tag,
                    )
                    for f, st in zip(p.kept, p_stats, strict=True)
                ],
            )
            for p, p_stats in zip(prepared, stats, strict=True)
        ]
        stored = self.store.add_images(items, MAX_COLLECTION_FACES)
        self._vectors_written(items, stored)
        out: list[dict | FaceprintError] = []
        for p, rows in zip(prepared, stored, strict=True):
            if isinstance(rows, FaceprintError):
                out.append(rows)
                continue
            w, h = p.width, p.height
            out.append(
                {
                    "FaceRecords": [
                        {
                            "Face": face_shape(row, full=False),
                            "FaceDetail": face_detail(f, w, h, p.attributes),
                        }
                        for f, row in zip(p.kept, rows, strict=True)
                    ],
                    "FaceModelVersion": p.model_version,
                    "UnindexedFaces": [
                        {"Reasons": r, "FaceDetail": face_detail(f, w, h, p.attributes)}
                        for f, r in p.unindexed
                    ],
                }
            )
        return out

    def _vectors_written(
        self, items: list[ImageFaces], stored: list[list[FaceRecord] | FaceprintError]
    ) -> None:
        """Have the vector index take the faces just stored before they are acknowledged. A collection whose
        index cannot (Milvus down) gets its new faces taken out of the store again, and each of its images
        the index's error in place of its result (`stored` is updated in place)."""
        if isinstance(self.indexes, IndexCache):  # a per-node cache: it replays the log at its next search
            return
        for name in dict.fromkeys(item.collection for item in items):
            places = [i for i, item in enumerate(items) if item.collection == name]
            if all(isinstance(stored[i], FaceprintError) for i in places):
                continue
            new = {f.face_id for i in places for f in items[i].faces}
            added = [
                r.face_id for i in places if not isinstance(stored[i], FaceprintError) for r in stored[i]
            ]
            added = [f for f in added if f in new]  # not the faces already stored from the same image
            try:
                coll = self.store.collection(name)
                self.indexes.written(
                    coll.id,
                    coll.model_version,
                    undo=lambda name=name, added=added: added and self.store.delete_faces(name, added),
                )
            except FaceprintError as exc:
                for i in places:
                    stored[i] = exc

    def _index_batch(self, prepared: list[PreparedIndex]) -> list[dict | FaceprintError]:
        self.embed_prepared(prepared)
        return self.store_prepared(prepared)

    @staticmethod
    def _keep(passing: list[Face], max_faces: int, width: int, height: int) -> list[Face]:
        """Rekognition's rule past MaxFaces: drop the lowest-quality faces first, then the smallest."""
        kept = list(passing)  # largest first
        if len(kept) > max_faces:
            low = [f for f in reversed(kept) if unindexed_reasons(f, width, height, "AUTO")]
            for face in low[: len(kept) - max_faces]:
                kept.remove(face)
        return kept[:max_faces]

    @audit.audited("ListFaces", matches="Faces")
    def list_faces(
        self,
        *,
        CollectionId: str,
        NextToken: str | None = None,
        MaxResults: int | None = None,
        UserId: str | None = None,
        FaceIds: list[str] | None = None,
    ) -> dict:
        limit = _integer(MaxResults, "MaxResults", 0, MAX_PAGE, DEFAULT_PAGE) or DEFAULT_PAGE
        user_id = _optional(UserId, USER_ID_RE, "UserId")
        face_ids = None if FaceIds is None else _face_ids(FaceIds, "FaceIds", MAX_FACE_ID_LIST)
        coll = self._collection(CollectionId)
        after = self._tokens.parse(NextToken, f"faces:{coll.id}")
        rows = self.store.list_faces(coll.id, after, limit + 1, face_ids, user_id)
        out: dict[str, Any] = {
            "Faces": [face_shape(r) for r in rows[:limit]],
            "FaceModelVersion": coll.model_version,
        }
        if len(rows) > limit:
            out["NextToken"] = self._tokens.make(f"faces:{coll.id}", rows[limit - 1].row)
        return out

    @audit.audited("DeleteFaces", matches="DeletedFaces")
    def delete_faces(self, *, CollectionId: str, FaceIds: list[str]) -> dict:
        """DeleteFaces: faces associated with a user are not deleted (disassociate them first)."""
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        face_ids = _face_ids(FaceIds, "FaceIds", MAX_FACE_ID_LIST)
        changes = self.store.delete_faces(name, face_ids)
        if changes.done:
            coll = self.store.collection(name)
            self.indexes.written(coll.id, coll.model_version)  # final in the store; Milvus may catch up later
        out: dict[str, Any] = {"DeletedFaces": changes.done} if changes.done else {}  # the list has min 1
        return {**out, "UnsuccessfulFaceDeletions": [refused_shape(r) for r in changes.refused]}

    def face_index_dates(self, *, CollectionId: str, FaceIds: list[str]) -> dict[str, dict]:
        """FaceId -> {"IndexedAt": epoch seconds, "HasChip": bool} (for a console's face list)."""
        coll = self._collection(CollectionId)
        dates = self.store.face_dates(coll.id, _face_ids(FaceIds, "FaceIds", MAX_PAGE))
        return {f: {"IndexedAt": created, "HasChip": chip} for f, (created, chip) in dates.items()}

    def face_chip(self, *, CollectionId: str, FaceId: str) -> bytes:
        """The aligned chip (JPEG) kept for a face (`faceprint index --keep-chips`)."""
        coll = self._collection(CollectionId)
        chip = self.store.face_chip(coll.id, _pattern(FaceId, FACE_ID_RE, "FaceId"))
        if chip is None:
            raise ResourceNotFoundError(f"no chip was kept for face {FaceId} in collection {coll.name!r}")
        return chip

    # -- search ---------------------------------------------------------------------------------------

    def _face_threshold(self, value: Any, coll: Collection) -> float:
        threshold = _percent(value, "FaceMatchThreshold")
        if threshold is not None:
            return threshold
        return self._scorer_for(coll).default_search_threshold(coll.face_count)

    def _matches(
        self,
        coll: Collection,
        vector: np.ndarray,
        max_faces: int,
        threshold: float,
        exclude: int | None = None,
        probe_stats: np.ndarray | None = None,
    ) -> list[dict]:
        """FaceMatches of one embedding: normalised Similarity >= threshold, best first, only faces SQLite
        holds. The index gives the SHORTLIST (at least 2 x MaxFaces) nearest faces by raw distance; they
        are re-ranked by the scorer."""
        scorer = self._scorer_for(coll)
        vector = self._check_vector(coll, vector, None)
        k = max(SHORTLIST, 2 * max_faces) + (exclude is not None)
        _, ids = self.indexes.search(coll.id, vector, k, model=coll.model_version)
        rows = [int(i) for i in ids[0] if i >= 0 and i != exclude]
        found = list(self.store.faces_by_row(coll.id, rows, embeddings=True).values())
        if not found:
            return []
        foreign = {row.model_version for row in found} - {coll.model_version}
        if foreign:
            raise InvalidParameterError(
                f"collection {coll.name!r} holds faces of FaceModelVersion {', '.join(sorted(foreign))} "
                f"beside its model's {coll.model_version}; vectors of different models cannot be compared"
            )
        gallery = np.stack([row.embedding for row in found])
        scores = scorer.scores(vector, probe_stats, gallery, self._face_stats(scorer, found))
        matches = [
            {
                "Similarity": float(score),
                "Face": face_shape(row),
                "EstimatedFalseMatchRate": scorer.false_match_rate(float(score)),
            }
            for row, score in zip(found, scores, strict=True)
            if score >= threshold
        ]
        matches.sort(key=lambda m: m["Similarity"], reverse=True)
        return matches[:max_faces]

    def search_faces_by_vector(
        self,
        *,
        CollectionId: str,
        Vector: np.ndarray,
        ModelVersion: str,
        MaxFaces: int | None = None,
        FaceMatchThreshold: float | None = None,
    ) -> dict:
        """Search with an embedding already computed (a video track's) by face model `ModelVersion`:
        SearchFaces' response members. A vector of another model than the collection's is refused."""
        max_faces = _integer(MaxFaces, "MaxFaces", 1, MAX_SEARCH_FACES, DEFAULT_SEARCH_FACES)
        coll = self._collection(CollectionId)
        vector = self._check_vector(coll, Vector, ModelVersion)
        threshold = self._face_threshold(FaceMatchThreshold, coll)
        return {
            "FaceMatches": self._matches(coll, vector, max_faces, threshold),
            "FaceModelVersion": coll.model_version,
            **_error_rate_members(threshold, coll, self._scorer_for(coll)),
        }

    @audit.audited("SearchFaces", threshold="FaceMatchThreshold", matches="FaceMatches")
    def search_faces(
        self,
        *,
        CollectionId: str,
        FaceId: str,
        MaxFaces: int | None = None,
        FaceMatchThreshold: float | None = None,
    ) -> dict:
        """SearchFaces: faces of the collection that match a stored face (itself excluded)."""
        face_id = _pattern(FaceId, FACE_ID_RE, "FaceId")
        max_faces = _integer(MaxFaces, "MaxFaces", 1, MAX_SEARCH_FACES, DEFAULT_SEARCH_FACES)
        coll = self._collection(CollectionId)
        threshold = self._face_threshold(FaceMatchThreshold, coll)
        face = self.store.face(coll.id, face_id, embedding=True)
        if face is None:
            raise ResourceNotFoundError(f"face {face_id} is not in collection {coll.name!r}")
        return {
            "SearchedFaceId": face_id,
            "FaceMatches": self._matches(
                coll,
                face.embedding,
                max_faces,
                threshold,
                exclude=face.row,
                probe_stats=self._face_stats(self._scorer_for(coll), [face]),
            ),
            "FaceModelVersion": coll.model_version,
            **_error_rate_members(threshold, coll, self._scorer_for(coll)),
        }

    @audit.audited("SearchFacesByImage", threshold="FaceMatchThreshold", matches="FaceMatches")
    def search_faces_by_image(
        self,
        *,
        CollectionId: str,
        Image: Any,
        MaxFaces: int | None = None,
        FaceMatchThreshold: float | None = None,
        QualityFilter: str | None = None,
    ) -> dict:
        """SearchFacesByImage: the largest face of the image against the collection."""
        max_faces = _integer(MaxFaces, "MaxFaces", 1, MAX_SEARCH_FACES, DEFAULT_SEARCH_FACES)
        qfilter = check_quality_filter(QualityFilter, "NONE")
        coll = self._collection(CollectionId)
        threshold = self._face_threshold(FaceMatchThreshold, coll)
        engine = self._engine_for(coll)
        img, _ = self._image(Image)
        faces = engine.analyze(img, max_faces=1, embed=False)
        if not faces:
            raise InvalidParameterError("no face was detected in the image")
        face = faces[0]
        reasons = unindexed_reasons(face, img.width, img.height, qfilter)
        if reasons:
            raise InvalidParameterError(
                f"the largest face does not pass QualityFilter {qfilter}: {', '.join(reasons)}"
            )
        engine.embed_faces(img, [face])
        return {
            "SearchedFaceBoundingBox": bounding_box(face.box, img.width, img.height),
            "SearchedFaceConfidence": face.confidence,
            "FaceMatches": self._matches(coll, face.embedding, max_faces, threshold),
            "FaceModelVersion": coll.model_version,
            **_error_rate_members(threshold, coll, self._scorer_for(coll)),
        }

    def search_faces_in_image(
        self,
        *,
        CollectionId: str,
        Image: Any,
        MaxFaces: int | None = None,
        FaceMatchThreshold: float | None = None,
        QualityFilter: str | None = None,
    ) -> dict:
        """Every face of the image against the collection (faceprint's extension of SearchFacesByImage).

        `Faces` lists the detected faces largest first; each has its BoundingBox and Confidence, and either
        its `FaceMatches` (`Searched` true) or the quality filter's `Reasons` (`Searched` false).
        """
        max_faces = _integer(MaxFaces, "MaxFaces", 1, MAX_SEARCH_FACES, DEFAULT_SEARCH_FACES)
        qfilter = check_quality_filter(QualityFilter, "NONE")
        coll = self._collection(CollectionId)
        threshold = self._face_threshold(FaceMatchThreshold, coll)
        engine = self._engine_for(coll)
        img, _ = self._image(Image)
        faces = engine.analyze(img, embed=False)
        if not faces:
            raise InvalidParameterError("no face was detected in the image")
        reasons = [unindexed_reasons(face, img.width, img.height, qfilter) for face in faces]
        searched = [face for face, why in zip(faces, reasons, strict=True) if not why]
        if searched:
            engine.embed_faces(img, searched)
        results = []
        for face, why in zip(faces, reasons, strict=True):
            item: dict[str, Any] = {
                "BoundingBox": bounding_box(face.box, img.width, img.height),
                "Confidence": face.confidence,
                "Searched": not why,
            }
            if why:
                item["Reasons"] = why
            else:
                item["FaceMatches"] = self._matches(coll, face.embedding, max_faces, threshold)
            results.append(item)
        self._audit_each_face(coll.name, threshold, FaceMatchThreshold is None, results)
        members = _error_rate_members(threshold, coll, self._scorer_for(coll))
        return {"Faces": results, "FaceModelVersion": coll.model_version, **members}

    def _audit_each_face(self, collection: str, threshold: float, default: bool, faces: list[dict]) -> None:
        """One SearchFacesByImage audit row per face of a search of every face (one transaction)."""
        caller = audit.current_caller()
        events = []
        for number, face in enumerate(faces, start=1):
            detail: dict[str, Any] = {"face_number": number, "faces_in_image": len(faces), "every_face": True}
            if default:
                detail["threshold"] = "default"
            if face["Searched"]:
                detail["face_ids"] = [m["Face"]["FaceId"] for m in face["FaceMatches"]][:100]
                matches: int | None = len(face["FaceMatches"])
            else:
                detail["reasons"] = face["Reasons"]
                matches = None
            events.append(
                audit.event("SearchFacesByImage", caller, collection, threshold, matches, "OK", detail)
            )
        audit.log_for(self.home).append_many(events)
        caller.recorded = True

    # -- users ----------------------------------------------------------------------------------------

    @audit.audited("CreateUser")
    def create_user(self, *, CollectionId: str, UserId: str, ClientRequestToken: str | None = None) -> dict:
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        user_id = _pattern(UserId, USER_ID_RE, "UserId")
        token = _token(ClientRequestToken)
        self.store.create_user(name, user_id, token, _digest(CollectionId=name, UserId=user_id))
        return {}

    @audit.audited("DeleteUser")
    def delete_user(self, *, CollectionId: str, UserId: str, ClientRequestToken: str | None = None) -> dict:
        """DeleteUser: disassociates the user's faces, then deletes the user."""
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        user_id = _pattern(UserId, USER_ID_RE, "UserId")
        token = _token(ClientRequestToken)
        self.store.delete_user(name, user_id, token, _digest(CollectionId=name, UserId=user_id))
        return {}

    @audit.audited("ListUsers", matches="Users")
    def list_users(
        self, *, CollectionId: str, MaxResults: int | None = None, NextToken: str | None = None
    ) -> dict:
        limit = _integer(MaxResults, "MaxResults", 1, MAX_USER_PAGE, MAX_USER_PAGE)
        coll = self._collection(CollectionId)
        after = self._tokens.parse(NextToken, f"users:{coll.id}")
        rows = self.store.list_users(coll.id, after, limit + 1)
        out: dict[str, Any] = {
            "Users": [{"UserId": u.user_id, "UserStatus": user_status(u)} for u in rows[:limit]]
        }
        if len(rows) > limit:
            out["NextToken"] = self._tokens.make(f"users:{coll.id}", rows[limit - 1].row)
        return out

    @audit.audited("AssociateFaces", threshold="UserMatchThreshold", matches="AssociatedFaces")
    def associate_faces(
        self,
        *,
        CollectionId: str,
        UserId: str,
        FaceIds: list[str],
        UserMatchThreshold: float | None = None,
        ClientRequestToken: str | None = None,
    ) -> dict:
        """AssociateFaces: each face must match the user's fused template (default threshold 75)."""
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        user_id = _pattern(UserId, USER_ID_RE, "UserId")
        face_ids = _face_ids(FaceIds, "FaceIds", MAX_ASSOCIATE_FACES)
        threshold = _percent(UserMatchThreshold, "UserMatchThreshold")
        threshold = ASSOCIATE_DEFAULT_THRESHOLD if threshold is None else threshold
        token = _token(ClientRequestToken)
        digest = _digest(CollectionId=name, UserId=user_id, FaceIds=face_ids, UserMatchThreshold=threshold)

        scorer = self._scorer_for(self._collection(name))

        def score(template: np.ndarray, vector: np.ndarray) -> float:
            return scorer.pair(template, vector)

        changes = self.store.associate_faces(name, user_id, face_ids, threshold, score, token, digest)
        return _changes_shape(changes, "AssociatedFaces", "UnsuccessfulFaceAssociations")

    @audit.audited("DisassociateFaces", matches="DisassociatedFaces")
    def disassociate_faces(
        self, *, CollectionId: str, UserId: str, FaceIds: list[str], ClientRequestToken: str | None = None
    ) -> dict:
        name = _pattern(CollectionId, COLLECTION_ID_RE, "CollectionId")
        user_id = _pattern(UserId, USER_ID_RE, "UserId")
        face_ids = _face_ids(FaceIds, "FaceIds", MAX_ASSOCIATE_FACES)
        token = _token(ClientRequestToken)
        changes = self.store.disassociate_faces(
            name, user_id, face_ids, token, _digest(CollectionId=name, UserId=user_id, FaceIds=face_ids)
        )
        return _changes_shape(changes, "DisassociatedFaces", "UnsuccessfulFaceDisassociations")

    def _user_matches(
        self,
        coll: Collection,
        vector: np.ndarray | None,
        threshold: Any,
        max_users: int,
        skip: str | None = None,
    ) -> list[dict]:
        users, templates = self.store.user_templates(coll.id)
        value = _percent(threshold, "UserMatchThreshold")
        scorer = self._scorer_for(coll)
        value = scorer.default_search_threshold(len(users)) if value is None else value
        if vector is None or templates is None:
            return []
        vector = self._check_vector(coll, vector, None)
        scores = scorer.scores(vector, None, templates, None)  # templates' statistics: one product
        matches = [
            {
                "Similarity": float(s),
                "User": {"UserId": u.user_id, "UserStatus": user_status(u)},
                "EstimatedFalseMatchRate": scorer.false_match_rate(float(s)),
            }
            for u, s in zip(users, scores, strict=True)
            if s >= value and u.user_id != skip
        ]
        matches.sort(key=lambda m: m["Similarity"], reverse=True)
        return matches[:max_users]

    @audit.audited("SearchUsers", threshold="UserMatchThreshold", matches="UserMatches")
    def search_users(
        self,
        *,
        CollectionId: str,
        UserId: str | None = None,
        FaceId: str | None = None,
        UserMatchThreshold: float | None = None,
        MaxUsers: int | None = None,
    ) -> dict:
        """SearchUsers by a stored face (SearchedFace) or by a user's fused template (SearchedUser)."""
        if (UserId is None) == (FaceId is None):
            raise InvalidParameterError("give exactly one of UserId and FaceId")
        max_users = _integer(MaxUsers, "MaxUsers", 1, MAX_USERS, DEFAULT_MAX_USERS)
        _percent(UserMatchThreshold, "UserMatchThreshold")
        coll = self._collection(CollectionId)
        out: dict[str, Any] = {}
        if FaceId is not None:
            face = self.store.face(coll.id, _pattern(FaceId, FACE_ID_RE, "FaceId"), embedding=True)
            if face is None:
                raise ResourceNotFoundError(f"face {FaceId} is not in collection {coll.name!r}")
            vector, skip = face.embedding, None
            out["SearchedFace"] = {"FaceId": FaceId}
        else:
            user = self.store.user(coll.id, _pattern(UserId, USER_ID_RE, "UserId"))
            if user is None:
                raise ResourceNotFoundError(f"user {UserId!r} does not exist in collection {coll.name!r}")
            vector, skip = user.template, UserId
            out["SearchedUser"] = {"UserId": UserId}
        return {
            "UserMatches": self._user_matches(coll, vector, UserMatchThreshold, max_users, skip),
            "FaceModelVersion": coll.model_version,
            **out,
        }

    @audit.audited("SearchUsersByImage", threshold="UserMatchThreshold", matches="UserMatches")
    def search_users_by_image(
        self,
        *,
        CollectionId: str,
        Image: Any,
        UserMatchThreshold: float | None = None,
        MaxUsers: int | None = None,
        QualityFilter: str | None = None,
    ) -> dict:
        """SearchUsersByImage: the largest face against the users' fused templates; no face is no error."""
        max_users = _integer(MaxUsers, "MaxUsers", 1, MAX_USERS, DEFAULT_MAX_USERS)
        _percent(UserMatchThreshold, "UserMatchThreshold")
        qfilter = check_quality_filter(QualityFilter, "NONE")
        coll = self._collection(CollectionId)
        engine = self._engine_for(coll)
        img, _ = self._image(Image)
        w, h = img.width, img.height
        faces = engine.analyze(img, max_faces=MAX_FACES, embed=False)
        unsearched = [
            {"FaceDetails": face_detail(f, w, h), "Reasons": ["FACE_NOT_LARGEST"]} for f in faces[1:]
        ]
        out: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": coll.model_version}
        if faces:
            reasons = unindexed_reasons(faces[0], w, h, qfilter)
            if reasons:
                unsearched.insert(0, {"FaceDetails": face_detail(faces[0], w, h), "Reasons": reasons})
            else:
                engine.embed_faces(img, faces[:1])
                out["UserMatches"] = self._user_matches(
                    coll, faces[0].embedding, UserMatchThreshold, max_users
                )
                out["SearchedFace"] = {"FaceDetail": face_detail(faces[0], w, h)}
        out["UnsearchedFaces"] = unsearched
        return out
