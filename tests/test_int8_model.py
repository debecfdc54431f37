"""Models 2.2 ("dlib-int8") and 2.1 ("dlib-int8-2.1"): dlib's ResNet quantised to int8, built from the
shipped activation ranges, with the shipped GPTQ weight codes (2.2) or rounded to nearest (2.1).

Their vectors stay close to model 2.0's on real faces (but are not equal, so the versions differ), 2.2's
closer than 2.1's, the same people match, and ranges or codes fitted on another model are refused.
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
    rtn_engine = FaceEngine.shared().with_model("dlib-int8-2.1")
    versions = (float_engine.model_version, int8_engine.model_version, rtn_engine.model_version)
    assert versions == ("2.0", "2.2", "2.1")
    moved: dict[str, list[float]] = {"2.2": [], "2.1": []}
    for path in IMAGES:
        a = np.stack([f.embedding for f in float_engine.analyze(path)])
        for engine in (int8_engine, rtn_engine):
            b = np.stack([f.embedding for f in engine.analyze(path)])
            assert a.shape == b.shape  # the same faces: detection is shared
            moved[engine.model_version].extend(np.linalg.norm(a - b, axis=1))
    # Same-person distances are about 0.4 on unit vectors; an int8 network moves a face by a tenth of that,
    # and GPTQ's codes (2.2) move it less than rounding to nearest (2.1).
    assert 0 < max(moved["2.2"]) < 0.06 and 0 < max(moved["2.1"]) < 0.06, moved
    assert np.mean(moved["2.2"]) < np.mean(moved["2.1"]), moved


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


def test_codes_fitted_on_another_model_are_refused(tmp_path: Path, monkeypatch) -> None:
    fp32 = quantized.ensure_onnx_model()
    for name in (fp32.name, fp32.name + ".json"):
        shutil.copy(fp32.with_name(name), tmp_path / name)
    with np.load(quantized.rounding_path()) as shipped:
        arrays = {k: shipped[k] for k in shipped.files}
    meta = json.loads(str(arrays["meta"]))
    meta["codes_sha256"] = "0" * 64  # what another round-to-nearest model plus these differences would give
    arrays["meta"] = np.array(json.dumps(meta))
    bad = tmp_path / "rounding.npz"
    np.savez_compressed(bad, **arrays)
    monkeypatch.setattr(quantized, "rounding_path", lambda: bad)
    with pytest.raises(ValueError, match="another round-to-nearest int8 model"):
        quantized.ensure_int8_model(cache=tmp_path)
    assert not quantized.stamp_path(tmp_path / quantized.INT8_FILE).exists()  # never used, rebuilt next time


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


@pytest.mark.parametrize("rounding", [True, False], ids=["2.2", "2.1"])
def test_the_folded_input_stage_gives_bit_identical_vectors(rounding: bool, tmp_path: Path) -> None:
    """The embedder runs the int8 network with its input stage (mean, scale, quantise) as a lookup table:
    on real faces its vectors are exactly those of the network as quantised."""
    from faceprint.embedders.input_lut import LUT_INPUT
    from faceprint.embedders.onnx_resnet import OnnxEmbedder

    qdq = OnnxEmbedder(quantized.ensure_int8_model(rounding=rounding), threads=1)
    folded = OnnxEmbedder(quantized.ensure_runtime_int8_model(rounding=rounding), threads=1)
    assert qdq._input_table is None and folded._input_name == LUT_INPUT
    assert folded._input_table is not None and folded._input_table.shape == (256, 1, 3)
    engine = FaceEngine.shared().with_model("dlib-int8")
    views = np.concatenate([face.views for path in IMAGES for face in engine.detect(path)])
    assert len(views) > 5 * len(IMAGES)  # several views of every face
    reference = qdq.embed_chips(views)
    assert np.array_equal(folded.embed_chips(views), reference)
    assert np.array_equal(folded.embed_chips(views[:5]), reference[:5])  # a batch of another size
    # folded afresh (the cached file above may come from an earlier run)
    from faceprint.embedders.dlib_to_onnx import INPUT_NAME
    from faceprint.embedders.input_lut import fold_input_stage

    fold_input_stage(qdq.model_path, tmp_path / "folded.onnx", INPUT_NAME)
    assert np.array_equal(OnnxEmbedder(tmp_path / "folded.onnx", threads=1).embed_chips(views), reference)


def test_the_default_model_runs_the_folded_network() -> None:
    from faceprint.embedders import get_embedder

    for name, rounding in (("int8", True), ("int8-rtn", False)):
        assert get_embedder(name).model_path == quantized.ensure_runtime_int8_model(rounding=rounding)
