"""The embedder interface: aligned face chips in, identity vectors out."""

from __future__ import annotations

from typing import Protocol

import numpy as np

CHIP_SIZE = 150  # dlib's ResNet input: a 150x150 chip ...
CHIP_PADDING = 0.25  # ... aligned from the 5-point landmarks with 25% padding (dlib's get_face_chip)


class Embedder(Protocol):
    """Turns aligned RGB chips (N, 150, 150, 3) uint8 into vectors (N, dim) float32."""

    name: str
    model_version: str
    dim: int

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """Embed a batch of aligned chips; an empty batch gives an empty (0, dim) array."""
        ...
