"""The embedder interface: aligned face chips in, identity vectors out."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceprint.models.dlib.aligner import CHIP_PADDING, CHIP_SIZE  # dlib's chip, defined with its model

__all__ = ["CHIP_PADDING", "CHIP_SIZE", "Embedder"]


class Embedder(Protocol):
    """Turns aligned RGB chips (N, 150, 150, 3) uint8 into vectors (N, dim) float32."""

    name: str
    model_version: str
    dim: int

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """Embed a batch of aligned chips; an empty batch gives an empty (0, dim) array."""
        ...
