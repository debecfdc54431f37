"""Rekognition's landmark set derived from dlib's 68-point (iBUG 300-W) landmarks.

"Left" and "right" are as seen in the image (Rekognition's `eyeLeft` has the smaller X),
which is the subject's right eye. Pupils are the centres of the eye contours.
"""

from __future__ import annotations

import numpy as np

# LandmarkType -> indices of the 68 points whose mean gives it.
LANDMARK_POINTS: dict[str, tuple[int, ...]] = {
    "eyeLeft": (36, 37, 38, 39, 40, 41),
    "eyeRight": (42, 43, 44, 45, 46, 47),
    "nose": (30,),
    "mouthLeft": (48,),
    "mouthRight": (54,),
    "leftEyeBrowLeft": (17,),
    "leftEyeBrowRight": (21,),
    "leftEyeBrowUp": (19,),
    "rightEyeBrowLeft": (22,),
    "rightEyeBrowRight": (26,),
    "rightEyeBrowUp": (24,),
    "leftEyeLeft": (36,),
    "leftEyeRight": (39,),
    "leftEyeUp": (37, 38),
    "leftEyeDown": (40, 41),
    "rightEyeLeft": (42,),
    "rightEyeRight": (45,),
    "rightEyeUp": (43, 44),
    "rightEyeDown": (46, 47),
    "noseLeft": (31,),
    "noseRight": (35,),
    "mouthUp": (51,),
    "mouthDown": (57,),
    "leftPupil": (36, 37, 38, 39, 40, 41),
    "rightPupil": (42, 43, 44, 45, 46, 47),
    "upperJawlineLeft": (0,),
    "midJawlineLeft": (4,),
    "chinBottom": (8,),
    "midJawlineRight": (12,),
    "upperJawlineRight": (16,),
}


def shape_to_array(shape: object) -> np.ndarray:
    """Convert a `dlib.full_object_detection` into an (n, 2) float array of pixel coordinates."""
    parts = shape.parts()  # type: ignore[attr-defined]
    return np.array([(p.x, p.y) for p in parts], dtype=np.float64)


def rekognition_landmarks(points68: np.ndarray) -> dict[str, tuple[float, float]]:
    """Map 68 pixel points to Rekognition's 30 landmark types (pixel coordinates)."""
    out: dict[str, tuple[float, float]] = {}
    for name, idx in LANDMARK_POINTS.items():
        x, y = points68[list(idx)].mean(axis=0)
        out[name] = (float(x), float(y))
    return out
