"""Head pose (Roll, Yaw, Pitch in degrees) from 68 landmarks, by solvePnP against a 3-D mean face.

Conventions (documented in docs/api.md): Roll is the in-plane angle of the line between the eyes,
positive when the face is rotated clockwise in the image; Yaw is positive when the nose points towards
the image's left (the subject turns to their right); Pitch is positive when the face tilts up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# A generic 3-D face (millimetres, x right, y up, z towards the camera) for six iBUG points:
# nose tip (30), chin (8), outer eye corners (36, 45), mouth corners (48, 54).
_MODEL_POINTS = np.array(
    [
        (0.0, 0.0, 0.0),
        (0.0, -63.6, -12.5),
        (-43.3, 32.7, -26.0),
        (43.3, 32.7, -26.0),
        (-28.9, -28.9, -24.1),
        (28.9, -28.9, -24.1),
    ],
    dtype=np.float64,
)
_IMAGE_INDEX = [30, 8, 36, 45, 48, 54]


@dataclass(frozen=True)
class Pose:
    roll: float
    yaw: float
    pitch: float


def estimate_pose(points68: np.ndarray, image_width: int, image_height: int) -> Pose:
    """Estimate the head pose of one face from its 68 pixel landmarks."""
    left_eye = points68[36:42].mean(axis=0)
    right_eye = points68[42:48].mean(axis=0)
    dx, dy = right_eye - left_eye
    roll = math.degrees(math.atan2(dy, dx))

    image_points = points68[_IMAGE_INDEX].astype(np.float64)
    # OpenCV's camera frame has y down and z away from the camera: flip the model's y and z.
    model = _MODEL_POINTS * np.array([1.0, -1.0, -1.0])
    focal = float(max(image_width, image_height))
    camera = np.array(
        [[focal, 0, image_width / 2], [0, focal, image_height / 2], [0, 0, 1]], dtype=np.float64
    )
    ok, rvec, _tvec = cv2.solvePnP(model, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return Pose(roll=_wrap(roll), yaw=0.0, pitch=0.0)
    rot, _ = cv2.Rodrigues(rvec)
    # R = Rz * Ry * Rx: yaw about the vertical axis, pitch about the horizontal one.
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -rot[2, 0]))))
    pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
    return Pose(roll=_wrap(roll), yaw=_wrap(yaw), pitch=_wrap(-pitch))


def _wrap(angle: float) -> float:
    """Wrap an angle into [-180, 180]."""
    return float((angle + 180.0) % 360.0 - 180.0)
