"""The default detector: BlazeFace over an adaptive tile pyramid, dlib HOG where BlazeFace finds nothing.

Chosen by measurement on the shared data (`bench/detect.py`): BlazeFace on tiles finds 129 real faces in
the 2048x1150 selfie crowd (HOG upsample 1: 88) and 20 in the RetinaFace crowd (HOG: 13), and is 5-14x
faster than HOG upsample 1 on portraits and LFW. The few LFW faces it misses (strong pose, odd light) are
mostly ones HOG finds, so HOG runs when BlazeFace returns no face at all (on the image shrunk to
`fallback_max_side`, to bound its cost): on 2,000 LFW pair images auto misses 2 central faces, HOG 4.
Every box is in dlib HOG's convention (BlazeFace's boxes are corrected), so landmarks downstream match.
"""

from __future__ import annotations

import numpy as np

from faceprint.detectors.base import Detection
from faceprint.detectors.blazeface import BlazeFaceDetector
from faceprint.detectors.common import finish
from faceprint.detectors.hog import HogDetector


class AutoDetector:
    """BlazeFace first, HOG (upsample 1) as the fallback; `min_face_size` and `max_faces` as elsewhere."""

    name = "auto"

    def __init__(
        self,
        min_face_size: float = 20.0,
        max_faces: int | None = None,
        fallback: bool = True,
        fallback_max_side: int = 1024,
    ) -> None:
        self.min_face_size = min_face_size
        self.max_faces = max_faces
        self.primary = BlazeFaceDetector(min_face_size=min_face_size)
        self.fallback = None
        if fallback:
            self.fallback = HogDetector(upsample=1, min_face_size=min_face_size, max_side=fallback_max_side)

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        dets = self.primary.detect(pixels)
        if not dets and self.fallback is not None:
            dets = self.fallback.detect(pixels)
        return finish(dets, self.min_face_size, self.max_faces)
