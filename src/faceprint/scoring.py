"""The scorer: how two face vectors become a Similarity, and what that Similarity means.

One `Scorer` per face model holds everything a score depends on: the metric (cosine of the vectors), the
cohort (real face vectors of people who are never searched for), `top_k`, the Similarity map and the
calibration table, all of one model version. Issue 18 (pluggable models) attaches one scorer per model.

Adaptive S-norm: a face x has cohort statistics (mu_x, sd_x), the mean and standard deviation of its
`top_k` highest cosine similarities to the cohort. Two faces with raw cosine s score

    z = ((s - mu_a) / sd_a + (s - mu_b) / sd_b) / 2

a z-like score: how far s stands above what each face scores against its closest strangers. The
Similarity (0-100) is a fixed monotone map of z stored in the calibration table, which also says what each
Similarity means as a false match rate. A scorer without a cohort scores raw (the map of the L2 distance
that faceprint used before cohort normalisation); the audit uses one to show raw and normalised side by
side.

Costs: a face's statistics are one (cohort x dim) matrix-vector product and a partial sort, computed
once at index time and stored beside the face; a pair's score is then a dot product.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from faceprint.calibration import CalibrationTable
from faceprint.errors import FaceprintError

DEFAULT_TOP_K = 400
SD_FLOOR = 1e-4  # statistics of a degenerate cohort never divide by zero
COHORT_FORMAT = "faceprint-cohort-1"
FLOAT = np.float32

log = logging.getLogger(__name__)


class CohortError(FaceprintError):
    """A cohort file is unreadable or does not belong to the model it is used with."""

    code = "InvalidParameterException"
    status = 400


@dataclass(frozen=True)
class Cohort:
    """Unit-length face vectors of people who are never searched for, with where they came from."""

    vectors: np.ndarray  # (m, dim) float32, unit rows
    model_version: str
    provenance: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the vectors and model version: stored statistics name the cohort they used
        (computed once: hashing the 1.5 MB of vectors for every indexed face cost 3 ms per face)."""
        digest = hashlib.sha1(self.model_version.encode() + b"\0")
        digest.update(np.ascontiguousarray(self.vectors, dtype="<f4").tobytes())
        return digest.hexdigest()[:12]

    @cached_property
    def unit_vectors(self) -> np.ndarray:
        """`unit(vectors)`, computed once (every statistic needs it)."""
        return unit(self.vectors)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, model_version: str, provenance: dict | None = None) -> Cohort:
        return cls(unit(vectors), str(model_version), dict(provenance or {}))

    def save(self, path: Path) -> Path:
        """Write as .npz (vectors float32 + provenance JSON), atomically, private to its owner."""
        from faceprint.files import write_atomically

        meta = {"format": COHORT_FORMAT, "model_version": self.model_version, "provenance": self.provenance}
        vectors = np.ascontiguousarray(self.vectors, dtype="<f4")
        return write_atomically(
            Path(path), lambda fh: np.savez(fh, vectors=vectors, meta=np.array(json.dumps(meta)))
        )

    @classmethod
    def load(cls, path: Path | str) -> Cohort:
        """Read a cohort file; a missing or malformed one is a `CohortError` naming the file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                vectors = np.asarray(z["vectors"], dtype=FLOAT)
                meta = json.loads(str(z["meta"]))
        except FileNotFoundError:
            raise CohortError(f"cohort file {path} does not exist") from None
        except (OSError, KeyError, ValueError) as exc:
            raise CohortError(f"cohort file {path} is not a faceprint cohort ({exc})") from None
        if meta.get("format") != COHORT_FORMAT or vectors.ndim != 2 or len(vectors) == 0:
            raise CohortError(f"cohort file {path} is not a faceprint cohort ({COHORT_FORMAT})")
        if not np.isfinite(vectors).all():
            raise CohortError(f"cohort file {path} holds non-finite values")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-4):  # written by hand: scale, as `from_vectors` does
            vectors = unit(vectors)
        return cls(vectors, str(meta.get("model_version", "")), dict(meta.get("provenance", {})))


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; zero rows stay zero)."""
    v = np.atleast_2d(np.asarray(vectors, dtype=FLOAT))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(FLOAT)


def cohort_stats(
    vectors: np.ndarray, cohort: np.ndarray, top_k: int, block: int = 4096, cohort_is_unit: bool = False
) -> np.ndarray:
    """(n, 2) float32: mean and standard deviation of each row's `top_k` highest cosines to `cohort`
    (`cohort_is_unit`: its rows are `unit()` output already, as `Cohort.unit_vectors`)."""
    x = unit(vectors)
    c = cohort if cohort_is_unit else unit(cohort)
    k = max(1, min(int(top_k), len(c)))
    out = np.empty((len(x), 2), dtype=FLOAT)
    for r0 in range(0, len(x), block):
        sims = x[r0 : r0 + block] @ c.T
        top = np.partition(sims, len(c) - k, axis=1)[:, len(c) - k :] if k < len(c) else sims
        out[r0 : r0 + block, 0] = top.mean(axis=1)
        out[r0 : r0 + block, 1] = np.maximum(top.std(axis=1), SD_FLOOR)
    return out


def s_norm(raw: np.ndarray, stats_a: np.ndarray, stats_b: np.ndarray) -> np.ndarray:
    """Adaptive S-norm of raw cosines (broadcasting): ((s - mu_a)/sd_a + (s - mu_b)/sd_b) / 2."""
    sa, sb = np.asarray(stats_a, np.float64), np.asarray(stats_b, np.float64)
    s = np.asarray(raw, np.float64)
    return ((s - sa[..., 0]) / sa[..., 1] + (s - sb[..., 0]) / sb[..., 1]) / 2.0


class CalibrationMismatchError(FaceprintError):
    """A calibration table measured on another face model than the one it is used with."""

    code = "InvalidParameterException"
    status = 400


UNCALIBRATED_THRESHOLD = 80.0  # an uncalibrated model's default thresholds (Rekognition's default)


@dataclass(frozen=True)
class Scorer:
    """Metric, cohort, top_k, Similarity map and calibration table of one face model.

    `table` None: the model is uncalibrated; it scores `100 x cosine`, its false match rates are unknown
    (`false_match_rate` is None) and its default thresholds are Rekognition's 80."""

    model_version: str
    table: CalibrationTable | None
    cohort: Cohort | None = None  # None: raw scoring (the distance map, no normalisation)
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        if self.table is not None and self.table.model_version != self.model_version:
            raise CalibrationMismatchError(
                f"the calibration table {self.table.provenance.get('file', '')} was measured on face model "
                f"{self.table.model_version!r}, not {self.model_version!r}; run `faceprint calibrate` for "
                "this model"
            )

    @property
    def calibrated(self) -> bool:
        """Whether Similarity has measured false match rates (a table of this model)."""
        return self.table is not None

    @property
    def similarity_map(self):
        from faceprint.similarity_maps import CosineMap

        return self.table.similarity_map if self.table is not None else CosineMap()

    @property
    def normalised(self) -> bool:
        return self.cohort is not None

    @property
    def name(self) -> str:
        return f"s-norm top {self.top_k} of {len(self.cohort)}" if self.cohort is not None else "raw"

    @property
    def tag(self) -> str:
        """Names the statistics this scorer computes (cohort fingerprint and k): stored with each face."""
        return f"{self.cohort.fingerprint}:{self.top_k}" if self.cohort is not None else ""

    def check(self, model_version: str, dim: int) -> None:
        """Refuse to score vectors of another model (CalibrationMismatchError) or of another model or
        dimension than the cohort's (CohortError)."""
        if str(model_version) != self.model_version:
            raise CalibrationMismatchError(
                f"the scorer (calibration table and cohort) is of face model {self.model_version!r}, but the "
                f"faces are model {model_version!r}"
            )
        if self.cohort is None:
            return
        source = self.cohort.provenance.get("file", "the cohort")
        if self.cohort.model_version != str(model_version):
            raise CohortError(
                f"{source} holds vectors of face model {self.cohort.model_version!r}, but the faces are "
                f"model {model_version!r}; build a cohort for this model with `faceprint cohort build DIR`"
            )
        if self.cohort.dim != int(dim):
            raise CohortError(
                f"{source} holds {self.cohort.dim}-D vectors, but model {model_version!r} computes "
                f"{int(dim)}-D vectors"
            )

    # -- statistics and scores --------------------------------------------------------------------

    def stats(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 2) cohort statistics (mu, sd) of face vectors; zeros and ones when scoring raw."""
        v = np.atleast_2d(np.asarray(vectors, dtype=FLOAT))
        if self.cohort is None:
            return np.tile(np.array([0.0, 1.0], FLOAT), (len(v), 1))
        if v.shape[1] != self.cohort.dim:
            raise CohortError(f"vectors are {v.shape[1]}-D but the cohort is {self.cohort.dim}-D")
        return cohort_stats(v, self.cohort.unit_vectors, self.top_k, cohort_is_unit=True)

    def scores(
        self,
        probe: np.ndarray,
        probe_stats: np.ndarray | None,
        gallery: np.ndarray,
        gallery_stats: np.ndarray | None,
    ) -> np.ndarray:
        """Similarity (0-100, float64) of one probe vector to each gallery vector (n, dim)."""
        p = unit(probe)[0]
        g = unit(gallery)
        if self.cohort is None:
            return self.percent(g.astype(np.float64) @ p.astype(np.float64))
        ps = self.stats(p) if probe_stats is None else np.asarray(probe_stats).reshape(1, 2)
        gs = self.stats(g) if gallery_stats is None else np.asarray(gallery_stats).reshape(-1, 2)
        raw = g.astype(np.float64) @ p.astype(np.float64)
        return self.similarity_map.percent(s_norm(raw, ps[0], gs))

    def pair(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two face vectors (statistics computed here)."""
        return float(self.scores(a, None, np.atleast_2d(b), None)[0])

    def percent(self, score: np.ndarray) -> np.ndarray:
        """Similarity of pair scores in this scorer's variable (z, or the cosine when raw)."""
        smap = self.similarity_map
        if self.cohort is None and smap.variable == "distance":
            cos = np.asarray(score, np.float64)
            return smap.percent(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cos)))
        return smap.percent(score)

    def score_at(self, percent: float) -> float:
        """The pair score (z, or the cosine when raw) at which Similarity reaches `percent`."""
        smap = self.similarity_map
        x = smap.inverse(percent)
        return 1.0 - x * x / 2.0 if self.cohort is None and smap.variable == "distance" else x

    # -- what scores mean -------------------------------------------------------------------------

    def false_match_rate(self, percent: float) -> float | None:
        """Estimated FMR at `percent`; None (unknown) for an uncalibrated model."""
        return self.table.false_match_rate(percent) if self.table is not None else None

    def threshold_for_false_match_rate(self, target_fmr: float) -> float:
        if self.table is None:
            return UNCALIBRATED_THRESHOLD
        return self.table.threshold_for_fmr(target_fmr)

    def default_compare_threshold(self) -> float:
        """Default 1:1 threshold: FMR <= 1e-4."""
        from faceprint.similarity import COMPARE_TARGET_FMR

        return self.threshold_for_false_match_rate(COMPARE_TARGET_FMR)

    def default_search_threshold(self, collection_size: int) -> float:
        """Default 1:N threshold: expected false matches FMR x N <= 1% for a collection of this size."""
        from faceprint.similarity import SEARCH_TARGET_FPIR

        return self.threshold_for_false_match_rate(SEARCH_TARGET_FPIR / max(1, int(collection_size)))


@cache
def _scorer(table_path: str | None, cohort_file: str) -> Scorer:
    from faceprint import calibration

    table = calibration.table(table_path)
    cohort = Cohort.load(cohort_file)
    cohort = Cohort(cohort.vectors, cohort.model_version, {**cohort.provenance, "file": cohort_file})
    scorer = Scorer(table.model_version, table, cohort, int(table.score.get("top_k", DEFAULT_TOP_K)))
    scorer.check(table.model_version, int(table.score.get("dim", cohort.dim)))
    calibrated_with = table.score.get("cohort")
    if calibrated_with and calibrated_with != cohort.fingerprint:
        log.warning(
            "cohort %s (%s) is not the one the calibration table was measured with (%s): false match "
            "rates are estimates for another cohort; recalibrate with `faceprint calibrate --cohort %s`",
            cohort_file,
            cohort.fingerprint,
            calibrated_with,
            cohort_file,
        )
    return scorer


# Scorers load once, one at a time: two threads loading cohorts at once (the two parts of an ensemble, in
# the indexer's workers) would run `np.load`'s header parsing (`ast.literal_eval`) concurrently, which
# CPython 3.11 can fail with "SystemError: AST constructor recursion depth mismatch".
_loading = threading.RLock()


def shipped_scorer(table_file: str, cohort_file: str) -> Scorer:
    """A built-in model's scorer: its shipped calibration table with the configured cohort (cached per
    file; a user's cohort other than the one the table was measured with is used with a warning)."""
    with _loading:
        return _scorer(table_file, cohort_file)


def default_scorer() -> Scorer:
    """The default face model's scorer (`config.default_model()`)."""
    from faceprint.models import get_model

    return get_model().scorer()


def uncalibrated_scorer(model_version: str) -> Scorer:
    """The scorer of a model without a calibration table: 100 x cosine, false match rates unknown."""
    return Scorer(str(model_version), None, None)


@cache
def _model_scorer(table_file: str, cohort_file: str, model_version: str, stamp: tuple) -> Scorer:
    from faceprint import calibration

    table = calibration.CalibrationTable.from_json(json.loads(Path(table_file).read_text()))
    table.provenance.setdefault("file", table_file)
    cohort = Cohort.load(cohort_file)
    cohort = Cohort(cohort.vectors, cohort.model_version, {**cohort.provenance, "file": cohort_file})
    scorer = Scorer(str(model_version), table, cohort, int(table.score.get("top_k", DEFAULT_TOP_K)))
    scorer.check(model_version, int(table.score.get("dim", cohort.dim)))
    if table.score.get("cohort") not in (None, cohort.fingerprint):
        raise CohortError(f"{cohort_file} is not the cohort {table_file} was calibrated with")
    return scorer


def model_scorer(table_file: str, cohort_file: str, model_version: str) -> Scorer:
    """The scorer of one model's own calibration table and cohort (reloaded when either file changes);
    a table or cohort of another model is refused."""
    stamp = tuple(Path(f).stat().st_mtime_ns for f in (table_file, cohort_file))
    with _loading:
        return _model_scorer(table_file, cohort_file, str(model_version), stamp)


def clear_cache() -> None:
    """Forget loaded scorers (after `faceprint calibrate` rewrites the files)."""
    _scorer.cache_clear()
    _model_scorer.cache_clear()
