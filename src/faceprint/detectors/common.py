"""Helpers shared by the detector backends: resizing, score mapping, size filtering and capping."""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceprint.detectors.base import Detection


def resize(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Resize by `scale` with area averaging when shrinking, bilinear when enlarging (always contiguous)."""
    h, w = pixels.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return np.ascontiguousarray(pixels)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def processing_scale(
    width: int, height: int, window: float, min_face_size: float, max_side: int | None
) -> float:
    """Scale (<= 1) at which to run a sliding-window detector whose smallest face is `window` pixels:
    no finer than needed to see `min_face_size`, and no larger than `max_side` on the long side."""
    scale = 1.0
    if min_face_size > window:
        scale = window / min_face_size
    if max_side and max(width, height) * scale > max_side:
        scale = max_side / max(width, height)
    return scale


def logistic(margin: float, slope: float) -> float:
    """Monotone map of a detector margin to [0, 1]; the detector's own threshold (0) maps to 0.5."""
    return 1.0 / (1.0 + math.exp(-slope * margin))


def finish(dets: list[Detection], min_face_size: float, max_faces: int | None) -> list[Detection]:
    """Drop faces smaller than `min_face_size`, order largest first and keep at most `max_faces`."""
    kept = [d for d in dets if min(d.width, d.height) >= min_face_size]
    kept.sort(key=lambda d: d.area, reverse=True)
    return kept[:max_faces] if max_faces is not None else kept
