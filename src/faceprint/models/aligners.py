"""Aligners shared by models: the ArcFace five-point template warp and the detector-box crop.

`five_points(points68)`: left eye centre (mean of 68-point landmarks 36-41), right eye centre (42-47),
nose tip (30), left and right mouth corners (48, 54), as (5, 2) image pixels.
`ArcFace5Aligner`: warps those five points onto the standard ArcFace 112x112 template (scaled to the
model's input size) with a least-squares similarity transform (Umeyama), bilinear interpolation.
`BoxAligner`: the detector box plus a margin on each side, made square, cropped and resized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceprint.models.base import FaceGeometry

# InsightFace's 112x112 template: left eye, right eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
TEMPLATES = ("arcface5", "box")


def five_points(points68: np.ndarray) -> np.ndarray:
    """(5, 2) float64: eye centres, nose tip and mouth corners of dlib's 68 landmarks."""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity transform (rotation, uniform scale, translation) taking `src`
    points onto `dst` (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(axis=0).sum()
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


@dataclass(frozen=True)
class ArcFace5Aligner:
    """Five points warped to the ArcFace template, `size` x `size` (the template scales with `size`)."""

    size: int = 112
    name: str = "arcface5"
    views: int = 1

    def transform(self, points68: np.ndarray) -> np.ndarray:
        return similarity_transform(five_points(points68), ARCFACE_112 * (self.size / 112.0))

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        m = self.transform(face.points68)
        warped = cv2.warpAffine(
            np.ascontiguousarray(pixels), m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderValue=0
        )
        return np.asarray(warped, dtype=np.uint8)[None]

    def source_files(self) -> tuple[Path, ...]:
        return (Path(__file__),)


@dataclass(frozen=True)
class BoxAligner:
    """The detector box grown by `margin` of its size on each side, made square, resized to `size`."""

    size: int = 112
    margin: float = 0.2
    name: str = "box"
    views: int = 1

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        b = face.box
        cx, cy = (b.left + b.right) / 2, (b.top + b.bottom) / 2
        half = max(b.right - b.left, b.bottom - b.top) * (0.5 + self.margin)
        scale = self.size / (2 * half)
        m = np.array([[scale, 0.0, self.size / 2 - scale * cx], [0.0, scale, self.size / 2 - scale * cy]])
        warped = cv2.warpAffine(
            np.ascontiguousarray(pixels), m, (self.size, self.size), flags=cv2.INTER_AREA, borderValue=0
        )
        return np.asarray(warped, dtype=np.uint8)[None]

    def source_files(self) -> tuple[Path, ...]:
        return (Path(__file__),)


def aligner(template: str, size: int) -> ArcFace5Aligner | BoxAligner:
    """The shared aligner named `template` ("arcface5" or "box") at `size` pixels."""
    if template == "arcface5":
        return ArcFace5Aligner(size)
    if template == "box":
        return BoxAligner(size)
    raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
