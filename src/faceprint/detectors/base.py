"""The detector interface: every backend turns RGB pixels into scored boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Detection:
    """A face box in pixel coordinates of the image it was found in."""

    left: float
    top: float
    right: float
    bottom: float
    score: float  # detector confidence in [0, 1]
    detector: str = ""
    keypoints: np.ndarray | None = field(default=None, repr=False)  # detector's own points, (k, 2) pixels

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)


class Detector(Protocol):
    """A face detector backend."""

    name: str

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        """Find faces in an RGB uint8 image (H, W, 3)."""
        ...


def iou(a: Detection, b: Detection) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    iy = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(dets: list[Detection], threshold: float = 0.3) -> list[Detection]:
    """Keep the highest-scoring box of each overlapping group."""
    kept: list[Detection] = []
    for det in sorted(dets, key=lambda d: d.score, reverse=True):
        if all(iou(det, k) < threshold for k in kept):
            kept.append(det)
    return kept
