"""Face detectors behind one interface (`Detector.detect(pixels) -> list[Detection]`).

`get_detector(name)` returns the process-wide instance of "auto" (the default: BlazeFace tiles with a HOG
fallback), "blazeface", "hog" (dlib HOG, upsample 1) or "cnn" (dlib MMOD, slow); `make_detector` builds one
with other settings (`min_face_size`, `max_faces`, ...). All boxes follow dlib HOG's convention.
"""

from __future__ import annotations

import threading
from typing import Any

from faceprint.detectors.base import Detection, Detector, iou, non_max_suppression
from faceprint.errors import InvalidParameterError

DETECTORS = ("auto", "blazeface", "hog", "cnn")
_cache: dict[str, Detector] = {}
_lock = threading.Lock()


def make_detector(name: str = "auto", **options: Any) -> Detector:
    """A new detector `name` built with `options` (the keyword arguments of its class)."""
    name = (name or "auto").lower()
    if name == "auto":
        from faceprint.detectors.auto import AutoDetector

        return AutoDetector(**options)
    if name == "blazeface":
        from faceprint.detectors.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(**options)
    if name == "hog":
        from faceprint.detectors.hog import HogDetector

        return HogDetector(**options)
    if name == "cnn":
        from faceprint.detectors.cnn import CnnDetector

        return CnnDetector(**options)
    raise InvalidParameterError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def get_detector(name: str = "auto") -> Detector:
    """The cached, default-configured detector `name` ("auto", "blazeface", "hog" or "cnn")."""
    key = (name or "auto").lower()
    with _lock:
        if key not in _cache:
            _cache[key] = make_detector(key)
        return _cache[key]


__all__ = [
    "DETECTORS",
    "Detection",
    "Detector",
    "get_detector",
    "iou",
    "make_detector",
    "non_max_suppression",
]
