"""The shipped calibration table: what a Similarity score means as a false match rate.

`faceprint calibrate` (faceprint.accuracy.calibrate) measures the impostor (different-person) and genuine
(same-person) score distributions on LFW and writes `faceprint/data/calibration.json`:

    {"model_version": ..., "provenance": {...},
     "similarity": [s_0 < s_1 < ...],         # grid of Similarity thresholds (percent)
     "fmr": [...],                            # share of impostor pairs scoring >= s_i
     "fnmr": [...],                           # share of genuine pairs scoring < s_i
     "tail": {"from": s_t, "variable": "score", "intercept": a, "slope": b},
                                              # log10(FMR) = a + b * x for Similarity >= s_t, x its score
     "similarity_map": {"kind": "logistic", "centre": c, "scale": w},   # score -> Similarity
     "score": {"kind": "s-norm", "top_k": k, "cohort": fingerprint}}    # how scores are computed

The score variable x is the cohort-normalised score (see `faceprint.scoring`), or, for a raw table
(`"variable": "distance"`, no `similarity_map`), the L2 distance of unit vectors.

At and above `from` (where fewer than 100 impostor pairs were observed, and LFW's label noise dominates)
the FMR comes from the fitted log-linear tail: an estimate, flagged as such in the provenance, floored
at 1e-15.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from faceprint.similarity_maps import SimilarityMap
from faceprint.similarity_maps import from_json as map_from_json

FMR_FLOOR = 1e-15


@dataclass(frozen=True)
class CalibrationTable:
    similarity: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray
    tail_from: float
    tail_intercept: float
    tail_slope: float
    model_version: str
    provenance: dict
    similarity_map: SimilarityMap
    score: dict  # {"kind": "s-norm" | "raw", "top_k": k, "cohort": fingerprint}

    @classmethod
    def from_json(cls, data: dict) -> CalibrationTable:
        tail = data["tail"]
        return cls(
            similarity=np.asarray(data["similarity"], dtype=np.float64),
            fmr=np.asarray(data["fmr"], dtype=np.float64),
            fnmr=np.asarray(data["fnmr"], dtype=np.float64),
            tail_from=float(tail["from"]),
            tail_intercept=float(tail["intercept"]),
            tail_slope=float(tail["slope"]),
            model_version=str(data.get("model_version", "")),
            provenance=dict(data.get("provenance", {})),
            similarity_map=map_from_json(data.get("similarity_map")),
            score=dict(data.get("score", {"kind": "raw"})),
        )

    def false_match_rate(self, percent: float) -> float:
        """Estimated share of different-person pairs scoring >= `percent` (monotone non-increasing)."""
        s = float(np.clip(percent, 0.0, 100.0))
        if s >= self.tail_from:
            x = self.similarity_map.inverse(s)
            if not np.isfinite(x):
                return FMR_FLOOR
            return max(FMR_FLOOR, min(1.0, 10.0 ** (self.tail_intercept + self.tail_slope * x)))
        log_fmr = np.log10(np.maximum(self.fmr, FMR_FLOOR))
        return float(max(FMR_FLOOR, 10.0 ** np.interp(s, self.similarity, log_fmr)))

    def false_non_match_rate(self, percent: float) -> float:
        """Share of same-person pairs scoring below `percent` on the calibration set."""
        return float(np.interp(float(percent), self.similarity, self.fnmr))

    def threshold_for_fmr(self, target_fmr: float) -> float:
        """The lowest Similarity (to 0.01) whose estimated FMR is <= `target_fmr`."""
        target = max(FMR_FLOOR, float(target_fmr))
        lo, hi = 0.0, 100.0
        if self.false_match_rate(lo) <= target:
            return lo
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.false_match_rate(mid) <= target:
                hi = mid
            else:
                lo = mid
        return math.ceil(hi * 100.0) / 100.0


def default_path() -> Path:
    return Path(str(resources.files("faceprint") / "data" / "calibration.json"))


@cache
def table(path: str | None = None) -> CalibrationTable:
    """Load the calibration table (the shipped one unless `path` is given)."""
    file = Path(path) if path else default_path()
    if not file.is_file():
        raise FileNotFoundError(f"calibration table {file} is missing; run `faceprint calibrate`")
    return CalibrationTable.from_json(json.loads(file.read_text()))
