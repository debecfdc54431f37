"""`faceprint detect` and `faceprint compare` run as a user runs them: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from conftest import CROWD, DATA, EXAMPLES

REKOGNITION_LANDMARKS = 30


def faceprint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_detect_json_is_rekognition_detect_faces_shape() -> None:
    out = faceprint("detect", str(EXAMPLES / "two_people.jpg"), "--json")
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout)
    assert set(response) == {"FaceDetails"}
    assert len(response["FaceDetails"]) == 2
    for face in response["FaceDetails"]:
        assert set(face) == {"BoundingBox", "Landmarks", "Pose", "Quality", "Confidence"}
        assert set(face["BoundingBox"]) == {"Width", "Height", "Left", "Top"}
        assert all(0 <= v <= 1 for v in face["BoundingBox"].values())
        assert len(face["Landmarks"]) == REKOGNITION_LANDMARKS
        assert set(face["Pose"]) == {"Roll", "Yaw", "Pitch"}
        assert set(face["Quality"]) == {"Brightness", "Sharpness"}


def test_detect_selfie_returns_the_100_largest_faces(tmp_path: Path) -> None:
    drawn = tmp_path / "boxes.png"
    out = faceprint(
        "detect", str(CROWD / "tinyfaces_worlds_largest_selfie.jpg"), "--json", "--draw", str(drawn)
    )
    assert out.returncode == 0, out.stderr
    faces = json.loads(out.stdout)["FaceDetails"]
    assert len(faces) == 100
    areas = [f["BoundingBox"]["Width"] * f["BoundingBox"]["Height"] for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert Image.open(drawn).size == (2048, 1150)


def test_detect_table_and_max_faces() -> None:
    out = faceprint("detect", str(CROWD / "retinaface_test_crowd.jpg"), "--max-faces", "5")
    assert out.returncode == 0, out.stderr
    assert "5 face(s)" in out.stdout


def test_compare_json_is_rekognition_compare_faces_shape() -> None:
    out = faceprint("compare", str(EXAMPLES / "obama.jpg"), str(EXAMPLES / "two_people.jpg"), "--json")
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout)
    assert {"SourceImageFace", "FaceMatches", "UnmatchedFaces"} <= set(response)
    assert len(response["FaceMatches"]) + len(response["UnmatchedFaces"]) == 2
    for match in response["FaceMatches"]:
        assert 0 <= match["Similarity"] <= 100 and 0 < match["EstimatedFalseMatchRate"] <= 1


def test_compare_threshold_80_is_available_and_audited(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEPRINT_HOME", str(tmp_path))
    out = faceprint(
        "compare", str(EXAMPLES / "obama.jpg"), str(EXAMPLES / "obama2.jpg"), "--json", "--threshold", "80"
    )
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout)
    assert response["SimilarityThreshold"] == 80
    assert len(response["FaceMatches"]) == 1
    log = json.loads(faceprint("audit-log", "--json").stdout)["records"]
    assert [(r["operation"], r["threshold"], r["matches"]) for r in log] == [("CompareFaces", 80.0, 1)]


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((EXAMPLES / "obama.jpg").read_bytes()[:5000])
    cases = {
        str(truncated): "InvalidImageFormatException",
        str(DATA / "lfw" / "pairs.txt"): "InvalidImageFormatException",
        str(tmp_path / "missing.jpg"): "InvalidParameterException",
    }
    for path, code in cases.items():
        out = faceprint("detect", path)
        assert out.returncode == 2, path
        assert out.stderr.count("\n") == 1 and code in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
