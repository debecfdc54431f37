"""Face models as units: the registry, `faceprint models add|list|describe|remove` on a real ONNX model
(`../shared/models/mobileface.onnx`), the ArcFace five-point aligner, and the refusals of files that are
not face models for their settings (corrupt, wrong layout or size, non-face, wrong output shape)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from conftest import DATA, EXAMPLES, KNN, LFW
from faceprint.cli import cli
from faceprint.engine import FaceEngine
from faceprint.images import load_image
from faceprint.models import get_model, list_models, model_for_version
from faceprint.models.aligners import ARCFACE_112, ArcFace5Aligner, five_points

MOBILEFACE = DATA.parent / "models" / "mobileface.onnx"
ADD = ["--input-size", "112", "--template", "arcface5"]

pytestmark = pytest.mark.skipif(not MOBILEFACE.is_file(), reason="../shared/models/mobileface.onnx missing")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def add_mobileface(name: str = "mobileface", *extra: str) -> dict:
    code, out, err = run("models", "add", name, "--onnx", str(MOBILEFACE), *ADD, *extra, "--json")
    assert code == 0, err
    return json.loads(out)


def tiny_model(tmp_path: Path, out_dim: int, name: str) -> Path:
    """A real ONNX graph that is not a face model: the mean colour of the image through a fixed random
    projection to `out_dim` values (it sees skin tone, not identity)."""
    rng = np.random.default_rng(0)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, out_dim], rng.normal(size=3 * out_dim).tolist())
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["y"]),
        ],
        "colour",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 112, 112, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out_dim])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_dlib_int8_is_the_default_and_every_dlib_version_is_built_in(home: Path) -> None:
    dlib, int8, rtn = get_model("dlib"), get_model("dlib-int8"), get_model("dlib-int8-2.1")
    assert get_model() is int8  # the default (FACEPRINT_MODEL unset)
    assert (dlib.name, dlib.version, dlib.dim, dlib.passes) == ("dlib", "2.0", 128, 12)
    assert (int8.name, int8.version, int8.dim, int8.passes) == ("dlib-int8", "2.2", 128, 12)
    assert (rtn.name, rtn.version) == ("dlib-int8-2.1", "2.1")  # the first int8 network, for its collections
    assert model_for_version("2.0") is dlib and model_for_version("2.2") is int8
    assert model_for_version("2.1") is rtn
    assert [m.name for m in list_models()] == ["dlib", "dlib-int8", "dlib-int8-2.1"]
    for model in (dlib, int8, rtn):  # each has its own shipped table and cohort
        assert model.calibration().calibrated and model.scorer().calibrated
        assert model.scorer().table.model_version == model.version


def test_add_list_describe_remove_mobileface(home: Path) -> None:
    info = add_mobileface()
    assert info["FaceModelVersion"] == "100.1" and info["Dimension"] == 256
    assert info["Calibration"] == "uncalibrated" and info["Validation"]["IdentityCheck"] == "ok"
    check = info["Validation"]
    assert check["SamePersonCosine"] > check["OtherPersonCosine"] + 0.05

    code, out, _ = run("models", "list", "--json")
    assert code == 0
    models = {m["Name"]: m for m in json.loads(out)["Models"]}
    assert models["dlib"]["Dimension"] == 128 and models["dlib"]["Calibration"] == "calibrated"
    assert models["faceres"]["Installed"] is False and models["faceres"]["Kind"] == "installable"
    assert "dlib+faceres" in models
    assert models["mobileface"]["FaceModelVersion"] == "100.1"
    assert models["mobileface"]["Calibration"] == "uncalibrated"

    # the copy and its folder are private to their owner
    folder = home / "models" / "mobileface"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in ("model.onnx", "model.json"):
        assert stat.S_IMODE((folder / f).stat().st_mode) == 0o600
    assert (folder / "model.onnx").read_bytes() == MOBILEFACE.read_bytes()

    code, out, _ = run("models", "describe", "mobileface", "--json")
    assert json.loads(out)["Onnx"]["Input"] == "data:0"
    code, _, err = run("models", "add", "mobileface", "--onnx", str(MOBILEFACE), *ADD)
    assert code == 2 and "already exists" in err

    code, out, _ = run("models", "remove", "mobileface", "--json")
    assert code == 0 and json.loads(out)["FaceModelVersion"] == "100.1"
    assert not folder.exists()
    code, _, err = run("models", "describe", "mobileface")
    assert code == 2 and err.count("\n") == 1 and "is not installed or added" in err
    # the same file with the same settings gets its old version back; other settings get a new one
    assert add_mobileface()["FaceModelVersion"] == "100.1"
    assert add_mobileface("mobileface-mirror", "--mirror")["FaceModelVersion"] == "100.2"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layout", "nchw"], "it looks like --layout nhwc"),
        (["--input-size", "160"], "not --input-size 160"),
    ],
)
def test_add_refuses_a_layout_or_input_size_that_does_not_match(
    home: Path, extra: list[str], message: str
) -> None:
    args = ["models", "add", "m", "--onnx", str(MOBILEFACE), "--template", "arcface5"]
    args += extra if "--input-size" in extra else ["--input-size", "112", *extra]
    code, _, err = run(*args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (home / "models" / "m").exists()


def test_add_refuses_a_corrupt_file(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(MOBILEFACE.read_bytes()[:200_000])  # a download cut short
    code, _, err = run("models", "add", "m", "--onnx", str(broken), *ADD)
    assert code == 2 and err.count("\n") == 1 and "not a loadable ONNX model" in err, err
    code, _, err = run("models", "add", "m", "--onnx", str(tmp_path / "missing.onnx"), *ADD)
    assert code == 2 and "does not exist" in err


def test_add_refuses_a_non_face_model_and_a_wrong_output_shape(home: Path, tmp_path: Path) -> None:
    code, _, err = run("models", "add", "m", "--onnx", str(tiny_model(tmp_path, 128, "colour.onnx")), *ADD)
    assert code == 2 and err.count("\n") == 1 and "not a face-identity model" in err, err
    code, _, err = run("models", "add", "m", "--onnx", str(tiny_model(tmp_path, 10, "classes.onnx")), *ADD)
    assert code == 2 and "outputs 10 values per face" in err, err
    code, _, err = run("models", "add", "dlib", "--onnx", str(MOBILEFACE), *ADD)
    assert code == 2 and "built in" in err
    assert not (home / "models" / "m").exists()


def test_arcface_aligner_puts_the_five_points_on_the_template() -> None:
    img = load_image(EXAMPLES / "obama.jpg")
    face = FaceEngine.shared().detect(img, max_faces=1)[0]
    pts = five_points(face.points68)
    assert np.allclose(pts[0], face.points68[36:42].mean(axis=0)) and np.allclose(pts[3], face.points68[48])
    aligner = ArcFace5Aligner(112)
    m = aligner.transform(face.points68)
    mapped = pts @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_112).max() < 6.0  # a similarity transform fits a real face's points
    view = aligner.cut(img.pixels, face.geometry)
    assert view.shape == (1, 112, 112, 3) and view.dtype == np.uint8
    # the aligned face is found again, centred, by the detector
    again = FaceEngine.shared().detect(np.ascontiguousarray(np.pad(view[0], ((56, 56), (56, 56), (0, 0)))))
    assert again and abs(again[0].box.center[0] - 112) < 12


def test_mobileface_vectors_are_unit_length_and_tell_people_apart(home: Path) -> None:
    add_mobileface()
    engine = FaceEngine.shared().with_model("mobileface")
    assert engine.model_version == "100.1" and engine.dim == 256
    people = ("obama", "biden", "rose_leslie")
    vectors = {p: [engine.embed_image(f) for f in sorted((KNN / "train" / p).glob("*.jpg"))] for p in people}
    for vs in vectors.values():
        for v in vs:
            assert v.shape == (256,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    same = min(float(vs[0] @ vs[1]) for vs in vectors.values())
    other = max(float(vectors[a][0] @ vectors[b][0]) for a in people for b in people if a != b)
    assert same > other


def test_calibrate_from_a_folder_of_people(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`calibrate --model NAME --data DIR`: one sub-folder per person (here LFW's own layout)."""
    monkeypatch.setenv("FACEPRINT_ACCURACY_CACHE", str(tmp_path / "cache"))
    add_mobileface()
    out = tmp_path / "cal" / "calibration.json"
    code, stdout, err = run(
        "calibrate",
        "--model",
        "mobileface",
        "--data",
        str(LFW),
        "--max-images",
        "200",
        "--output",
        str(out),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["model_version"] == "100.1" and summary["impostor_pairs"] > 0
    table = json.loads(out.read_text())
    assert table["model_version"] == "100.1" and "one folder per person" in table["provenance"]["dataset"]
    code, _, err = run("calibrate", "--model", "mobileface", "--data", str(tmp_path))
    assert code == 2 and "holds 0 people" in err
