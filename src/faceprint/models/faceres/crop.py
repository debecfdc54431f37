"""faceres's input: the detector box widened by a margin, cropped, resized to 224x224, Caffe-normalised BGR.

Measured for issue 18 on LFW: the box plus 20% of its width/height on each side scored as well as a crop
aligned on the five landmarks (97.95% vs 97.80%), so faceres needs no landmarks. Parts of the widened box
outside the image are black (as in dlib's chips).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceprint.detectors.base import Detection

INPUT_SIZE = 224
MARGIN = 0.20  # of the box's width (height) added on the left and right (top and bottom)
CAFFE_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # VGGFace2 training means, BGR


def box_crop(pixels: np.ndarray, box: Detection, size: int = INPUT_SIZE, margin: float = MARGIN) -> np.ndarray:
    """The (size, size, 3) uint8 RGB crop of `box` widened by `margin` on each side, from RGB `pixels`."""
    dx, dy = margin * box.width, margin * box.height
    left, top = round(box.left - dx), round(box.top - dy)
    right, bottom = round(box.right + dx), round(box.bottom + dy)
    if right <= left or bottom <= top:
        raise ValueError(f"empty face box {box}")
    h, w = pixels.shape[:2]
    region = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if x1 > x0 and y1 > y0:
        region[y0 - top : y1 - top, x0 - left : x1 - left] = pixels[y0:y1, x0:x1, :3]
    shrink = region.shape[0] > size or region.shape[1] > size
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def network_input(crops: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB crops to the float32 BGR-minus-Caffe-means NHWC tensor faceres expects."""
    return np.ascontiguousarray(crops[..., ::-1], dtype=np.float32) - CAFFE_BGR_MEANS
