"""dlib's HOG + linear SVM frontal face detector (what `face_recognition.face_locations` runs)."""

from __future__ import annotations

import threading

import numpy as np

from faceprint.detectors.base import Detection
from faceprint.detectors.common import finish, logistic, processing_scale, resize
from faceprint.weights import hog_detector

WINDOW = 80  # dlib's frontal detector scans an 80x80 window: smaller faces need upsampling
SCORE_SLOPE = 2.0  # SVM margin 0 (dlib's threshold) -> 0.5, 1 -> 0.88, 2 -> 0.98 (clear faces: 1.5 to 3)
_lock = threading.Lock()  # a dlib object_detector must not be called from two threads at once


class HogDetector:
    """dlib HOG. `upsample` doubles the image that many times (finds faces down to 80 / 2**upsample
    pixels, about 4x slower each time); `adjust_threshold` shifts the SVM threshold (negative finds more).

    Boxes keep dlib's own numbers (right and bottom inclusive), so `dlib.rectangle(round(left), ...)`
    gives back the rectangle the shape predictors were trained on. The image is shrunk first when
    `min_face_size` allows it or its long side exceeds `max_side`; boxes are mapped back to its pixels.
    """

    name = "hog"

    def __init__(
        self,
        upsample: int = 1,
        adjust_threshold: float = 0.0,
        min_face_size: float = 0.0,
        max_side: int | None = 2048,
        max_faces: int | None = None,
    ) -> None:
        self.upsample = upsample
        self.adjust_threshold = adjust_threshold
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.max_faces = max_faces

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        h, w = pixels.shape[:2]
        scale = processing_scale(w, h, WINDOW / 2**self.upsample, self.min_face_size, self.max_side)
        img = resize(pixels, scale)
        with _lock:
            rects, scores, _ = hog_detector().run(img, self.upsample, self.adjust_threshold)
        dets = [
            Detection(
                r.left() / scale,
                r.top() / scale,
                r.right() / scale,
                r.bottom() / scale,
                score=logistic(s, SCORE_SLOPE),
                detector=self.name,
            )
            for r, s in zip(rects, scores, strict=True)
        ]
        return finish(dets, self.min_face_size, self.max_faces)
