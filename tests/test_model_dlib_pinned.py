"""The built-in dlib model 2.0 computes exactly the vectors it computed before faces models became units.

`tests/data/dlib_2_0_vectors.npz` was written by main's code (engine.py's 12-view descriptor, ONNX embedder)
before the refactor into `faceprint.models`: the same images must give bit-identical vectors, so every
stored collection and the shared LFW embedding cache stay valid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, LFW
from faceprint.engine import FaceEngine

PINNED = Path(__file__).parent / "data" / "dlib_2_0_vectors.npz"
IMAGES = {
    "obama": EXAMPLES / "obama.jpg",
    "biden": EXAMPLES / "biden.jpg",
    "two_people": EXAMPLES / "two_people.jpg",
    "lfw_aaron": LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg",
}


def vectors(engine: FaceEngine) -> dict[str, np.ndarray]:
    """Every face's vector of each pinned image, largest face first."""
    return {k: np.stack([f.embedding for f in engine.analyze(p)]) for k, p in IMAGES.items()}


@pytest.mark.skipif(not PINNED.is_file(), reason="pinned vectors not written yet")
def test_dlib_vectors_are_bit_identical_to_model_2_0() -> None:
    engine = FaceEngine.shared().with_model("dlib")
    assert engine.model_version == "2.0"
    with np.load(PINNED) as pinned:
        got = vectors(engine)
        assert sorted(pinned.files) == sorted(got)
        for key, vec in got.items():
            assert vec.dtype == np.float32 and vec.shape == pinned[key].shape, key
            assert np.array_equal(vec, pinned[key]), key


if __name__ == "__main__":  # writes the pinned file (run once, from the code being pinned)
    np.savez(PINNED, **vectors(FaceEngine.shared().with_model("dlib")))
    print(f"wrote {PINNED}")
