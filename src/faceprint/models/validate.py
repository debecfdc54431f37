"""Check an ONNX file is a face-identity model for its settings, with a real forward pass on real faces.

Three photographs from the data folder (two of one person, one of another; `config.data_dir()`) are
detected, aligned with the model's aligner and embedded. The file is refused (`ModelFileError`, one line)
when the forward pass fails (wrong input size, layout or type), when its output is not one vector of
128 to 512 values per face or holds non-finite values, when it barely varies between people (a constant
or non-face network), or when the same person does not score closer than the other person.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceprint.models.base import unit_rows

if TYPE_CHECKING:
    from faceprint.models.onnx_file import OnnxFileEmbedder, OnnxSpec

MIN_DIM, MAX_DIM = 128, 512
SAME_MARGIN = 0.05  # same person must beat the other person's cosine by this much
CONSTANT_COSINE = 0.98  # two different people this close: the network does not tell faces apart


def check_images() -> tuple[Path, Path, Path] | None:
    """(person A, person A again, person B) from the data folder, or None when it is not there."""
    from faceprint.config import data_dir

    examples = data_dir() / "known_identities" / "face_recognition_examples" / "examples"
    paths = (examples / "obama.jpg", examples / "obama2.jpg", examples / "biden.jpg")
    return paths if all(p.is_file() for p in paths) else None


def _views(spec: OnnxSpec, paths: tuple[Path, ...]) -> np.ndarray:
    from faceprint.engine import FaceEngine
    from faceprint.images import load_image
    from faceprint.models.aligners import aligner

    engine = FaceEngine.shared()
    cut = aligner(spec.template, spec.input_size)
    views = []
    for path in paths:
        img = load_image(path)
        face = engine.detect(img, max_faces=1)[0]
        assert face.geometry is not None
        views.append(cut.cut(img.pixels, face.geometry)[0])
    return np.stack(views)


def validate(embedder: OnnxFileEmbedder, spec: OnnxSpec) -> tuple[int, dict]:
    """(output dimension, what was checked) of a file that passes; ModelFileError otherwise."""
    from faceprint.models.onnx_file import ModelFileError, _first_line

    paths = check_images()
    if paths is not None:
        views = _views(spec, paths)
    else:  # no data folder: a forward pass on a mid-grey image checks shapes only
        views = np.full((3, spec.input_size, spec.input_size, 3), 128, np.uint8)
    try:
        out = embedder.run(views)
    except Exception as exc:  # ORT's own error types: wrong shape, type or rank
        raise ModelFileError(
            f"the forward pass of {spec.source} on {spec.input_size}x{spec.input_size} {spec.layout} images "
            f"failed ({_first_line(exc)}); check --input-size and --layout"
        ) from None
    if out.ndim > 2 and all(d == 1 for d in out.shape[2:]):
        out = out.reshape(len(out), -1)
    if out.ndim != 2 or len(out) != len(views):
        raise ModelFileError(
            f"{spec.source} outputs {list(out.shape)} for {len(views)} faces; a face model outputs one "
            "vector per face"
        )
    dim = int(out.shape[1])
    if not MIN_DIM <= dim <= MAX_DIM:
        raise ModelFileError(
            f"{spec.source} outputs {dim} values per face; a face-identity model outputs {MIN_DIM} to "
            f"{MAX_DIM}"
        )
    if not np.isfinite(out).all():
        raise ModelFileError(f"{spec.source} outputs non-finite values on real faces")
    check: dict = {"ForwardPass": "ok", "Dimension": dim}
    if paths is None:
        check["IdentityCheck"] = "skipped: no data folder with face photographs (FACEPRINT_DATA_DIR)"
        return dim, check
    v = unit_rows(out)
    same, other = float(v[0] @ v[1]), max(float(v[0] @ v[2]), float(v[1] @ v[2]))
    check.update({"SamePersonCosine": round(same, 4), "OtherPersonCosine": round(other, 4)})
    if other >= CONSTANT_COSINE:
        raise ModelFileError(
            f"{spec.source} gives nearly the same vector for different people (cosine {other:.3f}): not a "
            "face-identity model, or the wrong --template, --mean/--std or --bgr"
        )
    if same < other + SAME_MARGIN:
        raise ModelFileError(
            f"{spec.source} does not tell people apart on real faces (same person {same:.3f}, another "
            f"{other:.3f}): not a face-identity model, or the wrong --template, --mean/--std or --bgr"
        )
    check["IdentityCheck"] = "ok"
    return dim, check
