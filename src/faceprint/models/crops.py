"""The kept crop: what `faceprint index --keep-chips` stores of each face so that it can be re-embedded
by any model later (`faceprint collections migrate`).

A square around the detector box's centre, `CROP_SCALE` times its larger side (wide enough for every
supported aligner: dlib's chips at padding 0.30, the ArcFace template, a box crop plus 20%, and the
margin the detectors need to find the face again), never upsampled, at most `CROP_MAX` pixels a side,
stored as a JPEG (quality `CROP_QUALITY`) in the collection's private database.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

CROP_SCALE = 2.4
CROP_MAX = 400
CROP_QUALITY = 92


def wide_crop(pixels: np.ndarray, box) -> np.ndarray:
    """(s, s, 3) uint8 RGB crop of `pixels` around `box` (a Detection), zero outside the image."""
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    side = CROP_SCALE * max(box.right - box.left, box.bottom - box.top)
    size = int(max(32, min(CROP_MAX, round(side))))
    scale = size / side
    m = np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.asarray(
        cv2.warpAffine(np.ascontiguousarray(pixels), m, (size, size), flags=flags, borderValue=0), np.uint8
    )


def crop_jpeg(crop: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="JPEG", quality=CROP_QUALITY)
    return buf.getvalue()
