"""dlib's chips: 150x150 RGB, aligned by `dlib.get_face_chip` on the 5- or 68-point landmarks.

Model 2.0 embeds 6 chips per face (both landmark sets, paddings 0.20, 0.25 and 0.30) and their mirror
images: 12 views averaged, the most accurate view set measured on the LFW pairs (docs/accuracy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np

from faceprint.models.base import FaceGeometry

CHIP_SIZE = 150  # dlib's ResNet input: a 150x150 chip ...
CHIP_PADDING = 0.25  # ... aligned from the 5-point landmarks with 25% padding (dlib's get_face_chip)


@dataclass(frozen=True)
class Descriptor:
    """How a face's identity vector is made from dlib's ResNet: which aligned chips ("views") are
    embedded and averaged. The mean is scaled to unit length, so distances lie in [0, 2].

    `version` is the FaceModelVersion of collections built with it (Rekognition's pattern: [0-9.]+).
    """

    version: str
    alignments: tuple[int, ...]  # landmark sets the chips are aligned on: 5 and/or 68 points
    paddings: tuple[float, ...]  # dlib get_face_chip paddings (0.25 is what the network was trained on)
    mirror: bool  # also embed each chip's mirror image

    @property
    def cuts(self) -> tuple[tuple[int, float], ...]:
        """(alignment, padding) of every chip cut from the image, in order."""
        return tuple((a, p) for a in self.alignments for p in self.paddings)

    @property
    def passes(self) -> int:
        """Embedder passes per face."""
        return len(self.cuts) * (2 if self.mirror else 1)


# Model 2.0: chips aligned on the 5- and the 68-point landmarks, each at paddings 0.20, 0.25 and 0.30,
# and their mirror images: 12 views averaged. The most accurate view set measured on the LFW pairs
# (docs/accuracy.md), for 6x the embedding work of one chip and its mirror (model 1.1, the first release).
DESCRIPTOR = Descriptor("2.0", alignments=(5, 68), paddings=(0.20, 0.25, 0.30), mirror=True)


def cut_chips(
    pixels: np.ndarray, shape5: object, shape68: object, chip: np.ndarray, cuts: tuple[tuple[int, float], ...]
) -> np.ndarray:
    """The chips of `cuts` ((alignment, padding) pairs), reusing `chip` for (5, CHIP_PADDING)."""
    shapes = {5: shape5, 68: shape68}
    return np.stack(
        [
            chip
            if (a, p) == (5, CHIP_PADDING)
            else np.asarray(dlib.get_face_chip(pixels, shapes[a], size=CHIP_SIZE, padding=p), dtype=np.uint8)
            for a, p in cuts
        ]
    )


@dataclass(frozen=True)
class DlibChipAligner:
    """The chips of a `Descriptor`, cut by dlib."""

    descriptor: Descriptor = DESCRIPTOR
    name: str = "dlib-chips"
    size: int = CHIP_SIZE

    @property
    def views(self) -> int:
        return len(self.descriptor.cuts)

    def cut(self, pixels: np.ndarray, face: FaceGeometry) -> np.ndarray:
        return cut_chips(pixels, face.shape5, face.shape68, face.chip, self.descriptor.cuts)

    def source_files(self) -> tuple[Path, ...]:
        return (Path(__file__),)
