"""The small public Python API: detect, embed and compare faces in a few calls.

import faceprint
faces = faceprint.detect("group.jpg")            # list[Face], largest first
vectors = faceprint.embed("group.jpg")           # one 128-D vector per face
result = faceprint.compare("a.jpg", "b.jpg")     # largest face of each
result.similarity, result.false_match_rate, result.is_match
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceprint import similarity as sim
from faceprint.engine import MAX_FACES, Face, FaceEngine
from faceprint.errors import InvalidParameterError
from faceprint.images import ImageSource


@dataclass(frozen=True)
class Comparison:
    """How alike the largest faces of two images are, and what that score means."""

    distance: float  # Euclidean distance between the two descriptors
    similarity: float  # Rekognition-style percent of the cohort-normalised score
    false_match_rate: float  # share of different-person pairs that score at least this high
    threshold: float  # the threshold `is_match` used
    is_match: bool


def detect(image: ImageSource, max_faces: int = MAX_FACES) -> list[Face]:
    """Detect faces (largest first) with box, confidence, landmarks, pose and quality."""
    return FaceEngine.shared().detect(image, max_faces=max_faces)


def embed(image: ImageSource, max_faces: int = MAX_FACES) -> list[np.ndarray]:
    """One identity vector per detected face, largest face first."""
    faces = FaceEngine.shared().analyze(image, max_faces=max_faces, embed=True)
    return [f.embedding for f in faces if f.embedding is not None]


def compare(a: ImageSource, b: ImageSource, threshold: float | None = None) -> Comparison:
    """Compare the largest face of `a` with the largest face of `b`.

    `threshold` is a Similarity percent; by default the calibrated 1:1 threshold (FMR <= 1e-4).
    Raises InvalidParameterError when either image has no face.
    """
    engine = FaceEngine.shared()
    va, vb = engine.embed_image(a), engine.embed_image(b)
    if va is None or vb is None:
        raise InvalidParameterError(
            f"no face was detected in the {'first' if va is None else 'second'} image"
        )
    distance = float(np.linalg.norm(va - vb))
    scorer = engine.model.scorer()
    score = scorer.pair(va, vb)
    cut = sim.default_compare_threshold() if threshold is None else float(threshold)
    return Comparison(
        distance=distance,
        similarity=score,
        false_match_rate=sim.false_match_rate(score),
        threshold=cut,
        is_match=score >= cut,
    )
