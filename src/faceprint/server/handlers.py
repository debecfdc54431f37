"""The operation registry: Rekognition operation name -> handler(params, ctx) -> response dict.

Handlers are thin adapters: `params` arrive validated (blobs decoded), images are resolved here (Bytes, or
a local-bucket S3Object), and the transport-free core decodes them and does the work:
- `faceprint.operations` (DetectFaces, CompareFaces),
- `faceprint.collections.service.Collections` (collection, face and user operations),
- `faceprint.video.service.VideoJobs` (the four video operations; its job worker runs in the server),
- `faceprint.streams.service.StreamProcessors` (the seven stream processor operations; its runner runs
  in the server).
A core module that is not installed makes its operations answer UnknownOperationException.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from faceprint.config import ImageLimits
from faceprint.images import LoadedImage, decode_image_bytes
from faceprint.rekognition import collection_of_arn
from faceprint.server.errors import UnknownOperationError
from faceprint.server.s3 import S3_IMAGE_MAX_BYTES, LocalBuckets

COLLECTIONS_SERVICE = ("faceprint.collections.service", "Collections")
VIDEO_SERVICE = ("faceprint.video.service", "VideoJobs")
STREAMS_SERVICE = ("faceprint.streams.service", "StreamProcessors")


class Services:
    """The core objects one server process uses, created on first use."""

    def __init__(self, home: Path, buckets: LocalBuckets, limits: ImageLimits | None = None) -> None:
        self.home = Path(home)
        self.buckets = buckets
        self.limits = limits or ImageLimits.from_env()
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], Any] = {}

    def instance(self, where: tuple[str, str], operation: str) -> Any:
        """The process-wide instance of a core service class, constructed from the home folder."""
        with self._lock:
            if where not in self._instances:
                cls = getattr(_import(where[0], operation), where[1])
                if where == VIDEO_SERVICE:  # videos come from the same local buckets as images
                    self._instances[where] = cls(self.home, resolver=self.video_path)
                else:
                    self._instances[where] = cls(self.home)
            return self._instances[where]

    def start_video_worker(self) -> bool:
        """Run queued video jobs in a thread of this process (jobs are leased: safe with several workers)."""
        try:
            self.instance(VIDEO_SERVICE, "StartFaceDetection").start_worker()
        except UnknownOperationError:
            return False
        return True

    def start_stream_runner(self) -> bool:
        """Run stream processors in a thread of this process (leased: one runner per processor)."""
        try:
            self.instance(STREAMS_SERVICE, "StartStreamProcessor").start_runner()
        except UnknownOperationError:
            return False
        return True

    def close(self) -> None:
        """Stop the video worker and close the core services."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for service in instances:
            if hasattr(service, "close"):
                service.close()

    def image(self, spec: dict[str, Any]) -> bytes | LoadedImage:
        """The image of an `Image` {Bytes | S3Object}: bytes for the core to decode, as every caller passes.

        S3 images may be up to 15 MB, as on AWS; one over the 5 MB `Bytes` limit is decoded here.
        """
        if "Bytes" in spec:
            return spec["Bytes"]
        data = self.buckets.read(spec["S3Object"], S3_IMAGE_MAX_BYTES)
        if len(data) <= self.limits.max_bytes:
            return data
        s3_limits = ImageLimits(S3_IMAGE_MAX_BYTES, self.limits.min_side, self.limits.max_pixels)
        return decode_image_bytes(data, s3_limits, name=spec["S3Object"]["Name"])

    def video_path(self, video: dict[str, Any]) -> Path:
        """The local file of a `Video` {S3Object}."""
        return self.buckets.resolve(video["S3Object"])


@dataclass(frozen=True)
class RequestContext:
    """What a handler may use besides its parameters."""

    request_id: str
    services: Services
    key_id: str | None = None
    region: str = "us-east-1"


Handler = Callable[[dict[str, Any], RequestContext], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    """A registered operation. The core audits it (`faceprint.audit.audited`); `audit`, `threshold` and
    `matches` describe its kind, its threshold member and the response list it counts."""

    name: str
    handler: Handler
    audit: str | None = None  # "search", "compare", "index", "delete", "change", or None: a read
    threshold: str | None = None  # request member holding the match threshold
    matches: str | None = None  # response list whose length is the "number of matches"
    collection_scoped: bool = field(default=True)
    # collections a request reaches through another resource (a video job's, a stream processor's): the
    # key's policy applies
    resource_collections: Callable[[dict[str, Any], Services], list[str]] | None = None


REGISTRY: dict[str, Operation] = {}


def register(op: Operation) -> None:
    """Add or replace an operation (the video service may register its own handlers this way)."""
    REGISTRY[op.name] = op


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _import(module: str, operation: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise UnknownOperationError(
                f"{operation} is not available in this server: {module} is not installed"
            ) from None
        raise


@cache
def _accepted(func: Callable[..., Any]) -> frozenset[str] | None:
    """Keyword names `func` accepts, or None if it takes **kwargs."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def _call(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = _accepted(getattr(method, "__func__", method))
    if accepted is not None and "ClientRequestToken" not in accepted:
        kwargs.pop("ClientRequestToken", None)  # idempotency tokens are optional for the core
    return method(**kwargs)


def _service_handler(where: tuple[str, str], name: str) -> Handler:
    method_name = snake_case(name)

    def handler(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        service = ctx.services.instance(where, name)
        kwargs = dict(params)
        if "Image" in kwargs:
            kwargs["Image"] = ctx.services.image(kwargs["Image"])
        return _call(getattr(service, method_name), kwargs)

    handler.__name__ = method_name
    return handler


def _detect_faces(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    ops = _import("faceprint.operations", "DetectFaces")
    return ops.detect_faces(ctx.services.image(params["Image"]), attributes=params.get("Attributes"))


def _compare_faces(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    ops = _import("faceprint.operations", "CompareFaces")
    kwargs: dict[str, Any] = {"similarity_threshold": params.get("SimilarityThreshold")}
    if "QualityFilter" in params:
        kwargs["quality_filter"] = params["QualityFilter"]
    return ops.compare_faces(
        ctx.services.image(params["SourceImage"]), ctx.services.image(params["TargetImage"]), **kwargs
    )


def _job_collections(params: dict[str, Any], services: Services) -> list[str]:
    """The collections a Get* of a video job reaches (its policy check, before any result is read)."""
    return services.instance(VIDEO_SERVICE, "GetFaceSearch").job_collections(params["JobId"])


def _arn_collections(params: dict[str, Any], services: Services) -> list[str]:
    """The collection a tag operation's ResourceArn names (its policy check)."""
    parsed = collection_of_arn(params.get("ResourceArn"))
    return [parsed[1]] if parsed else []


def _processor_collections(params: dict[str, Any], services: Services) -> list[str]:
    """The collection a stream processor operation reaches: the one the request names (Create) or the
    processor's own."""
    face_search = (params.get("Settings") or {}).get("FaceSearch") or {}
    if isinstance(face_search.get("CollectionId"), str):
        return [face_search["CollectionId"]]
    found = services.instance(STREAMS_SERVICE, "DescribeStreamProcessor").processor_collection(
        params.get("Name")
    )
    return [found] if found else []


def _start_stream_processor(params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    service = ctx.services.instance(STREAMS_SERVICE, "StartStreamProcessor")
    return service.start_stream_processor(**params, StartedBy=ctx.key_id)


def _register_all() -> None:
    register(Operation("DetectFaces", _detect_faces, collection_scoped=False))
    register(
        Operation(
            "CompareFaces",
            _compare_faces,
            audit="compare",
            threshold="SimilarityThreshold",
            matches="FaceMatches",
            collection_scoped=False,
        )
    )
    audited: dict[str, dict[str, Any]] = {
        "CreateCollection": {"audit": "change"},
        "DeleteCollection": {"audit": "delete"},
        "DescribeCollection": {},
        "ListCollections": {"collection_scoped": False},
        "IndexFaces": {"audit": "index", "matches": "FaceRecords"},
        "ListFaces": {},
        "DeleteFaces": {"audit": "delete", "matches": "DeletedFaces"},
        "SearchFaces": {
            "audit": "search",
            "threshold": "FaceMatchThreshold",
            "matches": "FaceMatches",
        },
        "SearchFacesByImage": {
            "audit": "search",
            "threshold": "FaceMatchThreshold",
            "matches": "FaceMatches",
        },
        "CreateUser": {"audit": "change"},
        "DeleteUser": {"audit": "delete"},
        "ListUsers": {},
        "AssociateFaces": {
            "audit": "change",
            "threshold": "UserMatchThreshold",
            "matches": "AssociatedFaces",
        },
        "DisassociateFaces": {"audit": "change", "matches": "DisassociatedFaces"},
        "SearchUsers": {
            "audit": "search",
            "threshold": "UserMatchThreshold",
            "matches": "UserMatches",
        },
        "SearchUsersByImage": {
            "audit": "search",
            "threshold": "UserMatchThreshold",
            "matches": "UserMatches",
        },
    }
    for name in ("TagResource", "UntagResource", "ListTagsForResource"):
        audited[name] = {"collection_scoped": False, "resource_collections": _arn_collections}
        if name != "ListTagsForResource":
            audited[name]["audit"] = "change"
    for name, extra in audited.items():
        register(Operation(name, _service_handler(COLLECTIONS_SERVICE, name), **extra))
    # Video operations: same adapter, their own service (wire contract §2, last four rows).
    register(
        Operation(
            "StartFaceDetection",
            _service_handler(VIDEO_SERVICE, "StartFaceDetection"),
            collection_scoped=False,
        )
    )
    register(
        Operation(
            "GetFaceDetection",
            _service_handler(VIDEO_SERVICE, "GetFaceDetection"),
            collection_scoped=False,
            resource_collections=_job_collections,
        )
    )
    register(
        Operation(
            "StartFaceSearch",
            _service_handler(VIDEO_SERVICE, "StartFaceSearch"),
            audit="search",
            threshold="FaceMatchThreshold",
        )
    )
    register(
        Operation(
            "GetFaceSearch",
            _service_handler(VIDEO_SERVICE, "GetFaceSearch"),
            collection_scoped=False,
            resource_collections=_job_collections,
        )
    )

    # Stream processors (botocore's model): the policy applies to the processor's collection.
    for name, extra in {
        "CreateStreamProcessor": {"audit": "change"},
        "DescribeStreamProcessor": {},
        "ListStreamProcessors": {},
        "StartStreamProcessor": {"audit": "change"},
        "StopStreamProcessor": {"audit": "change"},
        "DeleteStreamProcessor": {"audit": "delete"},
        "UpdateStreamProcessor": {"audit": "change"},
    }.items():
        handler = (
            _start_stream_processor
            if name == "StartStreamProcessor"
            else _service_handler(STREAMS_SERVICE, name)
        )
        scoped = name != "ListStreamProcessors"
        register(
            Operation(
                name,
                handler,
                collection_scoped=False,
                resource_collections=_processor_collections if scoped else None,
                **extra,
            )
        )


_register_all()
