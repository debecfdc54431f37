"""`FaceModel`: one face-identity model as a unit (aligner, embedder, scorer, version).

Detection and landmarks are shared by every model (`faceprint.engine`); a model starts from a detected,
landmarked face (`FaceGeometry`) and turns it into one unit-length vector:

- its **aligner** cuts the views the network sees (a template warp or a box crop, at the network's input
  size, optionally several views per face);
- its **embedder** runs the network (ONNX Runtime) on those views, and on their mirror images when the
  model mirrors; the views' outputs are averaged and scaled to unit length;
- its **scorer** (`faceprint.scoring.Scorer`) turns two vectors into a Similarity and says what that
  Similarity means as a false match rate, from the model's own calibration table and cohort; a model
  without one is *uncalibrated*: it embeds and searches, but its false match rates are unknown;
- its **version** is the FaceModelVersion of the collections it builds (Rekognition's pattern, `[0-9.]+`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from faceprint.detectors.base import Detection
    from faceprint.scoring import Scorer


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero), as float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class FaceGeometry:
    """What the shared detector and landmark models found for one face: all an aligner may use."""

    box: Detection
    shape5: Any  # dlib.full_object_detection of the 5-point model
    shape68: Any  # dlib.full_object_detection of the 68-point model
    points68: np.ndarray  # (68, 2) float pixel coordinates
    chip: np.ndarray  # dlib's 150x150 5-point chip at padding 0.25 (quality and kept chips use it)


class Aligner(Protocol):
    """Cuts a model's input views of one face out of the image."""

    name: str
    size: int  # views are (size, size, 3) uint8 RGB
    views: int  # views per face (before mirroring)

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        """(views, size, size, 3) uint8 RGB."""
        ...

    def source_files(self) -> tuple[Path, ...]:
        """Source files of this aligner's code: part of the LFW embedding cache key."""
        ...


class Embedder(Protocol):
    """Runs a network on aligned views (N, size, size, 3) uint8 RGB, giving (N, dim) float32."""

    name: str
    dim: int

    def embed_chips(self, chips: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    """Whether a model's Similarity has measured false match rates, and where they come from."""

    status: str  # "calibrated" | "uncalibrated"
    table: str | None = None  # calibration table file
    cohort: str | None = None  # cohort file

    @property
    def calibrated(self) -> bool:
        return self.status == "calibrated"


@dataclass
class FaceModel:
    """A face-identity model: aligner + embedder (loaded on first use) + scorer + version.

    Subclasses (one sub-folder of `faceprint.models` each) say how the embedder loads and where the
    calibration lives.
    """

    name: str
    version: str  # FaceModelVersion
    dim: int
    aligner: Aligner
    mirror: bool  # also embed each view's mirror image, averaged in
    load_embedder: Callable[[], Embedder] = field(repr=False)
    kind: str = "builtin"  # "builtin" | "onnx-file" | "installable" | ...
    description: str = ""
    cache_salt: str = ""  # extra text in the LFW cache key (e.g. an ONNX file's sha256 and settings)
    # `faceprint calibrate`'s LFW cohort: gender-balanced (women and men alternate; docs/accuracy.md) or
    # LFW's own mix (False)
    balanced_cohort: bool = False
    _embedder: Embedder | None = field(default=None, repr=False)
    _loading: threading.Thread | None = field(default=None, repr=False)
    _load_error: BaseException | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the embedder ------------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the embedder in a thread (start-up overlaps it with the landmark models' load). Not a
        daemon: a process ending early must not exit inside ONNX Runtime's session creation."""
        with self._lock:
            if self._embedder is None and self._loading is None:
                self._loading = threading.Thread(target=self._load, name=f"faceprint-load-{self.name}")
                self._loading.start()

    def _load(self) -> None:
        try:
            self._embedder = self.load_embedder()
        except BaseException as exc:  # raised to the first caller of `embedder`
            self._load_error = exc

    @property
    def embedder(self) -> Embedder:
        """The embedder (waits for it when it is still loading)."""
        if self._embedder is None:
            self.start_loading()
            assert self._loading is not None
            self._loading.join()
            if self._load_error is not None:
                raise self._load_error
        assert self._embedder is not None
        return self._embedder

    @property
    def passes(self) -> int:
        """Embedder passes per face."""
        return self.aligner.views * (2 if self.mirror else 1)

    # -- vectors -----------------------------------------------------------------------------------

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        return self.aligner.cut(pixels, face)

    def view_embeddings(self, views: np.ndarray) -> np.ndarray:
        """Embedder output (n, 2 or 1, views, dim) for `views` (n, views, size, size, 3): every view and,
        when the model mirrors, every view's mirror image (second along axis 1)."""
        n, cuts = views.shape[:2]
        if cuts != self.aligner.views:
            raise ValueError(f"expected {self.aligner.views} views per face, got {cuts}")
        chips = views.reshape(n * cuts, *views.shape[2:])
        if self.mirror:
            chips = np.concatenate([chips, chips[:, :, ::-1]])
        vectors = self.embedder.embed_chips(np.ascontiguousarray(chips))
        return vectors.reshape(-1, n, cuts, vectors.shape[-1]).swapaxes(0, 1)

    def describe(self, views: np.ndarray) -> np.ndarray:
        """Vectors (n, dim) of `views` (n, views, size, size, 3): the unit-length mean of their view
        embeddings."""
        return unit_rows(self.view_embeddings(views).mean(axis=(1, 2)))

    def embed(self, pixels: np.ndarray, faces: list[FaceGeometry]) -> np.ndarray:
        """(len(faces), dim) unit vectors of faces found in `pixels`."""
        if not faces:
            return np.zeros((0, self.dim), np.float32)
        return self.describe(np.stack([self.cut(pixels, f) for f in faces]))

    # -- scores ------------------------------------------------------------------------------------

    def calibration(self) -> Calibration:
        """Calibration status of this model (subclasses say where their table lives)."""
        return Calibration("uncalibrated")

    def calibration_files(self) -> tuple[Path, Path]:
        """(calibration table, cohort) files `faceprint calibrate --model` writes for this model."""
        from faceprint.errors import InvalidParameterError

        raise InvalidParameterError(f"face model {self.name!r} cannot be calibrated here")

    def scorer(self) -> Scorer:
        """The model's scorer: its own calibration table and cohort, or an uncalibrated cosine scorer
        (false match rates unknown) when it has none. Never another model's table."""
        from faceprint.scoring import uncalibrated_scorer

        return uncalibrated_scorer(self.version)

    def cache_key(self) -> str:
        """Short hash of the code and settings that make this model's vectors from a detected face (the
        aligner's source, the model's name, version and `cache_salt`): LFW embedding caches are keyed by it
        together with the shared detection code."""
        digest = hashlib.sha1(f"{self.name}\0{self.version}\0{self.cache_salt}".encode())
        for path in self.aligner.source_files():
            digest.update(path.name.encode() + path.read_bytes())
        return digest.hexdigest()[:8]

    def info(self) -> dict:
        """What `faceprint models list|describe --json` shows of this model."""
        cal = self.calibration()
        return {
            "Name": self.name,
            "FaceModelVersion": self.version,
            "Kind": self.kind,
            "Dimension": self.dim,
            "Aligner": {"Name": self.aligner.name, "Size": self.aligner.size, "Views": self.aligner.views},
            "Mirror": self.mirror,
            "Calibration": cal.status,
            "CalibrationTable": cal.table,
            "Cohort": cal.cohort,
            "Installed": True,
            "Description": self.description,
        }


class FolderCalibrated(FaceModel):
    """A model whose calibration table and cohort live in its own folder (`self.folder`), written there by
    `faceprint calibrate --model NAME`. Without them it uses the pair faceprint ships for it
    (`shipped_calibration`: file names in `faceprint/data/`), if any; else it is uncalibrated (false
    match rates unknown)."""

    folder: Path
    shipped_calibration: tuple[str, str] | None = None

    @property
    def table_path(self) -> Path:
        return self.folder / "calibration.json"

    @property
    def cohort_path(self) -> Path:
        return self.folder / "cohort.npz"

    def calibration_files(self) -> tuple[Path, Path]:
        """Where `faceprint calibrate` writes this model's table and cohort."""
        return self.table_path, self.cohort_path

    def _files_in_use(self) -> tuple[Path, Path] | None:
        if self.table_path.is_file() and self.cohort_path.is_file():
            return self.table_path, self.cohort_path
        if self.shipped_calibration:
            from importlib import resources

            data = Path(str(resources.files("faceprint") / "data"))
            table, cohort = (data / name for name in self.shipped_calibration)
            if table.is_file() and cohort.is_file():
                return table, cohort
        return None

    def calibration(self) -> Calibration:
        files = self._files_in_use()
        return Calibration("calibrated", *map(str, files)) if files else Calibration("uncalibrated")

    def scorer(self) -> Scorer:
        from faceprint.scoring import model_scorer, uncalibrated_scorer

        files = self._files_in_use()
        if files is None:
            return uncalibrated_scorer(self.version)
        return model_scorer(str(files[0]), str(files[1]), self.version)
