"""dlib's MMOD CNN face detector: more robust to pose than HOG, but slow on a CPU (seconds per image)."""

from __future__ import annotations

import threading

import numpy as np

from faceprint.detectors.base import Detection
from faceprint.detectors.common import finish, logistic, processing_scale, resize
from faceprint.detectors.correction import BoxCorrection
from faceprint.weights import cnn_detector

WINDOW = 80  # the MMOD model finds faces of about 80 pixels and up at upsample 0
SCORE_SLOPE = 3.0  # MMOD confidence 0 (dlib's threshold) -> 0.5, 1 -> 0.95 (clear faces score about 1)
_lock = threading.Lock()  # the dlib network must not run in two threads at once

# Fitted by `bench/fit_box_correction.py --cnn 150` (trimmed means over the 73 even-numbered of 145 faces
# where dlib HOG, upsample 1, and the CNN find the same face in LFW deep-funneled images and Congress
# portraits): the MMOD box is about 7% smaller than HOG's and sits 7% of its height higher. On the held-out
# half the IoU with HOG's box goes from 0.742 to 0.797 and the 68-point landmark error from 0.0225 to
# 0.0165 inter-ocular distances (5-point: 0.0066 -> 0.0073).
CNN_TO_HOG = BoxCorrection(dx=0.009, dy=0.070, sx=1.078, sy=1.074)


class CnnDetector:
    """dlib MMOD CNN with boxes corrected to HOG's convention. Costs about 7 s per megapixel per
    upsample level on one core, so images are shrunk to `max_side` (and further when `min_face_size`
    allows) before detection; boxes are mapped back to the input's pixels."""

    name = "cnn"

    def __init__(
        self,
        upsample: int = 0,
        min_face_size: float = 0.0,
        max_side: int | None = 1024,
        max_faces: int | None = None,
        correction: BoxCorrection = CNN_TO_HOG,
    ) -> None:
        self.upsample = upsample
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.max_faces = max_faces
        self.correction = correction

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        h, w = pixels.shape[:2]
        scale = processing_scale(w, h, WINDOW / 2**self.upsample, self.min_face_size, self.max_side)
        img = resize(pixels, scale)
        with _lock:
            found = cnn_detector()(img, self.upsample)
        if not found:
            return []
        boxes = np.array([[m.rect.left(), m.rect.top(), m.rect.right(), m.rect.bottom()] for m in found])
        boxes = boxes / scale
        boxes = self.correction.apply(boxes)
        dets = [
            Detection(*map(float, box), score=logistic(m.confidence, SCORE_SLOPE), detector=self.name)
            for box, m in zip(boxes, found, strict=True)
        ]
        return finish(dets, self.min_face_size, self.max_faces)
