"""`faceprint eval lfw`, `calibrate` and `audit` run as a user runs them, on small real subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceprint.accuracy.folds import CALIBRATION_FOLDS, fold_of
from faceprint.accuracy.lfw import read_images
from faceprint.calibration import table
from faceprint.scoring import Cohort


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The user's environment with a private embedding cache shared by this module's runs."""
    return {**os.environ, "FACEPRINT_ACCURACY_CACHE": str(tmp_path_factory.mktemp("accuracy-cache"))}


def faceprint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def last_json(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eval_lfw_subset(env: dict[str, str], tmp_path: Path) -> None:
    r = last_json(faceprint(env, "eval", "lfw", "--pairs-per-fold", "3", "--out", str(tmp_path), "--json"))
    assert r["pairs"] == 60 and r["genuine_pairs"] == 30
    assert len(r["fold_accuracies"]) == 10
    assert 0.9 <= r["accuracy_mean"] <= 1.0 and r["roc_auc"] > 0.95
    assert r["detected"] + r["detected_by_cnn_retry"] + r["fallback"] == r["images"]
    assert set(r["tar_at_far"]) == {"0.001", "0.0001"}
    assert (tmp_path / "lfw_roc.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "lfw_eval.json").read_text())["accuracy_mean"] == r["accuracy_mean"]


def test_calibrate_writes_a_loadable_table(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    r = last_json(faceprint(env, "calibrate", "--max-images", "150", "--output", str(out), "--json"))
    cal = table(str(out))
    prov = cal.provenance
    assert prov["command"].startswith("faceprint calibrate") and prov["impostor_pairs"] == r["impostor_pairs"]
    # the table is measured on the calibration folds' people only (the others are cohort or held out)
    images = read_images()
    calibration_images = sum(fold_of(p) in CALIBRATION_FOLDS for p in images.persons[:150])
    assert prov["images"] == 150 and 0 < prov["images_scored"] <= calibration_images
    assert prov["images_scored"] >= calibration_images - prov["images_without_face"]
    assert cal.model_version == r["model_version"]
    assert cal.false_match_rate(99) < cal.false_match_rate(80) < cal.false_match_rate(50) <= 1
    assert r["compare_threshold_fmr_1e-4"] == cal.threshold_for_fmr(1e-4)
    # the cohort is written beside the table, from cohort-fold people only, and the table names it
    cohort = Cohort.load(tmp_path / "cohort.npz")
    assert cal.score["kind"] == "s-norm" and cal.score["cohort"] == cohort.fingerprint
    assert cohort.provenance["faces"] == len(cohort) and cohort.model_version == cal.model_version
    assert table(str(tmp_path / "calibration_raw.json")).score["kind"] == "raw"


def test_audit_subset_writes_html_and_json(env: dict[str, str], tmp_path: Path) -> None:
    r = last_json(
        faceprint(env, "audit", "--limit", "40", "--bootstrap", "50", "--out", str(tmp_path), "--json")
    )
    report = json.loads((tmp_path / "audit.json").read_text())
    html = (tmp_path / "audit.html").read_text()
    for name in report["figures"].values():
        assert (tmp_path / name).stat().st_size > 5_000
        assert f'src="{name}"' in html
    assert set(r["fmr_by_gender"]) == {"all", "female", "male"}
    assert report["limit"] == 40 and report["detection"]["images"] == 40
    assert set(report["verification"]["race"]["by_threshold"]) == {"Rekognition 80", "faceprint default"}
    idn = report["identification"]
    assert idn["members"] == 40 and idn["thresholds"]["Rekognition 80"] == 80.0
    assert idn["thresholds"]["faceprint default"] > 80.0
    assert "Traceback" not in html and "faceprint audit --limit 40" in html
    # the numbers, normalised, with the raw ones beside them
    for summary in (r, r["raw"]):
        assert set(summary["heldout_tar_at_fmr"]) >= {"1e-4", "1e-5", "1e-6"}
        assert all(0 <= v <= 1 for v in summary["heldout_tar_at_fmr"].values())
        assert {"members_falsely_matched_at_default", "mates_found_at_default", "mates"} <= set(
            summary["congress"]
        )
        assert "gender_fmr_ratio_at_default" in summary
    assert report["scoring"]["normalised"]["scorer"].startswith("s-norm")
    assert r["congress"]["threshold"] == idn["thresholds"]["faceprint default"]


def test_bad_data_folder_is_a_one_line_error(env: dict[str, str], tmp_path: Path) -> None:
    for args in (
        ("eval", "lfw", "--json"),
        ("audit", "--out", str(tmp_path)),
        ("calibrate", "--output", "x.json"),
    ):
        out = faceprint({**env, "FACEPRINT_DATA_DIR": str(tmp_path / "missing")}, *args)
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
