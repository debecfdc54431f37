"""dlib's 128-D ResNet embedder (the reference implementation, 99.38% on LFW)."""

from __future__ import annotations

import threading

import numpy as np

from faceprint import weights


class DlibEmbedder:
    """Runs `dlib.face_recognition_model_v1` on aligned chips."""

    name = "dlib"
    model_version = "dlib_face_recognition_resnet_model_v1"
    dim = 128

    def __init__(self) -> None:
        self._model = weights.face_recognition_model()
        self._lock = threading.Lock()  # a dlib net keeps per-call state: one caller at a time

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [np.ascontiguousarray(c) for c in chips]
        with self._lock:
            vectors = self._model.compute_face_descriptor(batch)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)
