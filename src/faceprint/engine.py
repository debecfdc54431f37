"""The face engine: detect, landmark, measure and embed faces in one image.

This is the transport-free heart of faceprint. Everything else (Rekognition operations, collections,
video, the CLI and the server) calls `FaceEngine`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import dlib
import numpy as np

from faceprint import models
from faceprint.detectors.base import Detection, Detector
from faceprint.embedders.base import CHIP_PADDING, CHIP_SIZE, Embedder
from faceprint.images import ImageSource, load_image
from faceprint.landmarks import rekognition_landmarks, shape_to_array
from faceprint.pose import Pose, estimate_pose
from faceprint.quality import Quality, measure_quality

MAX_FACES = 100  # Rekognition returns the 100 largest faces


@dataclass(frozen=True)
class Descriptor:
    """How a face's identity vector is made from dlib's ResNet: which aligned chips ("views") are
    embedded and averaged. The mean is scaled to unit length, so distances lie in [0, 2].

    `version` is the FaceModelVersion of collections built with it (Rekognition's pattern: [0-9.]+).
    """

    version: str
    alignments: tuple[int, ...]  # landmark sets the chips are aligned on: 5 and/or 68 points
    paddings: tuple[float, ...]  # dlib get_face_chip paddings (0.25 is what the network was trained on)
    mirror: bool  # also embed each chip's mirror image

    @property
    def cuts(self) -> tuple[tuple[int, float], ...]:
        """(alignment, padding) of every chip cut from the image, in order."""
        return tuple((a, p) for a in self.alignments for p in self.paddings)

    @property
    def passes(self) -> int:
        """Embedder passes per face."""
        return len(self.cuts) * (2 if self.mirror else 1)


# Model 2.0: chips aligned on the 5- and the 68-point landmarks, each at paddings 0.20, 0.25 and 0.30,
# and their mirror images: 12 views averaged. The most accurate view set measured on the LFW pairs
# (docs/accuracy.md), for 6x the embedding work of one chip and its mirror (model 1.1, the first release).
DESCRIPTOR = Descriptor("2.0", alignments=(5, 68), paddings=(0.20, 0.25, 0.30), mirror=True)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero), as float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _cut(
    pixels: np.ndarray, shape5: object, shape68: object, chip: np.ndarray, cuts: tuple[tuple[int, float], ...]
) -> np.ndarray:
    """The chips of `cuts` ((alignment, padding) pairs), reusing `chip` for (5, CHIP_PADDING)."""
    shapes = {5: shape5, 68: shape68}
    return np.stack(
        [
            chip
            if (a, p) == (5, CHIP_PADDING)
            else np.asarray(dlib.get_face_chip(pixels, shapes[a], size=CHIP_SIZE, padding=p), dtype=np.uint8)
            for a, p in cuts
        ]
    )


@dataclass
class Face:
    """One analysed face; coordinates are pixels of the image it was found in."""

    box: Detection
    confidence: float  # 0-100
    landmarks: dict[str, tuple[float, float]]
    pose: Pose
    quality: Quality
    points5: np.ndarray = field(repr=False)
    points68: np.ndarray = field(repr=False)
    chip: np.ndarray = field(repr=False)  # 150x150 RGB chip on the 5 points, padding 0.25 (dlib's own)
    embedding: np.ndarray | None = field(default=None, repr=False)
    cut_views: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # holds the image until used
    _views: np.ndarray | None = field(default=None, repr=False)

    @property
    def views(self) -> np.ndarray:
        """(cuts, 150, 150, 3) uint8: the chips the descriptor embeds, cut from the image on first use (a
        face that is only detected, or that a video track does not keep, never pays for them)."""
        if self._views is None:
            if self.cut_views is None:
                raise ValueError("this face has neither its chips nor the image to cut them from")
            self._views, self.cut_views = self.cut_views(), None
        return self._views


class FaceEngine:
    """Detector + landmarks + embedder, configured once and shared across threads."""

    _shared: FaceEngine | None = None
    _shared_lock = threading.Lock()

    def __init__(
        self,
        detector: str | Detector = "auto",
        embedder: str | Embedder = "auto",
        descriptor: Descriptor = DESCRIPTOR,
    ) -> None:
        if isinstance(detector, str):
            from faceprint.detectors import get_detector

            detector = get_detector(detector)
        self.detector: Detector = detector
        self.descriptor = descriptor
        self._embedder: Embedder | None = None
        self._loading: threading.Thread | None = None
        self._load_error: BaseException | None = None
        if isinstance(embedder, str):
            from faceprint.embedders import EMBEDDER_NAMES

            if embedder not in EMBEDDER_NAMES:
                raise ValueError(f"unknown embedder {embedder!r}; choose one of {', '.join(EMBEDDER_NAMES)}")
            # The embedder (ONNX session creation, ~0.15 s) loads in a thread while this one reads the
            # landmark models (~0.6 s): start-up pays the longer of the two, not their sum. Not a daemon: a
            # process ending early must not exit inside ONNX Runtime's session creation (it aborts).
            self._loading = threading.Thread(target=self._load_embedder, args=(embedder,))
            self._loading.start()
        else:
            self._embedder = embedder
        self._sp5 = models.shape_predictor_5()
        self._sp68 = models.shape_predictor_68()

    def _load_embedder(self, name: str) -> None:
        from faceprint.embedders import get_embedder

        try:
            self._embedder = get_embedder(name)
        except BaseException as exc:  # raised to the first caller of `embedder`
            self._load_error = exc

    @property
    def embedder(self) -> Embedder:
        """The embedder (waits for it when it is still loading)."""
        if self._embedder is None:
            if self._loading is not None:
                self._loading.join()
            if self._load_error is not None:
                raise self._load_error
        assert self._embedder is not None
        return self._embedder

    @classmethod
    def shared(cls) -> FaceEngine:
        """The process-wide default engine (default detector, fastest embedder that loads)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def model_version(self) -> str:
        """FaceModelVersion of the vectors this engine computes (see `Descriptor`)."""
        return self.descriptor.version

    @property
    def dim(self) -> int:
        """Length of the vectors `describe` returns."""
        return self.embedder.dim

    def detect(self, image: ImageSource, max_faces: int = MAX_FACES) -> list[Face]:
        """Detect up to `max_faces` faces, largest first, with landmarks, pose, quality and chips."""
        img = load_image(image)
        detections = sorted(self.detector.detect(img.pixels), key=lambda d: d.area, reverse=True)
        detections = detections[: max(0, max_faces)]
        if not detections:
            return []
        shapes5, shapes68 = dlib.full_object_detections(), dlib.full_object_detections()
        for det in detections:
            rect = dlib.rectangle(round(det.left), round(det.top), round(det.right), round(det.bottom))
            shapes5.append(self._sp5(img.pixels, rect))
            shapes68.append(self._sp68(img.pixels, rect))
        chips = dlib.get_face_chips(img.pixels, shapes5, size=CHIP_SIZE, padding=CHIP_PADDING)
        faces = []
        for det, shape5, shape68, chip in zip(detections, shapes5, shapes68, chips, strict=True):
            pts5, pts68 = shape_to_array(shape5), shape_to_array(shape68)
            chip_arr = np.asarray(chip, dtype=np.uint8)
            faces.append(
                Face(
                    box=det,
                    confidence=round(100.0 * float(det.score), 5),
                    landmarks=rekognition_landmarks(pts68),
                    pose=estimate_pose(pts68, img.width, img.height),
                    quality=measure_quality(chip_arr),
                    points5=pts5,
                    points68=pts68,
                    chip=chip_arr,
                    cut_views=partial(_cut, img.pixels, shape5, shape68, chip_arr, self.descriptor.cuts),
                )
            )
        return faces

    def embed_faces(self, image: ImageSource | None, faces: list[Face]) -> list[Face]:
        """Fill `embedding` for every face, in one batched embedder call.

        Each face cuts its chips from the image it was detected in, so `image` is not read again; it is
        accepted so that callers can pass what they analysed.
        """
        todo = [f for f in faces if f.embedding is None]
        if todo:
            vectors = self.describe(np.stack([f.views for f in todo]))
            for face, vec in zip(todo, vectors, strict=True):
                face.embedding = vec
        return faces

    def describe(self, views: np.ndarray) -> np.ndarray:
        """Descriptors (n, dim) of `views` (n, cuts, 150, 150, 3): the unit-length mean of their
        `view_embeddings`."""
        return unit_rows(self.view_embeddings(views).mean(axis=(1, 2)))

    def view_embeddings(self, views: np.ndarray) -> np.ndarray:
        """Embedder output (n, 2 or 1, cuts, embedder dim) for `views` (n, cuts, 150, 150, 3): every cut
        chip and, when the descriptor mirrors, every chip's mirror image (second along axis 1)."""
        n, cuts = views.shape[:2]
        if cuts != len(self.descriptor.cuts):
            raise ValueError(f"expected {len(self.descriptor.cuts)} chips per face, got {cuts}")
        chips = views.reshape(n * cuts, *views.shape[2:])
        if self.descriptor.mirror:
            chips = np.concatenate([chips, chips[:, :, ::-1]])
        vectors = self.embedder.embed_chips(np.ascontiguousarray(chips))
        return vectors.reshape(-1, n, cuts, vectors.shape[-1]).swapaxes(0, 1)

    def analyze(self, image: ImageSource, max_faces: int = MAX_FACES, embed: bool = True) -> list[Face]:
        """Detect (largest first) and, by default, embed every face."""
        faces = self.detect(image, max_faces=max_faces)
        return self.embed_faces(image, faces) if embed else faces

    def embed_image(self, image: ImageSource) -> np.ndarray | None:
        """Embedding of the largest face, or None when no face is found."""
        faces = self.detect(image, max_faces=1)
        if not faces:
            return None
        return self.embed_faces(image, faces)[0].embedding
