"""Image operations in Rekognition's shapes: DetectFaces and CompareFaces (transport-free)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from faceprint import audit
from faceprint import similarity as sim
from faceprint.collections.quality import check_quality_filter, unindexed_reasons
from faceprint.engine import MAX_FACES, Face, FaceEngine
from faceprint.errors import InvalidParameterError
from faceprint.images import ImageSource, load_image
from faceprint.rekognition import bounding_box, compared_face, face_detail, validate_attributes


def check_threshold(value: float | None, name: str) -> float | None:
    """Validate a Percent parameter (0-100)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number between 0 and 100") from None
    if not 0.0 <= v <= 100.0:
        raise InvalidParameterError(f"{name} must be between 0 and 100, got {value}")
    return v


@audit.audited("DetectFaces", matches="FaceDetails")
def detect_faces(
    image: ImageSource,
    attributes: Iterable[str] | None = None,
    max_faces: int = MAX_FACES,
    engine: FaceEngine | None = None,
) -> dict:
    """DetectFaces: the `max_faces` largest faces (at most 100) with the DEFAULT attributes."""
    attrs = validate_attributes(attributes)
    if not 1 <= int(max_faces) <= MAX_FACES:
        raise InvalidParameterError(f"max faces must be between 1 and {MAX_FACES}, got {max_faces}")
    img = load_image(image)
    faces = (engine or FaceEngine.shared()).detect(img, max_faces=int(max_faces))
    return {"FaceDetails": [face_detail(f, img.width, img.height, attrs) for f in faces]}


@audit.audited("CompareFaces", threshold="SimilarityThreshold", matches="FaceMatches")
def compare_faces(
    source: ImageSource,
    target: ImageSource,
    similarity_threshold: float | None = None,
    quality_filter: str | None = "NONE",
    engine: FaceEngine | None = None,
) -> dict:
    """CompareFaces: the largest face of `source` against each of the 100 largest faces of `target`.

    Without a threshold, faceprint's calibrated default (FMR <= 1e-4) applies; Rekognition's 80 can
    be passed explicitly. Similarity is the cohort-normalised score (`faceprint.scoring`). Every match
    carries `EstimatedFalseMatchRate`, an extra member.
    """
    threshold = check_threshold(similarity_threshold, "SimilarityThreshold")
    qfilter = check_quality_filter(quality_filter, "NONE")
    if threshold is None:
        threshold = sim.default_compare_threshold()
    engine = engine or FaceEngine.shared()
    scorer = engine.model.scorer()
    src_img, tgt_img = load_image(source), load_image(target)
    src_found = engine.detect(src_img, max_faces=1)
    if not src_found:
        raise InvalidParameterError("no face was detected in the source image")
    reasons = unindexed_reasons(src_found[0], src_img.width, src_img.height, qfilter)
    if qfilter != "NONE" and reasons:
        raise InvalidParameterError(
            f"the largest face of the source image does not pass QualityFilter {qfilter}: "
            + ", ".join(reasons)
        )
    src_faces = src_found
    tgt_faces = _filter_quality(engine.detect(tgt_img), tgt_img.width, tgt_img.height, qfilter)
    engine.embed_faces(None, src_faces + tgt_faces)
    src = src_faces[0]
    matches, unmatched = [], []
    scores = (
        scorer.scores(src.embedding, None, np.stack([f.embedding for f in tgt_faces]), None)
        if tgt_faces
        else []
    )
    for face, score in zip(tgt_faces, scores, strict=True):
        shape = compared_face(face, tgt_img.width, tgt_img.height)
        if score >= threshold:
            matches.append(
                {
                    "Similarity": float(score),
                    "Face": shape,
                    "EstimatedFalseMatchRate": scorer.false_match_rate(float(score)),
                }
            )
        else:
            unmatched.append(shape)
    matches.sort(key=lambda m: m["Similarity"], reverse=True)
    return {
        "SourceImageFace": {
            "BoundingBox": bounding_box(src.box, src_img.width, src_img.height),
            "Confidence": src.confidence,
        },
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
        "SimilarityThreshold": threshold,
    }


def _filter_quality(faces: list[Face], width: int, height: int, quality_filter: str) -> list[Face]:
    """Drop faces that fail the quality filter (NONE keeps all)."""
    if quality_filter == "NONE":
        return faces
    return [f for f in faces if not unindexed_reasons(f, width, height, quality_filter)]
