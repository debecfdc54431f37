"""Rekognition response shapes built from engine results (ratios, rounding, attribute sets)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from faceprint.errors import InvalidParameterError

if TYPE_CHECKING:
    from faceprint.detectors.base import Detection
    from faceprint.engine import Face

QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")  # Rekognition's QualityFilter enum

# Rekognition's identifier patterns (wire contract, section 2).
COLLECTION_ID_RE = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")
COLLECTION_ARN_RE = re.compile(r"arn:aws:rekognition:[a-z0-9-]*:(\d{12}):collection/([a-zA-Z0-9_.\-]{1,255})")


def collection_of_arn(arn: object) -> tuple[str, str] | None:
    """(account id, CollectionId) of a collection ARN, or None for anything else."""
    match = COLLECTION_ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
    return (match.group(1), match.group(2)) if match else None


FACE_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
USER_ID_RE = re.compile(r"[a-zA-Z0-9_.\-:]{1,128}")
EXTERNAL_IMAGE_ID_RE = re.compile(r"[a-zA-Z0-9_.\-:]{1,255}")
CLIENT_TOKEN_RE = re.compile(r"[a-zA-Z0-9\-_]{1,64}")

ATTRIBUTES = (  # Rekognition's Attribute enum, in the model's order
    "DEFAULT",
    "ALL",
    "AGE_RANGE",
    "BEARD",
    "EMOTIONS",
    "EYE_DIRECTION",
    "EYEGLASSES",
    "EYES_OPEN",
    "GENDER",
    "MOUTH_OPEN",
    "MUSTACHE",
    "FACE_OCCLUDED",
    "SMILE",
    "SUNGLASSES",
)
# faceprint does not infer age, gender, emotion or other appearance attributes: they are not identity
# features and such classifiers are unreliable and biased. Requests for them are accepted (for
# compatibility) and answered with the DEFAULT attributes only. See docs/api.md.
UNSUPPORTED_ATTRIBUTES = frozenset(ATTRIBUTES) - {"DEFAULT", "ALL"}


def validate_attributes(attributes: Iterable[str] | None) -> list[str]:
    """Check Attributes/DetectionAttributes against the enum; returns the list (default ["DEFAULT"])."""
    attrs = list(attributes or ["DEFAULT"])
    bad = [a for a in attrs if a not in ATTRIBUTES]
    if bad:
        raise InvalidParameterError(
            f"unknown attribute(s) {', '.join(map(str, bad))}; allowed: {', '.join(ATTRIBUTES)}"
        )
    return attrs


def bounding_box(box: Detection, width: int, height: int) -> dict[str, float]:
    """Rekognition BoundingBox: Width/Left as ratios of image width, Height/Top of image height."""
    return {
        "Width": box.width / width,
        "Height": box.height / height,
        "Left": box.left / width,
        "Top": box.top / height,
    }


def landmarks(face: Face, width: int, height: int) -> list[dict[str, float | str]]:
    """Rekognition Landmarks: X/Y as ratios of image width/height."""
    return [{"Type": name, "X": x / width, "Y": y / height} for name, (x, y) in face.landmarks.items()]


def face_detail(face: Face, width: int, height: int, attributes: Iterable[str] | None = None) -> dict:
    """Rekognition FaceDetail with the DEFAULT attributes (the only ones faceprint computes)."""
    return {
        "BoundingBox": bounding_box(face.box, width, height),
        "Landmarks": landmarks(face, width, height),
        "Pose": {"Roll": face.pose.roll, "Yaw": face.pose.yaw, "Pitch": face.pose.pitch},
        "Quality": {"Brightness": face.quality.brightness, "Sharpness": face.quality.sharpness},
        "Confidence": face.confidence,
    }


def compared_face(face: Face, width: int, height: int) -> dict:
    """Rekognition ComparedFace (BoundingBox, Confidence, Landmarks, Pose, Quality)."""
    return face_detail(face, width, height)
