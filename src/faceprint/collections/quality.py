"""QualityFilter: which detected faces are good enough to index or search, and why not (Reasons).

Each level is a bar on five measurements of a face; a face fails with one Reason per missed bar:

| level  | Confidence >= | face side >= (px)* | abs(Yaw) <= | abs(Pitch) <= | Brightness >= | Sharpness >= |
|--------|---------------|--------------------|-------------|---------------|---------------|--------------|
| LOW    | 50            | 20                 | 80          | 60            | 5             | 3            |
| AUTO   | 50            | 32                 | 70          | 50            | 12            | 6            |
| MEDIUM | 60            | 40                 | 55          | 40            | 20            | 10           |
| HIGH   | 75            | 64                 | 40          | 30            | 30            | 18           |

*the shorter side of the face box, for images up to 1920x1080 pixels; larger images scale it by
sqrt(pixels / (1920 * 1080)) (Rekognition's guideline: 40x40 at 1920x1080, proportionally more above).
NONE filters nothing. Measured on the largest face of 600 random LFW images (the auto detector): AUTO,
IndexFaces' default, keeps 99.5% (it drops side views, blurred and tiny faces), MEDIUM 97.5%,
HIGH 62%; LOW keeps all (it drops only what is barely a face). Reasons: LOW_CONFIDENCE,
SMALL_BOUNDING_BOX, EXTREME_POSE, LOW_BRIGHTNESS, LOW_SHARPNESS (EXCEEDS_MAX_FACES and
FACE_NOT_LARGEST are decided by the operations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faceprint.errors import InvalidParameterError
from faceprint.rekognition import QUALITY_FILTERS

if TYPE_CHECKING:
    from faceprint.engine import Face

REFERENCE_PIXELS = 1920 * 1080


@dataclass(frozen=True)
class QualityBar:
    """The minimum a face must reach at one QualityFilter level."""

    min_confidence: float  # detector confidence, 0-100
    min_side: float  # shorter side of the face box in pixels, at <= 1920x1080
    max_yaw: float  # degrees
    max_pitch: float  # degrees
    min_brightness: float  # 0-100
    min_sharpness: float  # 0-100


BARS: dict[str, QualityBar] = {
    "LOW": QualityBar(50.0, 20.0, 80.0, 60.0, 5.0, 3.0),
    "AUTO": QualityBar(50.0, 32.0, 70.0, 50.0, 12.0, 6.0),
    "MEDIUM": QualityBar(60.0, 40.0, 55.0, 40.0, 20.0, 10.0),
    "HIGH": QualityBar(75.0, 64.0, 40.0, 30.0, 30.0, 18.0),
}


def check_quality_filter(value: str | None, default: str) -> str:
    """Validate a QualityFilter value (None means the operation's default)."""
    value = default if value is None else value
    if value not in QUALITY_FILTERS:
        allowed = ", ".join(QUALITY_FILTERS)
        raise InvalidParameterError(f"QualityFilter must be one of {allowed}, got {value!r}")
    return value


def min_face_side(bar: QualityBar, width: int, height: int) -> float:
    """The smallest acceptable face side in pixels for an image of this size."""
    return bar.min_side * max(1.0, math.sqrt(width * height / REFERENCE_PIXELS))


def unindexed_reasons(face: Face, width: int, height: int, quality_filter: str) -> list[str]:
    """The Reasons why `face` fails `quality_filter` (empty when it passes; NONE passes everything)."""
    if quality_filter == "NONE":
        return []
    bar = BARS.get(quality_filter)
    if bar is None:
        raise InvalidParameterError(f"QualityFilter must be one of {', '.join(QUALITY_FILTERS)}")
    reasons = []
    if face.confidence < bar.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if min(face.box.width, face.box.height) < min_face_side(bar, width, height):
        reasons.append("SMALL_BOUNDING_BOX")
    if abs(face.pose.yaw) > bar.max_yaw or abs(face.pose.pitch) > bar.max_pitch:
        reasons.append("EXTREME_POSE")
    if face.quality.brightness < bar.min_brightness:
        reasons.append("LOW_BRIGHTNESS")
    if face.quality.sharpness < bar.min_sharpness:
        reasons.append("LOW_SHARPNESS")
    return reasons
