"""Real dlib descriptors of LFW faces for benchmarks, computed once and cached as .npz.

Selection (deterministic): people with at least `min_images` images, in name order, their first
`per_person` images. Face: HOG detection (no upsampling) nearest the image centre (LFW is centred on the
labelled person), 5-point landmarks, `dlib.get_face_chips(size=150, padding=0.25)`, dlib's ResNet.
Images where HOG finds no face are left out. About 0.1 s per image on one core; the cache lives under
`faceprint.config.cache_dir()/bench/`, never in the repository.

    from _lfw_embeddings import lfw_embeddings   # from a script in bench/
    emb = lfw_embeddings()                        # .vectors (n, 128) float32, .people, .files
"""

from __future__ import annotations

import csv
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np

from faceprint import config, weights
from faceprint.embedders.base import CHIP_PADDING, CHIP_SIZE
from faceprint.embedders.dlib_resnet import DlibEmbedder

CACHE_VERSION = 1


@dataclass(frozen=True)
class LfwEmbeddings:
    """Descriptors of real LFW faces with the person and file of each row."""

    vectors: np.ndarray  # (n, 128) float32, dlib descriptors (not unit norm)
    people: np.ndarray  # (n,) str, LFW person name
    files: np.ndarray  # (n,) str, path relative to the lfw folder

    @property
    def labels(self) -> np.ndarray:
        """Integer identity per row (0..n_people-1, in name order)."""
        return np.unique(self.people, return_inverse=True)[1].astype(np.int64)


def select_files(min_images: int = 2, per_person: int = 3) -> list[str]:
    """LFW files (relative to the lfw folder) of people with >= `min_images` images, <= `per_person` each."""
    by_person: dict[str, list[str]] = defaultdict(list)
    with open(config.data_dir() / "lfw" / "images.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            by_person[row["person"]].append(row["file"])
    files: list[str] = []
    for person in sorted(by_person):
        names = sorted(by_person[person])
        if len(names) >= min_images:
            files.extend(names[:per_person])
    return files


def embed_files(paths: Sequence[Path], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors (m, 128) float32, found (n,) bool): one central face per image, no face -> skipped."""
    detector, predictor, embedder = weights.hog_detector(), weights.shape_predictor_5(), DlibEmbedder()
    vectors: list[np.ndarray] = []
    found = np.zeros(len(paths), dtype=bool)
    t0 = time.perf_counter()
    for i, path in enumerate(paths):
        rgb = dlib.load_rgb_image(str(path))
        boxes = list(detector(rgb, 0))
        if boxes:
            cy, cx = rgb.shape[0] / 2, rgb.shape[1] / 2
            box = min(boxes, key=lambda b: (b.center().x - cx) ** 2 + (b.center().y - cy) ** 2)
            shapes = dlib.full_object_detections()
            shapes.append(predictor(rgb, box))
            chips = dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
            vectors.append(embedder.embed_chips(np.asarray(chips))[0])
            found[i] = True
        if progress and (i + 1) % 500 == 0:
            rate = (i + 1) / (time.perf_counter() - t0)
            print(f"  embedded {i + 1}/{len(paths)} LFW images ({rate:.1f}/s)", file=sys.stderr)
    out = np.asarray(vectors, dtype=np.float32).reshape(-1, embedder.dim)
    return out, found


def lfw_embeddings(min_images: int = 2, per_person: int = 3) -> LfwEmbeddings:
    """Cached descriptors of `select_files(min_images, per_person)` (computed on first use)."""
    cache = config.cache_dir() / "bench" / f"lfw_dlib_v{CACHE_VERSION}_min{min_images}_pp{per_person}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return LfwEmbeddings(z["vectors"], z["people"], z["files"])
    files = select_files(min_images, per_person)
    root = config.data_dir() / "lfw"
    print(f"computing dlib descriptors of {len(files)} LFW images (cached in {cache})", file=sys.stderr)
    vectors, found = embed_files([root / f for f in files], progress=True)
    kept = np.asarray(files)[found]
    people = np.asarray([Path(f).parent.name for f in kept])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=vectors, people=people, files=kept)
    tmp.replace(cache)
    return LfwEmbeddings(vectors, people, kept)


def model_lfw_embeddings(
    min_images: int = 2, per_person: int = 3, model_version: str = "2.0", detector: str = "auto"
) -> LfwEmbeddings:
    """The engine's own vectors (model 2.0, from the accuracy cache that `faceprint calibrate` fills) of
    `select_files(min_images, per_person)`, leaving out people of the cohort folds (their vectors are
    the cohort) and images without a detected face. Nothing is embedded here."""
    from faceprint.accuracy import folds
    from faceprint.accuracy.embeddings import DETECTED, cache_path
    from faceprint.models import model_for_version

    path = cache_path("lfw", detector, model_version, model_for_version(model_version).cache_key())
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `faceprint calibrate` first")
    with np.load(path, allow_pickle=False) as z:
        pos = {str(k): i for i, k in enumerate(z["keys"])}
        status, vectors = z["status"], z["vectors"]
    files = [
        f
        for f in select_files(min_images, per_person)
        if f in pos
        and status[pos[f]] == DETECTED
        and folds.fold_of(Path(f).parent.name) not in folds.COHORT_FOLDS
    ]
    people = np.asarray([Path(f).parent.name for f in files])
    return LfwEmbeddings(vectors[[pos[f] for f in files]], people, np.asarray(files))


if __name__ == "__main__":
    emb = lfw_embeddings()
    norms = np.linalg.norm(emb.vectors, axis=1)
    print(
        f"{len(emb.vectors)} descriptors of {len(set(emb.people))} people; norm {norms.mean():.3f} "
        f"+- {norms.std():.3f}"
    )
