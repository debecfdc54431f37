"""Model 2.1 ("dlib-int8"): dlib's ResNet quantised to int8, built from the shipped activation ranges.

Its vectors stay close to model 2.0's on real faces (but are not equal, so the version differs), the same
people match, a ranges file fitted on another float conversion is refused, and collections of the two
versions live side by side in one home.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, LFW
from faceprint.embedders import quantized
from faceprint.engine import FaceEngine

IMAGES = [
    EXAMPLES / "obama.jpg",
    EXAMPLES / "biden.jpg",
    EXAMPLES / "two_people.jpg",
    LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg",
    LFW / "George_W_Bush" / "George_W_Bush_0001.jpg",
    LFW / "George_W_Bush" / "George_W_Bush_0002.jpg",
]


@pytest.fixture(scope="module")
def engines() -> tuple[FaceEngine, FaceEngine]:
    shared = FaceEngine.shared()
    return shared.with_model("dlib"), shared.with_model("dlib-int8")


def test_int8_vectors_are_close_to_float32_but_their_own_version(engines) -> None:
    float_engine, int8_engine = engines
    assert (float_engine.model_version, int8_engine.model_version) == ("2.0", "2.1")
    moved = []
    for path in IMAGES:
        a = np.stack([f.embedding for f in float_engine.analyze(path)])
        b = np.stack([f.embedding for f in int8_engine.analyze(path)])
        assert a.shape == b.shape  # the same faces: detection is shared
        moved.extend(np.linalg.norm(a - b, axis=1))
    # Same-person distances are about 0.4 on unit vectors; the int8 network moves a face by a tenth of that.
    assert 0 < max(moved) < 0.06, moved


def test_int8_matches_the_same_people(engines) -> None:
    _, int8_engine = engines
    bush1, bush2, aaron = (
        int8_engine.analyze(LFW / p)[0].embedding
        for p in (
            "George_W_Bush/George_W_Bush_0001.jpg",
            "George_W_Bush/George_W_Bush_0002.jpg",
            "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
        )
    )
    assert np.linalg.norm(bush1 - bush2) < 0.45 < np.linalg.norm(bush1 - aaron)


def test_ranges_of_another_float_conversion_are_refused(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(quantized.ensure_onnx_model(), tmp_path / quantized.ensure_onnx_model().name)
    stamp = quantized.ensure_onnx_model()
    shutil.copy(stamp.with_name(stamp.name + ".json"), tmp_path / (stamp.name + ".json"))
    doc = json.loads(quantized.ranges_path().read_text())
    doc["float_model_sha256"] = "0" * 64
    bad = tmp_path / "ranges.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.setattr(quantized, "ranges_path", lambda: bad)
    with pytest.raises(ValueError, match="another float32 conversion"):
        quantized.ensure_int8_model(cache=tmp_path)
    assert not (tmp_path / quantized.INT8_FILE).exists()


def test_a_changed_ranges_file_rebuilds_the_model(tmp_path: Path, monkeypatch) -> None:
    fp32 = quantized.ensure_onnx_model()
    for name in (fp32.name, fp32.name + ".json"):
        shutil.copy(fp32.with_name(name), tmp_path / name)
    ranges = tmp_path / "ranges.json"
    shutil.copy(quantized.ranges_path(), ranges)
    monkeypatch.setattr(quantized, "ranges_path", lambda: ranges)
    built = quantized.ensure_int8_model(cache=tmp_path)
    first = built.stat().st_mtime_ns
    assert quantized.ensure_int8_model(cache=tmp_path).stat().st_mtime_ns == first  # cached
    ranges.write_text(ranges.read_text() + "\n")  # same ranges, another file: the stamp no longer matches
    assert quantized.ensure_int8_model(cache=tmp_path).stat().st_mtime_ns != first
