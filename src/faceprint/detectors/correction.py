"""Map a detector's boxes onto dlib HOG's box convention, so dlib's shape predictors see what they expect.

dlib's 5- and 68-point shape predictors were trained on boxes from dlib's HOG face detector: square-ish
boxes from the brows to just below the lips. Other detectors frame the face differently (BlazeFace's box
is larger and reaches the forehead; dlib's MMOD CNN box is a little smaller), so their boxes are shifted
and scaled with a fixed linear correction fitted on real images where both detectors find the same face.
The constants live with each detector; `bench/fit_box_correction.py` refits and prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoxCorrection:
    """Centre shift (in box widths/heights) and size scale from a detector's box to HOG's box.

    HOG centre x = cx + dx * w, centre y = cy + dy * h, width = sx * w, height = sy * h.
    """

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """Correct an (n, 4) array of left, top, right, bottom boxes; returns a new array."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.dx * w
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.dy * h
        hw, hh = self.sx * w / 2, self.sy * h / 2
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)

    def invert(self, boxes: np.ndarray) -> np.ndarray:
        """Map HOG-convention boxes back to the detector's own convention."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w = (boxes[:, 2] - boxes[:, 0]) / self.sx
        h = (boxes[:, 3] - boxes[:, 1]) / self.sy
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 - self.dx * w
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 - self.dy * h
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


IDENTITY = BoxCorrection()


def fit_correction(own: Sequence[Sequence[float]], hog: Sequence[Sequence[float]]) -> BoxCorrection:
    """Fit the correction from pairs of boxes (the detector's own, HOG's) of the same faces.

    Each parameter is the 20%-trimmed mean of its per-face value: robust to the odd mismatched pair, yet
    smooth over the coarse size steps of HOG's image pyramid (a median would snap to one step). Boxes are
    (left, top, right, bottom) rows.
    """
    a = np.asarray(own, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(hog, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(a) != len(b):
        raise ValueError("need the same, non-zero number of boxes from both detectors")
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dx = ((b[:, 0] + b[:, 2]) - (a[:, 0] + a[:, 2])) / 2 / wa
    dy = ((b[:, 1] + b[:, 3]) - (a[:, 1] + a[:, 3])) / 2 / ha
    return BoxCorrection(
        dx=_trimmed_mean(dx), dy=_trimmed_mean(dy), sx=_trimmed_mean(wb / wa), sy=_trimmed_mean(hb / ha)
    )


def _trimmed_mean(values: np.ndarray, cut: float = 0.2) -> float:
    lo, hi = np.quantile(values, [cut, 1 - cut])
    return float(values[(values >= lo) & (values <= hi)].mean())
