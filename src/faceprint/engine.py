"""The face engine: detect, landmark, measure and embed faces in one image.

This is the transport-free heart of faceprint. Everything else (Rekognition operations, collections,
video, the CLI and the server) calls `FaceEngine`. Detection, landmarks, pose and quality are shared by
every face model; the engine's `model` (`faceprint.models`, dlib's by default) cuts the views of each face
and turns them into its identity vector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import dlib
import numpy as np

from faceprint import weights
from faceprint.detectors.base import Detection, Detector
from faceprint.embedders.base import Embedder
from faceprint.images import ImageSource, load_image
from faceprint.landmarks import rekognition_landmarks, shape_to_array
from faceprint.models import FaceGeometry, FaceModel, get_model
from faceprint.models.base import unit_rows
from faceprint.models.dlib import CHIP_PADDING, CHIP_SIZE, DESCRIPTOR, Descriptor
from faceprint.pose import Pose, estimate_pose
from faceprint.quality import Quality, measure_quality

MAX_FACES = 100  # Rekognition returns the 100 largest faces
__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DESCRIPTOR",
    "MAX_FACES",
    "Descriptor",
    "Face",
    "FaceEngine",
    "unit_rows",
]


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
    geometry: FaceGeometry | None = field(default=None, repr=False)  # what aligners cut views from
    crop: np.ndarray | None = field(default=None, repr=False)  # the kept wide crop (models/crops.py)
    embedding: np.ndarray | None = field(default=None, repr=False)
    cut_views: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # holds the image until used
    _views: np.ndarray | None = field(default=None, repr=False)

    @property
    def views(self) -> np.ndarray:
        """(views, size, size, 3) uint8: the views the engine's model embeds, cut from the image on first use
        (a face that is only detected, or that a video track does not keep, never pays for them)."""
        if self._views is None:
            if self.cut_views is None:
                raise ValueError("this face has neither its chips nor the image to cut them from")
            self._views, self.cut_views = self.cut_views(), None
        return self._views


class FaceEngine:
    """Detector + landmarks + embedder, configured once and shared across threads."""

    _shared: FaceEngine | None = None
    _shared_lock = threading.RLock()

    def __init__(
        self,
        detector: str | Detector = "auto",
        embedder: str | Embedder = "auto",
        descriptor: Descriptor = DESCRIPTOR,
        model: str | FaceModel | None = None,
    ) -> None:
        """`model`: a face model or its name; None is the default model (`config.default_model()`) when
        `embedder` and `descriptor` are the defaults, else dlib's float32 network run by `embedder` with
        `descriptor`."""
        if isinstance(detector, str):
            from faceprint.detectors import get_detector

            detector = get_detector(detector)
        self.detector: Detector = detector
        if model is None and embedder == "auto" and descriptor is DESCRIPTOR:
            from faceprint.config import default_model

            model = default_model()
        if model is None:
            from faceprint.models.dlib import DlibModel

            model = DlibModel(embedder, descriptor)
        self.model: FaceModel = get_model(model) if isinstance(model, str) else model
        self._siblings: dict[str, FaceEngine] = {}  # engines of other models on this detector, by name
        # The embedder (ONNX session creation, ~0.15 s) loads in a thread while this one reads the
        # landmark models (in a helper process for short commands: `weights.preload_landmarks`).
        self.model.start_loading()
        self._sp5 = weights.shape_predictor_5()
        self._landmarks68 = weights.landmarks_68()

    def with_model(self, model: str | FaceModel) -> FaceEngine:
        """An engine sharing this one's detector and landmark models, embedding with `model`."""
        model = get_model(model) if isinstance(model, str) else model
        if model is self.model:
            return self
        with self._shared_lock:
            cached = self._siblings.get(model.name)
            if cached is None or cached.model is not model:
                cached = self._siblings[model.name] = FaceEngine(self.detector, model=model)
            return cached

    @property
    def descriptor(self) -> Descriptor:
        """dlib's view set (only the dlib model has one)."""
        return getattr(self.model, "descriptor", DESCRIPTOR)

    @property
    def embedder(self) -> Embedder:
        """The model's embedder (waits for it when it is still loading)."""
        return self.model.embedder  # type: ignore[return-value]

    @classmethod
    def shared(cls) -> FaceEngine:
        """The process-wide default engine (default detector, fastest embedder that loads)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def model_version(self) -> str:
        """FaceModelVersion of the vectors this engine computes (its model's)."""
        return self.model.version

    @property
    def dim(self) -> int:
        """Length of the vectors `describe` returns."""
        return self.model.dim

    def detect(self, image: ImageSource, max_faces: int = MAX_FACES) -> list[Face]:
        """Detect up to `max_faces` faces, largest first, with landmarks, pose, quality and chips."""
        img = load_image(image)
        detections = sorted(self.detector.detect(img.pixels), key=lambda d: d.area, reverse=True)
        detections = detections[: max(0, max_faces)]
        if not detections:
            return []
        rects = [
            dlib.rectangle(round(d.left), round(d.top), round(d.right), round(d.bottom)) for d in detections
        ]
        shapes5 = dlib.full_object_detections()
        for rect in rects:
            shapes5.append(self._sp5(img.pixels, rect))
        shapes68 = self._landmarks68(img.pixels, rects)
        chips = dlib.get_face_chips(img.pixels, shapes5, size=CHIP_SIZE, padding=CHIP_PADDING)
        faces = []
        for det, shape5, shape68, chip in zip(detections, shapes5, shapes68, chips, strict=True):
            pts5, pts68 = shape_to_array(shape5), shape_to_array(shape68)
            chip_arr = np.asarray(chip, dtype=np.uint8)
            geometry = FaceGeometry(det, shape5, shape68, pts68, chip_arr)
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
                    geometry=geometry,
                    cut_views=partial(self.model.cut, img.pixels, geometry),
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
        """Vectors (n, dim) of `views` (n, views, size, size, 3): the unit-length mean of their
        `view_embeddings` (the model's)."""
        return self.model.describe(views)

    def view_embeddings(self, views: np.ndarray) -> np.ndarray:
        """Embedder output (n, 2 or 1, views, embedder dim) for `views` (see `FaceModel.view_embeddings`)."""
        return self.model.view_embeddings(views)

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
