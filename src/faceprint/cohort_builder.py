"""`faceprint cohort build DIR`: a user's own cohort from a folder of face images.

DIR holds one sub-folder per person (any number of images each), or images directly (then each image is
taken to be a different person). The largest face of each image is embedded with the engine; the cohort
keeps the vectors only (no image, no name) with provenance: where they came from, how many people and
faces, the model version. People in the cohort should be people who will never be searched for.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from faceprint.errors import FaceprintError, InvalidParameterError
from faceprint.scoring import DEFAULT_TOP_K, Cohort

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".mpo"}


def cohort_images(folder: Path) -> list[tuple[str, Path]]:
    """(person, image path) of every image under `folder`, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidParameterError(f"{folder} is not a folder")
    out: list[tuple[str, Path]] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            rel = path.relative_to(folder)
            person = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            out.append((person, path))
    return out


def check_enough(folder: Path, images: int, min_faces: int = DEFAULT_TOP_K) -> None:
    """Refuse a folder with fewer images than a cohort needs faces, before embedding any."""
    if images < min_faces:
        raise InvalidParameterError(
            f"{folder}: {images} images; a cohort needs at least {min_faces} faces (its top-k statistics "
            f"use the {min_faces} closest cohort faces)"
        )


def build_cohort(engine, folder: Path, progress=None, min_faces: int = DEFAULT_TOP_K) -> Cohort:
    """Embed the largest face of each image of `folder`; at least `min_faces` faces are required."""
    images = cohort_images(folder)
    check_enough(folder, len(images), min_faces)
    vectors, people, skipped = [], set(), 0
    for person, path in images:
        try:
            vector = engine.embed_image(path)
        except (FaceprintError, OSError):
            vector = None
        if vector is None:
            skipped += 1
        else:
            vectors.append(vector)
            people.add(person)
        if progress:
            progress()
    if len(vectors) < min_faces:
        raise InvalidParameterError(
            f"{folder}: {len(vectors)} faces found in {len(images)} images; a cohort needs at least "
            f"{min_faces} (its top-k statistics use the {min_faces} closest cohort faces)"
        )
    provenance = {
        "command": "faceprint cohort build",
        "generated": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "source": f"face vectors (not images) of the images under {Path(folder).resolve()}",
        "images": len(images),
        "images_without_face": skipped,
        "faces": len(vectors),
        "people": len(people),
        "detector": getattr(engine.detector, "name", "?"),
        "embedder": getattr(engine.embedder, "name", "?"),
    }
    return Cohort.from_vectors(np.stack(vectors), engine.model_version, provenance)
