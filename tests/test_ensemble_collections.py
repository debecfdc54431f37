"""A dlib+faceres collection through the CLI and boto3: two vectors per face, and the fused score's own
false match rates once calibrated. faceres is installed once (npm pack) for the module."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from conftest import KNN
from faceprint.cli import cli

TRAIN = KNN / "train"
PEOPLE = ("obama", "biden", "kit_harington", "rose_leslie")

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is needed to fetch faceres")


def cli_run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def probe(person: str) -> Path:
    return sorted((TRAIN / person).iterdir())[-1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """faceres installed; faceres and the ensemble calibrated on the first 200 LFW images (a quick table:
    the reported figures use all of LFW)."""
    path = tmp_path_factory.mktemp("ensemble-home")
    saved = {k: os.environ.get(k) for k in ("FACEPRINT_HOME", "FACEPRINT_ACCURACY_CACHE")}
    os.environ["FACEPRINT_HOME"] = str(path)
    os.environ["FACEPRINT_ACCURACY_CACHE"] = str(tmp_path_factory.mktemp("ensemble-cache"))
    assert cli_run("models", "install", "faceres")[0] == 0
    for model in ("faceres", "dlib+faceres"):
        code, _, err = cli_run("calibrate", "--model", model, "--max-images", "200", "--json")
        assert code == 0, err
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    from faceprint.models import forget

    forget("faceres")
    forget("dlib+faceres")


def test_ensemble_is_calibrated_with_a_weight_from_the_calibration_folds(home: Path) -> None:
    code, out, err = cli_run("models", "describe", "dlib+faceres", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["Calibration"] == "calibrated" and info["Dimension"] == 1152
    table = json.loads((home / "models" / "dlib+faceres" / "calibration.json").read_text())
    assert table["model_version"] == "4.0" and table["score"]["kind"] == "fused-s-norm"
    assert table["score"]["weight"] == info["FusionWeight"]["dlib"]
    assert [p["model"] for p in table["score"]["parts"]] == ["dlib", "faceres"]


def test_cli_indexes_and_searches_an_ensemble_collection(home: Path) -> None:
    code, out, err = cli_run("collections", "create", "ens", "--model", "dlib+faceres", "--json")
    assert code == 0 and json.loads(out)["FaceModelVersion"] == "4.0", err
    code, _, err = cli_run("index", "ens", *(str(TRAIN / p) for p in PEOPLE))
    assert code == 0, err
    code, out, err = cli_run("search", "ens", str(probe("biden")), "--threshold", "0", "--json")
    assert code == 0, err
    resp = json.loads(out)
    assert resp["FaceModelVersion"] == "4.0"
    best = resp["FaceMatches"][0]
    assert best["Face"]["ExternalImageId"].startswith("biden") and best["Similarity"] > 90
    fmrs = [m["EstimatedFalseMatchRate"] for m in resp["FaceMatches"]]
    assert all(0 < f <= 1 for f in fmrs) and fmrs == sorted(fmrs)
    # a dlib collection's FMRs come from dlib's table, not the ensemble's
    assert cli_run("collections", "create", "dl", "--model", "dlib")[0] == 0
    assert cli_run("index", "dl", *(str(TRAIN / p) for p in PEOPLE))[0] == 0
    code, out, _ = cli_run("search", "dl", str(probe("biden")), "--threshold", "0", "--json")
    dl = json.loads(out)
    assert dl["FaceModelVersion"] == "2.0"
    assert dl["FaceMatches"][0]["EstimatedFalseMatchRate"] != best["EstimatedFalseMatchRate"]


def test_boto3_indexes_and_searches_an_ensemble_collection(home: Path) -> None:
    from faceprint.server.launcher import start_server

    key = json.loads(cli_run("keys", "create", "--name", "ens", "--json")[1])["AccessKey"]
    server = start_server(home)
    try:
        client = boto3.client(
            "rekognition",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        made = client.create_collection(CollectionId="wire-ens", Tags={"faceprint:model": "dlib+faceres"})
        assert made["FaceModelVersion"] == "4.0"
        for person in PEOPLE:
            image = sorted((TRAIN / person).iterdir())[0]
            indexed = client.index_faces(
                CollectionId="wire-ens", Image={"Bytes": image.read_bytes()}, ExternalImageId=person
            )
            assert indexed["FaceModelVersion"] == "4.0"
        resp = client.search_faces_by_image(
            CollectionId="wire-ens", Image={"Bytes": probe("kit_harington").read_bytes()}
        )
        assert resp["FaceModelVersion"] == "4.0"
        assert [m["Face"]["ExternalImageId"] for m in resp["FaceMatches"]] == ["kit_harington"]
        face_id = resp["FaceMatches"][0]["Face"]["FaceId"]
        by_id = client.search_faces(CollectionId="wire-ens", FaceId=face_id, FaceMatchThreshold=0)
        assert by_id["FaceMatches"] and all(m["Face"]["FaceId"] != face_id for m in by_id["FaceMatches"])
    finally:
        server.stop()


def test_audit_compares_models_on_the_same_people(home: Path, tmp_path: Path) -> None:
    """A quick subset run (first 200 LFW images, 20 Congress members): one report, every model."""
    names = ["dlib", "faceres", "dlib+faceres"]
    code, out, err = cli_run(
        "audit", "--models", ",".join(names), "--limit", "200", "--out", str(tmp_path), "--json"
    )
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "models.json").read_text())
    assert report["models"] == names and report["heldout_people"] > 10
    for name in names:
        tar = report["tar_at_fmr"][name]
        assert set(tar) == {"1e-04", "1e-05", "1e-06"} and all(0 < v <= 1 for v in tar.values())
        genders = report["by_gender_at_default"][name]
        assert genders["threshold"] > 50 and {"female", "male"} <= set(genders)
        assert 0 <= genders["male"]["fmr"] <= 1 and 0 <= genders["male"]["fnmr"] <= 1
        enrolment = report["enrolment"][name]
        assert enrolment["enrolled"] > 0 and 0 <= enrolment["rank1_found_at_default"] <= enrolment["enrolled"]
        assert enrolment["rank1_found_at_default"] <= enrolment["rank1_without_threshold"]
        congress = report["congress_vs_lfw"][name]
        assert congress["members_searched"] > 10 and congress["gallery_size"] > 150
    code, _, err = cli_run("audit", "--models", "dlib")
    assert code == 2 and "two or more different model names" in err
