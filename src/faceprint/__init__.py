"""faceprint: self-hosted face detection, comparison and search with calibrated, auditable scores.

The public API (see docs/api.md):

    faceprint.detect(image) -> list[Face]
    faceprint.embed(image) -> list[np.ndarray]
    faceprint.compare(a, b) -> Comparison
    faceprint.detect_faces(image) / faceprint.compare_faces(src, tgt)   # Rekognition response shapes
    faceprint.load_image(source) -> LoadedImage
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "detect": "faceprint.api",
    "embed": "faceprint.api",
    "compare": "faceprint.api",
    "Comparison": "faceprint.api",
    "detect_faces": "faceprint.operations",
    "compare_faces": "faceprint.operations",
    "load_image": "faceprint.images",
    "LoadedImage": "faceprint.images",
    "FaceEngine": "faceprint.engine",
    "Face": "faceprint.engine",
}

__all__ = [
    "Comparison",
    "Face",
    "FaceEngine",
    "LoadedImage",
    "compare",
    "compare_faces",
    "detect",
    "detect_faces",
    "embed",
    "load_image",
]

if TYPE_CHECKING:
    from faceprint.api import Comparison, compare, detect, embed
    from faceprint.engine import Face, FaceEngine
    from faceprint.images import LoadedImage, load_image
    from faceprint.operations import compare_faces, detect_faces


def __getattr__(name: str) -> Any:
    """Import heavy modules (dlib, models) only when first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'faceprint' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
