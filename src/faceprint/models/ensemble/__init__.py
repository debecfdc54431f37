"""The `dlib+faceres` ensemble: both networks embed every face; their cohort-normalised scores are fused.

Stored as two vectors per face, in one row: dlib's 128-D unit vector and faceres's 1024-D unit vector, each
scaled by 1/sqrt(2) (1152-D, unit length). A collection's vector index therefore shortlists by
(cos_dlib + cos_faceres) / 2, and the `FusedScorer` re-ranks the shortlist with
`w x z_dlib + (1 - w) x z_faceres`, where each z is the adaptive S-norm of that part against its own model's
cohort (dlib's shipped cohort, faceres's from `faceprint calibrate --model faceres`). The weight `w` is
chosen on the calibration folds only (`fusion.py`), and the fused score has its own calibration table.

Files, in `<home>/models/dlib+faceres/` (private): `calibration.json` (the fused table, whose `score`
records the weight, the part cohorts' fingerprints and top k). The ensemble needs faceres installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceprint.models.base import Calibration, FaceGeometry, FaceModel, unit_rows
from faceprint.scoring import Scorer, s_norm

NAME = "dlib+faceres"
VERSION = "4.0"
DEFAULT_WEIGHT = 0.7  # dlib's share of the fused score until calibration measures it (issue 18's figure)
PART_SCALE = np.float32(1 / math.sqrt(2))


def folder() -> Path:
    from faceprint.models.onnx_file import models_dir

    return models_dir() / NAME


@dataclass(frozen=True)
class PackedAligner:
    """Both parts' views of one face, packed into one flat uint8 row: dlib's chips, then faceres's crop
    (their sizes differ, so they travel as one array through the shared engine)."""

    first: object
    second: object
    name: str = "dlib-chips+box"
    views: int = 1
    size: int = 224

    def _length(self, aligner) -> int:
        return aligner.views * aligner.size * aligner.size * 3

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        a = self.first.cut(pixels, face).reshape(-1)  # type: ignore[attr-defined]
        b = self.second.cut(pixels, face).reshape(-1)  # type: ignore[attr-defined]
        return np.concatenate([a, b])[None]

    def unpack(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1, L) packed rows -> (n, views, size, size, 3) of each part."""
        n = len(views)
        flat = views.reshape(n, -1)
        la = self._length(self.first)
        if flat.shape[1] != la + self._length(self.second):
            raise ValueError(f"packed views of {flat.shape[1]} bytes do not hold both models' views")

        def shape(al) -> tuple[int, ...]:
            return (n, al.views, al.size, al.size, 3)

        return flat[:, :la].reshape(shape(self.first)), flat[:, la:].reshape(shape(self.second))

    def source_files(self) -> tuple[Path, ...]:
        return (*self.first.source_files(), *self.second.source_files(), Path(__file__))  # type: ignore[attr-defined]


@dataclass
class _PairEmbedder:
    """What `engine.embedder` shows for the ensemble (its parts embed)."""

    parts: tuple[FaceModel, FaceModel]
    name: str = NAME
    dim: int = 0

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        raise NotImplementedError("the ensemble embeds packed views through its parts (describe)")


def split(vectors: np.ndarray, first_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble rows -> (first part, second part), each scaled back to unit length."""
    v = np.atleast_2d(np.asarray(vectors, np.float32))
    return unit_rows(v[:, :first_dim]), unit_rows(v[:, first_dim:])


def join(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two parts' unit vectors -> ensemble rows (each part scaled by 1/sqrt(2): unit length overall)."""
    return np.concatenate([unit_rows(first) * PART_SCALE, unit_rows(second) * PART_SCALE], axis=1)


class EnsembleModel(FaceModel):
    """dlib + faceres, two vectors per face, fused cohort-normalised score."""

    def __init__(self, dlib: FaceModel, faceres: FaceModel, where: Path | None = None) -> None:
        self.parts = (dlib, faceres)
        self.folder = where or folder()
        super().__init__(
            name=NAME,
            version=VERSION,
            dim=dlib.dim + faceres.dim,
            aligner=PackedAligner(dlib.aligner, faceres.aligner),
            mirror=False,  # each part mirrors as its own model does
            load_embedder=lambda: _PairEmbedder(self.parts, dim=self.dim),
            kind="ensemble",
            description="dlib model 2.0 + faceres: two vectors per face, fused S-normed score",
            cache_salt=f"{dlib.cache_key()}+{faceres.cache_key()}",
        )

    def start_loading(self) -> None:
        for part in self.parts:
            part.start_loading()
        super().start_loading()

    @property
    def passes(self) -> int:
        """Network passes per face: both parts'."""
        return sum(p.passes for p in self.parts)

    def describe(self, views: np.ndarray) -> np.ndarray:
        a, b = self.aligner.unpack(views)  # type: ignore[attr-defined]
        return join(self.parts[0].describe(a), self.parts[1].describe(b))

    def view_embeddings(self, views: np.ndarray) -> np.ndarray:
        return self.describe(views)[:, None, None, :]

    @property
    def table_path(self) -> Path:
        return self.folder / "calibration.json"

    def calibration(self) -> Calibration:
        parts = [p.calibration() for p in self.parts]
        if self.table_path.is_file() and all(c.calibrated for c in parts):
            return Calibration("calibrated", str(self.table_path), " + ".join(str(c.cohort) for c in parts))
        return Calibration("uncalibrated")

    def calibrate(self, engine, command: str, console=None, max_images: int | None = None) -> dict:
        """Fit the fusion weight and the fused table on LFW's calibration folds (both parts must be
        calibrated: their cohorts normalise the parts); write the table; report held-out TARs."""
        from faceprint.accuracy import folds, lfw
        from faceprint.accuracy.embeddings import DETECTED, embed_dataset
        from faceprint.errors import InvalidParameterError
        from faceprint.models.ensemble import fusion

        for part in self.parts:
            if not part.calibration().calibrated:
                raise InvalidParameterError(
                    f"calibrate {part.name} first (`faceprint calibrate --model {part.name}`): the ensemble "
                    "normalises each part with its own cohort"
                )
        images = lfw.read_images()
        if max_images:  # a quick table on the first images (tests); reported figures use all of LFW
            images = lfw.LfwImages(
                images.paths[:max_images], images.persons[:max_images], images.genders[:max_images]
            )
        sets = [
            embed_dataset(
                engine.with_model(part),
                "lfw",
                lfw.lfw_root(),
                images.paths,
                "central",
                fallback=True,
                console=console,
            )
            for part in self.parts
        ]
        usable = (sets[0].status == DETECTED) & (sets[1].status == DETECTED)
        ids = images.identity_ids()
        scorers = [part.scorer() for part in self.parts]
        parts = [
            fusion.PartSet(p.name, es.vectors, sc.cohort, sc.top_k)
            for p, es, sc in zip(self.parts, sets, scorers, strict=True)
        ]
        result = fusion.fit_and_evaluate(parts[0], parts[1], images.persons, usable, ids)
        calib = folds.in_role(images.persons, "calibration") & usable
        doc = fusion.fused_table(result, parts[0], parts[1], ids[calib], self.version, command)
        fusion.write_table(doc, self.table_path)
        from faceprint import calibration, scoring

        calibration.table.cache_clear()
        scoring.clear_cache()
        result.pop("_calibration_pairs")
        return {"output": str(self.table_path), "model_version": self.version, **result}

    def fusion_weight(self) -> float:
        """dlib's weight in the fused score: the calibrated one, else DEFAULT_WEIGHT."""
        if self.table_path.is_file():
            from faceprint import calibration

            return float(calibration.table(str(self.table_path)).score.get("weight", DEFAULT_WEIGHT))
        return DEFAULT_WEIGHT

    def scorer(self):
        from faceprint import calibration, scoring

        if not self.calibration().calibrated:
            return scoring.uncalibrated_scorer(self.version)
        table = calibration.table(str(self.table_path))
        parts = tuple(p.scorer() for p in self.parts)
        return FusedScorer(self.version, table, None, parts=parts, weight=float(table.score["weight"]))

    def info(self) -> dict:
        out = super().info()
        out["Parts"] = [p.name for p in self.parts]
        out["FusionWeight"] = {self.parts[0].name: self.fusion_weight()}
        return out


def load() -> EnsembleModel | None:
    """The ensemble, or None when faceres is not installed (dlib always is)."""
    from faceprint.models import faceres, get_model

    if not faceres.is_installed():
        return None
    return EnsembleModel(get_model("dlib"), get_model("faceres"))


def catalogue_entry() -> dict:
    """What `faceprint models list` shows of the ensemble, usable or not."""
    from faceprint.models import faceres

    if faceres.is_installed():
        from faceprint.models import get_model

        return get_model(NAME).info()
    return {
        "Name": NAME,
        "FaceModelVersion": VERSION,
        "Kind": "ensemble",
        "Dimension": 128 + faceres.DIM,
        "Calibration": None,
        "Installed": False,
        "Install": "faceprint models install faceres",
        "Description": "dlib + faceres: two vectors per face, cohort-normalised scores fused",
    }


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class FusedScorer(Scorer):
    """Fused S-norm of the two parts: `weight x z_first + (1 - weight) x z_second`, mapped by the fused
    table's Similarity map. Each part's statistics come from its own cohort; they are computed from the
    stored vectors when scoring (the shortlist is small), so the row's stored statistics are not used."""

    parts: tuple = field(default=())
    weight: float = DEFAULT_WEIGHT

    @property
    def normalised(self) -> bool:
        return True

    @property
    def name(self) -> str:
        a, b = self.parts
        return f"fused s-norm {self.weight:g} x {a.name} + {1 - self.weight:g} x {b.name}"

    @property
    def tag(self) -> str:
        return ""

    @property
    def first_dim(self) -> int:
        return int(self.parts[0].cohort.dim)

    def check(self, model_version: str, dim: int) -> None:
        want = sum(p.cohort.dim for p in self.parts)
        if int(dim) != want:
            from faceprint.scoring import CohortError

            raise CohortError(f"the ensemble scores {want}-D vectors, not {int(dim)}-D ones")

    def stats(self, vectors: np.ndarray) -> np.ndarray:
        """Placeholder statistics (the fused score computes each part's own from the vectors)."""
        v = np.atleast_2d(vectors)
        return np.tile(np.array([0.0, 1.0], np.float32), (len(v), 1))

    def fused(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Fused normalised score z of one probe row against gallery rows (n,)."""
        p = split(probe, self.first_dim)
        g = split(gallery, self.first_dim)
        z = np.zeros(len(g[0]), np.float64)
        for w, part, pv, gv in zip((self.weight, 1 - self.weight), self.parts, p, g, strict=True):
            raw = gv.astype(np.float64) @ pv[0].astype(np.float64)
            z += w * s_norm(raw, part.stats(pv)[0], part.stats(gv))
        return z

    def scores(self, probe, probe_stats, gallery, gallery_stats) -> np.ndarray:
        return self.table.similarity_map.percent(self.fused(probe, np.atleast_2d(gallery)))

    def percent(self, score: np.ndarray) -> np.ndarray:
        return self.table.similarity_map.percent(score)

    def score_at(self, percent: float) -> float:
        return float(self.table.similarity_map.inverse(percent))
