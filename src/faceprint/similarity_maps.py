"""Fixed monotone maps from a score variable to Rekognition-style Similarity (0-100), and back.

`DistanceMap`: the L2 distance d of unit vectors, `100 / (1 + (d / 0.6)^4)` (raw scoring; decreasing in d).
`LogisticMap`: a cohort-normalised score z, `100 / (1 + exp(-(z - centre) / scale))` (increasing in z).
`CosineMap`: an uncalibrated model's `100 x cosine` (orders faces, means no error rate).
A calibration table names its map, so a Similarity always means what its table says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SimilarityMap(Protocol):
    variable: str  # "distance", "score" or "cosine"

    def percent(self, x: np.ndarray | float) -> np.ndarray | float: ...

    def inverse(self, percent: float) -> float: ...

    def to_json(self) -> dict: ...


@dataclass(frozen=True)
class DistanceMap:
    d50: float = 0.6
    exponent: float = 4.0
    variable: str = "distance"

    def percent(self, x):
        d = np.maximum(0.0, np.asarray(x, dtype=np.float64))
        out = 100.0 / (1.0 + (d / self.d50) ** self.exponent)
        return float(out) if np.ndim(out) == 0 else out

    def inverse(self, percent: float) -> float:
        """The largest distance whose Similarity is still >= `percent`."""
        p = float(percent)
        if p <= 0.0:
            return math.inf
        if p >= 100.0:
            return 0.0
        return self.d50 * (100.0 / p - 1.0) ** (1.0 / self.exponent)

    def to_json(self) -> dict:
        return {"kind": "distance", "d50": self.d50, "exponent": self.exponent}


@dataclass(frozen=True)
class LogisticMap:
    centre: float
    scale: float
    variable: str = "score"

    def percent(self, x):
        z = np.asarray(x, dtype=np.float64)
        out = 100.0 / (1.0 + np.exp(-(z - self.centre) / self.scale))
        return float(out) if np.ndim(out) == 0 else out

    def inverse(self, percent: float) -> float:
        """The normalised score whose Similarity is `percent`."""
        p = float(percent)
        if p <= 0.0:
            return -math.inf
        if p >= 100.0:
            return math.inf
        return self.centre + self.scale * math.log(p / (100.0 - p))

    def to_json(self) -> dict:
        return {"kind": "logistic", "centre": self.centre, "scale": self.scale}


@dataclass(frozen=True)
class CosineMap:
    """An uncalibrated model's Similarity: 100 x the cosine of the two vectors (0 below 0). It means no
    false match rate; it only orders faces."""

    variable: str = "cosine"

    def percent(self, x):
        out = 100.0 * np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        return float(out) if np.ndim(out) == 0 else out

    def inverse(self, percent: float) -> float:
        return float(np.clip(percent, 0.0, 100.0)) / 100.0

    def to_json(self) -> dict:
        return {"kind": "cosine"}


def from_json(data: dict | None) -> SimilarityMap:
    """The map a calibration table names (a table without one uses the distance map)."""
    if not data or data.get("kind") == "distance":
        data = data or {}
        return DistanceMap(float(data.get("d50", 0.6)), float(data.get("exponent", 4.0)))
    if data.get("kind") == "cosine":
        return CosineMap()
    if data.get("kind") == "logistic":
        return LogisticMap(float(data["centre"]), float(data["scale"]))
    raise ValueError(f"unknown Similarity map {data.get('kind')!r}")
