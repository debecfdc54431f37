"""Request shapes of the Rekognition face operations, and the checks botocore leaves to the server.

botocore validates required members, Python types and minimums before sending; `max`, `pattern`, `enum`
and blob lengths reach the server unchecked (wire contract §1). `validate` checks all of them and raises
`InvalidParameterError` with AWS's "1 validation error detected: ..." wording. Blobs arrive base64-encoded
and leave `validate` as bytes.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faceprint.errors import ImageTooLargeError, InvalidParameterError
from faceprint.rekognition import ATTRIBUTES as ATTRIBUTE_NAMES
from faceprint.rekognition import QUALITY_FILTERS

IMAGE_BLOB_MAX = 5_242_880


class Shape:
    """A node of a request shape; `check` returns the decoded value or raises InvalidParameterError."""

    def check(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _fail(path: str, value: Any, constraint: str) -> InvalidParameterError:
    shown = (
        value
        if isinstance(value, str | int | float) and not isinstance(value, bool)
        else type(value).__name__
    )
    if isinstance(shown, str) and len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidParameterError(
        f"1 validation error detected: Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"
    )


@dataclass(frozen=True)
class Str(Shape):
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    predicate: Callable[[str], bool] | None = None  # for patterns Python's `re` cannot express (\p{L})

    def check(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _fail(path, value, "Member must be a string")
        if self.min is not None and len(value) < self.min:
            raise _fail(path, value, f"Member must have length greater than or equal to {self.min}")
        if self.max is not None and len(value) > self.max:
            raise _fail(path, value, f"Member must have length less than or equal to {self.max}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise _fail(path, value, f"Member must satisfy regular expression pattern: {self.pattern}")
        if self.predicate is not None and not self.predicate(value):
            raise _fail(path, value, "Member contains characters that are not allowed")
        if self.enum is not None and value not in self.enum:
            raise _fail(path, value, f"Member must satisfy enum value set: [{', '.join(self.enum)}]")
        return value


@dataclass(frozen=True)
class Int(Shape):
    min: int | None = None
    max: int | None = None

    def check(self, value: Any, path: str) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
        ):
            raise _fail(path, value, "Member must be an integer")
        value = int(value)
        if self.min is not None and value < self.min:
            raise _fail(path, value, f"Member must have value greater than or equal to {self.min}")
        if self.max is not None and value > self.max:
            raise _fail(path, value, f"Member must have value less than or equal to {self.max}")
        return value


@dataclass(frozen=True)
class Num(Shape):
    min: float | None = None
    max: float | None = None

    def check(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _fail(path, value, "Member must be a number")
        if self.min is not None and value < self.min:
            raise _fail(path, value, f"Member must have value greater than or equal to {self.min:g}")
        if self.max is not None and value > self.max:
            raise _fail(path, value, f"Member must have value less than or equal to {self.max:g}")
        return float(value)


@dataclass(frozen=True)
class Bool(Shape):
    def check(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise _fail(path, value, "Member must be a boolean")
        return value


@dataclass(frozen=True)
class Blob(Shape):
    """A base64 blob. Over `max` bytes is ImageTooLargeException (the modeled error for it)."""

    min: int = 1
    max: int = IMAGE_BLOB_MAX

    def check(self, value: Any, path: str) -> bytes:
        if isinstance(value, bytes | bytearray):  # from the REST API's multipart upload
            return self._sized(bytes(value), path)
        if not isinstance(value, str):
            raise _fail(path, value, "Member must be a base64-encoded blob")
        if len(value) > 4 * ((self.max + 2) // 3) + 4:
            raise ImageTooLargeError(
                f"{path} is about {len(value) * 3 // 4:,} bytes; the limit is {self.max:,} bytes"
            )
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(path, "<blob>", "Member must be a base64-encoded blob") from None
        return self._sized(data, path)

    def _sized(self, data: bytes, path: str) -> bytes:
        if len(data) < self.min:
            raise _fail(path, "", f"Member must have length greater than or equal to {self.min}")
        if len(data) > self.max:
            raise ImageTooLargeError(f"{path} is {len(data):,} bytes; the limit is {self.max:,} bytes")
        return data


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape
    min: int | None = None
    max: int | None = None

    def check(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _fail(path, value, "Member must be a list")
        if self.min is not None and len(value) < self.min:
            raise _fail(
                path, f"list of {len(value)}", f"Member must have length greater than or equal to {self.min}"
            )
        if self.max is not None and len(value) > self.max:
            raise _fail(
                path, f"list of {len(value)}", f"Member must have length less than or equal to {self.max}"
            )
        return [self.item.check(v, f"{path}.{i + 1}.member") for i, v in enumerate(value)]


@dataclass(frozen=True)
class MapOf(Shape):
    key: Str
    value: Str
    min: int | None = None
    max: int | None = None

    def check(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path, value, "Member must be a map")
        if self.max is not None and len(value) > self.max:
            raise _fail(
                path, f"map of {len(value)}", f"Member must have length less than or equal to {self.max}"
            )
        return {
            self.key.check(k, f"{path}.key"): self.value.check(v, f"{path}.{k}") for k, v in value.items()
        }


@dataclass(frozen=True)
class Struct(Shape):
    members: Mapping[str, Shape]
    required: frozenset[str] = field(default_factory=frozenset)
    one_of: tuple[str, ...] = ()  # exactly one of these must be present (Image: Bytes | S3Object)

    def check(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path or "request", value, "Member must be a structure")
        out: dict[str, Any] = {}
        for name in self.required:
            if value.get(name) is None:
                raise _fail(_join(path, name), "null", "Member must not be null")
        for name, shape in self.members.items():
            if value.get(name) is not None:  # unknown members are ignored, as AWS does
                out[name] = shape.check(value[name], _join(path, name))
        if self.one_of and sum(name in out for name in self.one_of) != 1:
            raise InvalidParameterError(f"{path or 'request'}: give exactly one of {', '.join(self.one_of)}")
        return out


def _join(path: str, name: str) -> str:
    member = name[:1].lower() + name[1:]
    return f"{path}.{member}" if path else member


def _tag_chars(value: str) -> bool:
    return all(unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@" for c in value)


# --- common shapes (wire contract §2) ---------------------------------------------------------------
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
COLLECTION_ID = Str(1, 255, r"[a-zA-Z0-9_.\-]+")
FACE_ID = Str(pattern=UUID)
USER_ID = Str(1, 128, r"[a-zA-Z0-9_.\-:]+")
EXTERNAL_IMAGE_ID = Str(1, 255, r"[a-zA-Z0-9_.\-:]+")
CLIENT_TOKEN = Str(1, 64, r"^[a-zA-Z0-9-_]+$")
PERCENT = Num(0, 100)
PAGINATION_TOKEN = Str(max=255)
PAGE_SIZE = Int(0, 4096)
MAX_USERS = Int(1, 500)
QUALITY_FILTER = Str(enum=QUALITY_FILTERS)
ATTRIBUTES = ListOf(Str(enum=ATTRIBUTE_NAMES))
S3_OBJECT = Struct(
    {
        "Bucket": Str(3, 255, r"[0-9A-Za-z\.\-_]*"),
        "Name": Str(1, 1024, predicate=lambda name: "\x00" not in name),
        "Version": Str(1, 1024),
    }
)
IMAGE = Struct({"Bytes": Blob(), "S3Object": S3_OBJECT}, one_of=("Bytes", "S3Object"))
VIDEO = Struct({"S3Object": S3_OBJECT}, frozenset({"S3Object"}))
FACE_IDS = ListOf(FACE_ID, 1, 4096)
FACE_IDS_100 = ListOf(FACE_ID, 1, 100)
TAGS = MapOf(
    key=Str(1, 128, predicate=lambda k: not k.startswith("aws:") and _tag_chars(k)),
    value=Str(0, 256, predicate=_tag_chars),
    min=0,
    max=200,
)
NOTIFICATION_CHANNEL = Struct(
    {
        "SNSTopicArn": Str(pattern=r"(^arn:aws:sns:.*:\w{12}:.+$)"),
        "RoleArn": Str(pattern=r"arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"),
    },
    frozenset({"SNSTopicArn", "RoleArn"}),
)
RESOURCE_ARN = Str(20, 2048)
JOB_ID = Str(1, 64, r"^[a-zA-Z0-9-_]+$")
JOB_TAG = Str(1, 1024, r"[a-zA-Z0-9_.\-:+=\/]+")


# --- stream processors (CreateStreamProcessor ... UpdateStreamProcessor) ------------------------------
STREAM_PROCESSOR_NAME = Str(1, 128, r"[a-zA-Z0-9_.\-]+")
FLOAT = Num()
REGIONS_OF_INTEREST = ListOf(
    Struct(
        {
            "BoundingBox": Struct({"Width": FLOAT, "Height": FLOAT, "Left": FLOAT, "Top": FLOAT}),
            "Polygon": ListOf(Struct({"X": FLOAT, "Y": FLOAT})),
        }
    ),
    0,
    10,
)
DATA_SHARING = Struct({"OptIn": Bool()}, frozenset({"OptIn"}))
CONNECTED_HOME_LABELS = ListOf(Str(), 1, 128)
STREAM_PROCESSOR_INPUT = Struct(
    {
        "KinesisVideoStream": Struct(
            {"Arn": Str(pattern=r"(^arn:([a-z\d-]+):kinesisvideo:([a-z\d-]+):\d{12}:.+$)")}
        )
    }
)
STREAM_PROCESSOR_OUTPUT = Struct(
    {
        "KinesisDataStream": Struct(
            {"Arn": Str(pattern=r"(^arn:([a-z\d-]+):kinesis:([a-z\d-]+):\d{12}:.+$)")}
        ),
        "S3Destination": Struct({"Bucket": Str(3, 255, r"[0-9A-Za-z\.\-_]*"), "KeyPrefix": Str(max=1024)}),
    }
)
STREAM_PROCESSOR_SETTINGS = Struct(
    {
        "FaceSearch": Struct({"CollectionId": COLLECTION_ID, "FaceMatchThreshold": PERCENT}),
        "ConnectedHome": Struct(
            {"Labels": CONNECTED_HOME_LABELS, "MinConfidence": PERCENT}, frozenset({"Labels"})
        ),
    }
)


def _req(members: dict[str, Shape], *required: str) -> Struct:
    return Struct(members, frozenset(required))


REQUESTS: dict[str, Struct] = {
    "CreateCollection": _req({"CollectionId": COLLECTION_ID, "Tags": TAGS}, "CollectionId"),
    "DeleteCollection": _req({"CollectionId": COLLECTION_ID}, "CollectionId"),
    "DescribeCollection": _req({"CollectionId": COLLECTION_ID}, "CollectionId"),
    "ListCollections": _req({"NextToken": PAGINATION_TOKEN, "MaxResults": PAGE_SIZE}),
    "IndexFaces": _req(
        {
            "CollectionId": COLLECTION_ID,
            "Image": IMAGE,
            "ExternalImageId": EXTERNAL_IMAGE_ID,
            "DetectionAttributes": ATTRIBUTES,
            "MaxFaces": Int(1),
            "QualityFilter": QUALITY_FILTER,
        },
        "CollectionId",
        "Image",
    ),
    "ListFaces": _req(
        {
            "CollectionId": COLLECTION_ID,
            "NextToken": PAGINATION_TOKEN,
            "MaxResults": PAGE_SIZE,
            "UserId": USER_ID,
            "FaceIds": FACE_IDS,
        },
        "CollectionId",
    ),
    "DeleteFaces": _req({"CollectionId": COLLECTION_ID, "FaceIds": FACE_IDS}, "CollectionId", "FaceIds"),
    "SearchFaces": _req(
        {
            "CollectionId": COLLECTION_ID,
            "FaceId": FACE_ID,
            "MaxFaces": Int(1, 4096),
            "FaceMatchThreshold": PERCENT,
        },
        "CollectionId",
        "FaceId",
    ),
    "SearchFacesByImage": _req(
        {
            "CollectionId": COLLECTION_ID,
            "Image": IMAGE,
            "MaxFaces": Int(1, 4096),
            "FaceMatchThreshold": PERCENT,
            "QualityFilter": QUALITY_FILTER,
        },
        "CollectionId",
        "Image",
    ),
    "CompareFaces": _req(
        {
            "SourceImage": IMAGE,
            "TargetImage": IMAGE,
            "SimilarityThreshold": PERCENT,
            "QualityFilter": QUALITY_FILTER,
        },
        "SourceImage",
        "TargetImage",
    ),
    "DetectFaces": _req({"Image": IMAGE, "Attributes": ATTRIBUTES}, "Image"),
    "CreateUser": _req(
        {"CollectionId": COLLECTION_ID, "UserId": USER_ID, "ClientRequestToken": CLIENT_TOKEN},
        "CollectionId",
        "UserId",
    ),
    "DeleteUser": _req(
        {"CollectionId": COLLECTION_ID, "UserId": USER_ID, "ClientRequestToken": CLIENT_TOKEN},
        "CollectionId",
        "UserId",
    ),
    "ListUsers": _req(
        {"CollectionId": COLLECTION_ID, "MaxResults": MAX_USERS, "NextToken": PAGINATION_TOKEN},
        "CollectionId",
    ),
    "AssociateFaces": _req(
        {
            "CollectionId": COLLECTION_ID,
            "UserId": USER_ID,
            "FaceIds": FACE_IDS_100,
            "UserMatchThreshold": PERCENT,
            "ClientRequestToken": CLIENT_TOKEN,
        },
        "CollectionId",
        "UserId",
        "FaceIds",
    ),
    "DisassociateFaces": _req(
        {
            "CollectionId": COLLECTION_ID,
            "UserId": USER_ID,
            "ClientRequestToken": CLIENT_TOKEN,
            "FaceIds": FACE_IDS_100,
        },
        "CollectionId",
        "UserId",
        "FaceIds",
    ),
    "SearchUsers": Struct(
        {
            "CollectionId": COLLECTION_ID,
            "UserId": USER_ID,
            "FaceId": FACE_ID,
            "UserMatchThreshold": PERCENT,
            "MaxUsers": MAX_USERS,
        },
        frozenset({"CollectionId"}),
        one_of=("UserId", "FaceId"),
    ),
    "SearchUsersByImage": _req(
        {
            "CollectionId": COLLECTION_ID,
            "Image": IMAGE,
            "UserMatchThreshold": PERCENT,
            "MaxUsers": MAX_USERS,
            "QualityFilter": QUALITY_FILTER,
        },
        "CollectionId",
        "Image",
    ),
    "StartFaceDetection": _req(
        {
            "Video": VIDEO,
            "ClientRequestToken": CLIENT_TOKEN,
            "NotificationChannel": NOTIFICATION_CHANNEL,
            "FaceAttributes": Str(enum=("DEFAULT", "ALL")),
            "JobTag": JOB_TAG,
        },
        "Video",
    ),
    "GetFaceDetection": _req({"JobId": JOB_ID, "MaxResults": Int(1), "NextToken": PAGINATION_TOKEN}, "JobId"),
    "StartFaceSearch": _req(
        {
            "Video": VIDEO,
            "ClientRequestToken": CLIENT_TOKEN,
            "FaceMatchThreshold": PERCENT,
            "CollectionId": COLLECTION_ID,
            "NotificationChannel": NOTIFICATION_CHANNEL,
            "JobTag": JOB_TAG,
        },
        "Video",
        "CollectionId",
    ),
    "TagResource": _req({"ResourceArn": RESOURCE_ARN, "Tags": TAGS}, "ResourceArn", "Tags"),
    "UntagResource": _req(
        {"ResourceArn": RESOURCE_ARN, "TagKeys": ListOf(TAGS.key, 0, 200)}, "ResourceArn", "TagKeys"
    ),
    "ListTagsForResource": _req({"ResourceArn": RESOURCE_ARN}, "ResourceArn"),
    "GetFaceSearch": _req(
        {
            "JobId": JOB_ID,
            "MaxResults": Int(1),
            "NextToken": PAGINATION_TOKEN,
            "SortBy": Str(enum=("INDEX", "TIMESTAMP")),
        },
        "JobId",
    ),
    "CreateStreamProcessor": _req(
        {
            "Input": STREAM_PROCESSOR_INPUT,
            "Output": STREAM_PROCESSOR_OUTPUT,
            "Name": STREAM_PROCESSOR_NAME,
            "Settings": STREAM_PROCESSOR_SETTINGS,
            "RoleArn": Str(pattern=r"arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"),
            "Tags": TAGS,
            "NotificationChannel": Struct(
                {"SNSTopicArn": Str(pattern=r"(^arn:aws:sns:.*:\w{12}:.+$)")}, frozenset({"SNSTopicArn"})
            ),
            "KmsKeyId": Str(1, 2048, r"^[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,2048}$"),
            "RegionsOfInterest": REGIONS_OF_INTEREST,
            "DataSharingPreference": DATA_SHARING,
        },
        "Input",
        "Output",
        "Name",
        "Settings",
        "RoleArn",
    ),
    "DescribeStreamProcessor": _req({"Name": STREAM_PROCESSOR_NAME}, "Name"),
    "ListStreamProcessors": _req({"NextToken": PAGINATION_TOKEN, "MaxResults": Int(1)}),
    "StartStreamProcessor": _req(
        {
            "Name": STREAM_PROCESSOR_NAME,
            "StartSelector": Struct(
                {
                    "KVSStreamStartSelector": Struct(
                        {"ProducerTimestamp": Int(0), "FragmentNumber": Str(1, 128, r"^[0-9]+$")}
                    )
                }
            ),
            "StopSelector": Struct({"MaxDurationInSeconds": Int(1, 120)}),
        },
        "Name",
    ),
    "StopStreamProcessor": _req({"Name": STREAM_PROCESSOR_NAME}, "Name"),
    "DeleteStreamProcessor": _req({"Name": STREAM_PROCESSOR_NAME}, "Name"),
    "UpdateStreamProcessor": _req(
        {
            "Name": STREAM_PROCESSOR_NAME,
            "SettingsForUpdate": Struct(
                {
                    "ConnectedHomeForUpdate": Struct(
                        {"Labels": CONNECTED_HOME_LABELS, "MinConfidence": PERCENT}
                    )
                }
            ),
            "RegionsOfInterestForUpdate": REGIONS_OF_INTEREST,
            "DataSharingPreferenceForUpdate": DATA_SHARING,
            "ParametersToDelete": ListOf(Str(enum=("ConnectedHomeMinConfidence", "RegionsOfInterest"))),
        },
        "Name",
    ),
}


def validate(operation: str, params: Any) -> dict[str, Any]:
    """Check `params` against the operation's request shape; returns them with blobs decoded."""
    return REQUESTS[operation].check(params, "")
