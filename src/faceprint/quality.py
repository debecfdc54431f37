"""Image quality of a face: Brightness and Sharpness on Rekognition's 0-100 scale."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Variance of the Laplacian on a 150x150 aligned chip at which Sharpness reaches 63 (1 - 1/e).
# Chosen so that in-focus LFW portraits score 70-95 and a 4x down-and-up-sampled blur scores below 40.
SHARPNESS_SCALE = 150.0


@dataclass(frozen=True)
class Quality:
    brightness: float
    sharpness: float


def measure_quality(chip: np.ndarray) -> Quality:
    """Brightness = mean luma of the central face area (0-100); Sharpness = saturating Laplacian energy."""
    gray = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    core = gray[h // 5 : h - h // 5, w // 5 : w - w // 5]
    brightness = float(core.mean()) / 255.0 * 100.0
    lap_var = float(cv2.Laplacian(core, cv2.CV_64F).var())
    sharpness = 100.0 * (1.0 - math.exp(-lap_var / SHARPNESS_SCALE))
    return Quality(brightness=round(brightness, 4), sharpness=round(sharpness, 4))
