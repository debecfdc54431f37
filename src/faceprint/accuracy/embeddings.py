"""Detect and embed one face per image of a dataset, with a Rich progress bar and an on-disk cache.

The cache lives under `FACEPRINT_ACCURACY_CACHE` (default `cache_dir()`): embeddings in
`embeddings/<model_version>/<dataset>.<detector>-<code hash>.npz`, detection-only runs in
`detections/<detector>-<code hash>/<dataset>.npz`, keyed by each image's path relative to the dataset root.
A later run embeds only the images it has not seen; a change to the detection or alignment code starts a
fresh cache. Which face is kept: `"largest"`, or `"central"` (closest to the image centre: LFW's funneled
images are centred on their subject; a face far from the centre is someone in the background, so the
image counts as one without a detected face).

`fallback=True` (LFW): an image where the detector finds no central face is looked at again by dlib's CNN
detector at upsample 1 (slower, but it finds strongly turned faces; marked RETRIED), and where that finds
none either it is embedded from a fixed box, the per-coordinate median of the boxes found in the other
images of the dataset, the region the images are funneled to (marked FALLBACK). Callers can count either
or leave them out; calibration and the audit's error rates use DETECTED images only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from faceprint.config import cache_dir
from faceprint.detectors.base import Detection

DETECTED, FALLBACK, RETRIED, NO_FACE, UNREADABLE = 1, 2, 3, 0, -1
BATCH = 32  # chips per embedder call
CENTRAL_MAX_OFFSET = (
    0.2  # "central": the subject's face centre lies within 20% of the short side of the centre
)
SAVE_EVERY = 500  # images between cache checkpoints


@dataclass
class EmbeddedSet:
    """Per image: status, the kept face's box (left, top, right, bottom, score), faces found, embedding."""

    keys: list[str]
    status: np.ndarray  # int8: DETECTED, RETRIED, FALLBACK, NO_FACE or UNREADABLE
    boxes: np.ndarray  # (n, 5) float32
    n_faces: np.ndarray  # int16
    vectors: np.ndarray  # (n, 128) float32, zeros where nothing was embedded
    fallback_box: np.ndarray | None = None
    computed: int = 0  # images detected in this call (the rest came from the cache)

    @property
    def embedded(self) -> np.ndarray:
        return np.isin(self.status, (DETECTED, RETRIED, FALLBACK))

    def subset(self, keys: Sequence[str]) -> EmbeddedSet:
        pos = {k: i for i, k in enumerate(self.keys)}
        idx = np.array([pos[k] for k in keys], dtype=np.int64)
        return EmbeddedSet(
            list(keys),
            self.status[idx],
            self.boxes[idx],
            self.n_faces[idx],
            self.vectors[idx],
            self.fallback_box,
        )


def progress_bar(console: Console | None = None) -> Progress:
    """The Rich progress bar every long accuracy step uses (on stderr, so --json stdout stays clean)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


def pipeline_fingerprint(model_key: str = "") -> str:
    """Short hash of the code that turns an image into a face's views: the shared detection code
    (detectors, engine, landmarks) and, for embeddings, `model_key` (the model's `cache_key()`: its
    aligner's source and settings). Part of every cache file name, so a change to a detector or to a
    model's alignment never reuses stale results, and a change to one model's aligner keeps the others'.
    """
    import hashlib

    import faceprint

    pkg = Path(faceprint.__file__).parent
    files = [*sorted((pkg / "detectors").glob("*.py")), pkg / "engine.py", pkg / "landmarks.py"]
    digest = hashlib.sha1()
    for f in files:
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    digest.update(model_key.encode())
    return digest.hexdigest()[:8]


def accuracy_cache_dir() -> Path:
    """Root of the embedding and detection caches (`FACEPRINT_ACCURACY_CACHE`, default `cache_dir()`)."""
    env = os.environ.get("FACEPRINT_ACCURACY_CACHE")
    return Path(env).expanduser() if env else cache_dir()


def cache_path(dataset: str, detector: str, model_version: str | None, model_key: str = "") -> Path:
    """Detections: `detections/<detector>-<hash>/<dataset>.npz`; embeddings of a model:
    `embeddings/<model_version>/<dataset>.<detector>-<hash with the model's cache key>.npz`."""
    if model_version is None:
        return accuracy_cache_dir() / "detections" / f"{detector}-{pipeline_fingerprint()}" / f"{dataset}.npz"
    tag = f"{detector}-{pipeline_fingerprint(model_key)}"
    return accuracy_cache_dir() / "embeddings" / model_version / f"{dataset}.{tag}.npz"


def _load_cache(path: Path) -> dict[str, tuple[int, np.ndarray, int, np.ndarray]]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, status, boxes, nf, vec = z["keys"], z["status"], z["boxes"], z["n_faces"], z["vectors"]
    except (OSError, KeyError, ValueError):
        return {}  # unreadable cache: recompute
    return {
        str(k): (int(s), b, int(n), v) for k, s, b, n, v in zip(keys, status, boxes, nf, vec, strict=True)
    }


def _save_cache(path: Path, entries: dict[str, tuple[int, np.ndarray, int, np.ndarray]], dim: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(entries)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        keys=np.array(keys, dtype=str),
        status=np.array([entries[k][0] for k in keys], dtype=np.int8),
        boxes=np.array([entries[k][1] for k in keys], dtype=np.float32).reshape(-1, 5),
        n_faces=np.array([entries[k][2] for k in keys], dtype=np.int16),
        vectors=np.array([entries[k][3] for k in keys], dtype=np.float32).reshape(-1, dim),
    )
    tmp.replace(path)


def _drop_off_centre(entries: dict, keys: list[str], root: Path) -> None:
    """Central policy: a kept face whose centre is farther than CENTRAL_MAX_OFFSET x the image's short side
    from the image centre is a background face, not the subject: mark the image NO_FACE."""
    from PIL import Image

    for key in keys:
        status, box, n_faces, vec = entries[key]
        if status != DETECTED:
            continue
        with Image.open(root / key) as im:
            width, height = im.size
        det = Detection(float(box[0]), float(box[1]), float(box[2]), float(box[3]), 0.0)
        if not _is_central(det, width, height):
            entries[key] = (NO_FACE, np.zeros(5, np.float32), n_faces, np.zeros_like(vec))


def _is_central(box: Detection, width: int, height: int) -> bool:
    """The box's centre lies within CENTRAL_MAX_OFFSET x the short side of the image centre."""
    dx, dy = box.center[0] - width / 2, box.center[1] - height / 2
    return dx * dx + dy * dy <= (CENTRAL_MAX_OFFSET * min(width, height)) ** 2


def _pick(faces: list, policy: str, width: int, height: int):
    if policy == "largest" or len(faces) == 1:
        return faces[0]
    cx, cy = width / 2, height / 2
    return min(faces, key=lambda f: (f.box.center[0] - cx) ** 2 + (f.box.center[1] - cy) ** 2)


class _FixedBox:
    """A 'detector' that returns one fixed box (the fallback region)."""

    name = "fallback"

    def __init__(self, box: np.ndarray) -> None:
        self.box = box

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        left, top, right, bottom = (float(v) for v in self.box[:4])
        return [Detection(left, top, right, bottom, 0.0, detector=self.name)]


def _second_look(engine, root: Path, keys: list[str], entries: dict, box: np.ndarray, policy: str) -> None:
    """Embed images without a detected face: found by dlib's CNN detector (RETRIED), else from `box`."""
    from faceprint.detectors.cnn import CnnDetector
    from faceprint.engine import FaceEngine
    from faceprint.images import load_image

    retry, fixed = (
        FaceEngine(detector=det, model=engine.model) for det in (CnnDetector(upsample=1), _FixedBox(box))
    )
    for key in keys:
        img = load_image(root / key)
        faces = [f for f in retry.detect(img, max_faces=10) if _is_central(f.box, img.width, img.height)]
        status = RETRIED
        if not faces:
            faces, status = fixed.detect(img, max_faces=1), FALLBACK
        face = _pick(faces, policy, img.width, img.height)
        engine.embed_faces(None, [face])
        b = face.box
        found = np.array([b.left, b.top, b.right, b.bottom, b.score], np.float32)
        entries[key] = (status, found, 0, face.embedding)


def embed_dataset(
    engine,
    dataset: str,
    root: Path,
    keys: Sequence[str],
    policy: str = "largest",
    embed: bool = True,
    fallback: bool = False,
    description: str | None = None,
    console: Console | None = None,
) -> EmbeddedSet:
    """Detect (and embed) one face in each image `root/key`, reusing and updating the cache."""
    from faceprint.errors import FaceprintError
    from faceprint.images import load_image

    detector_name = getattr(engine.detector, "name", "detector")
    model_version = engine.model_version if embed else None
    dim = engine.dim
    path = cache_path(dataset, detector_name, model_version, engine.model.cache_key() if embed else "")
    entries = _load_cache(path)
    todo = [k for k in dict.fromkeys(keys) if k not in entries]
    zero_box, zero_vec = np.zeros(5, np.float32), np.zeros(dim, np.float32)
    pending: list[tuple[str, object]] = []  # (key, face) awaiting a batched embedding
    no_face: list[str] = []

    def flush() -> None:
        if pending:
            engine.embed_faces(None, [f for _, f in pending])
            for key, face in pending:
                entries[key] = (entries[key][0], entries[key][1], entries[key][2], face.embedding)
            pending.clear()

    if todo:
        with progress_bar(console) as bar:
            task = bar.add_task(
                description or f"{'Embedding' if embed else 'Detecting'} {dataset}", total=len(todo)
            )
            for n, key in enumerate(todo, 1):
                try:
                    img = load_image(root / key)
                    faces = engine.detect(img, max_faces=100)
                except (FaceprintError, OSError):
                    entries[key] = (UNREADABLE, zero_box, 0, zero_vec)
                    bar.advance(task)
                    continue
                if faces:
                    face = _pick(faces, policy, img.width, img.height)
                    b = face.box
                    box = np.array([b.left, b.top, b.right, b.bottom, b.score], np.float32)
                    entries[key] = (DETECTED, box, len(faces), zero_vec)
                    if embed:
                        pending.append((key, face))
                else:
                    entries[key] = (NO_FACE, zero_box, 0, zero_vec)
                    no_face.append(key)
                if len(pending) >= BATCH:
                    flush()
                if n % SAVE_EVERY == 0:
                    flush()
                    _save_cache(path, entries, dim)
                bar.advance(task)
            flush()
    if policy == "central":
        _drop_off_centre(entries, list(dict.fromkeys(keys)), root)
    fallback_box = None
    if fallback and embed:
        found = np.array([e[1] for e in entries.values() if e[0] == DETECTED], np.float32).reshape(-1, 5)
        if len(found):
            fallback_box = np.median(found[:, :4], axis=0)
        redo = [k for k in dict.fromkeys(keys) if entries[k][0] == NO_FACE]
        if redo and fallback_box is not None:
            _second_look(engine, root, redo, entries, fallback_box, policy)
    if todo or fallback:
        _save_cache(path, entries, dim)
    keys = list(dict.fromkeys(keys))
    return EmbeddedSet(
        keys=keys,
        status=np.array([entries[k][0] for k in keys], np.int8),
        boxes=np.array([entries[k][1] for k in keys], np.float32).reshape(-1, 5),
        n_faces=np.array([entries[k][2] for k in keys], np.int16),
        vectors=np.array([entries[k][3] for k in keys], np.float32).reshape(-1, dim),
        fallback_box=fallback_box,
        computed=len(todo),
    )
