"""`faceprint collections|index|search|faces|users` on real images: JSON shapes, tables and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLES, KNN
from faceprint.cli import cli


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


def run(home: Path, *args: str, ok: bool = True) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--home", str(home)])
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def indexed(home: Path) -> list[dict]:
    """Collection `knn` holding the 9 training images of face_recognition's knn example (5 people)."""
    run(home, "collections", "create", "knn")
    _, out, err = run(home, "index", "knn", str(KNN / "train"), "--max-faces", "1", "--json")
    responses = [json.loads(line) for line in out.splitlines()]
    assert "faces/s" in err  # the progress bar reports its rate on stderr
    return responses


def test_index_folder_prints_one_index_faces_response_per_image(indexed: list[dict]) -> None:
    assert len(indexed) == 9
    for resp in indexed:
        assert set(resp) == {"FaceRecords", "FaceModelVersion", "UnindexedFaces"}
        assert len(resp["FaceRecords"]) == 1
    names = {r["FaceRecords"][0]["Face"]["ExternalImageId"] for r in indexed}
    assert {"obama.jpg", "obama2.jpg", "biden.jpg", "john1.jpeg", "img1.jpg"} <= names


def test_collections_commands(home: Path, indexed: list[dict]) -> None:
    _, out, _ = run(home, "collections", "describe", "knn", "--json")
    desc = json.loads(out)
    assert set(desc) == {"FaceCount", "FaceModelVersion", "CollectionARN", "CreationTimestamp", "UserCount"}
    assert desc["FaceCount"] == 9
    _, out, _ = run(home, "collections", "list", "--json")
    listed = json.loads(out)
    assert listed["CollectionIds"] == ["knn"] and len(listed["FaceModelVersions"]) == 1
    _, out, _ = run(home, "collections", "describe", "knn")
    assert "FaceCount" in out and "9" in out


def test_search_json_and_table(home: Path, indexed: list[dict]) -> None:
    _, out, _ = run(home, "search", "knn", str(KNN / "test" / "obama1.jpg"), "--json")
    resp = json.loads(out)
    assert set(resp) == {
        "SearchedFaceBoundingBox",
        "SearchedFaceConfidence",
        "FaceMatches",
        "FaceModelVersion",
        "FaceMatchThreshold",
        "ExpectedFalseMatches",
    }
    assert {m["Face"]["ExternalImageId"] for m in resp["FaceMatches"]} == {"obama.jpg", "obama2.jpg"}
    _, out, _ = run(
        home, "search", "knn", str(KNN / "test" / "obama1.jpg"), "--max-faces", "1", "--threshold", "0"
    )
    assert "1 match(es)" in out and "obama" in out


def test_faces_and_users_commands(home: Path, indexed: list[dict]) -> None:
    biden = [
        r["FaceRecords"][0]["Face"]["FaceId"]
        for r in indexed
        if r["FaceRecords"][0]["Face"]["ExternalImageId"].startswith("biden")
    ]
    _, out, _ = run(home, "faces", "list", "knn", "--json")
    faces = json.loads(out)
    assert len(faces["Faces"]) == 9 and "NextToken" not in faces
    _, out, _ = run(home, "faces", "list", "knn", *biden, "--json")
    assert {f["FaceId"] for f in json.loads(out)["Faces"]} == set(biden)

    run(home, "users", "create", "knn", "joe")
    _, out, _ = run(home, "users", "associate", "knn", "joe", *biden, "--json")
    assert len(json.loads(out)["AssociatedFaces"]) == 2
    _, out, _ = run(home, "users", "list", "knn", "--json")
    assert json.loads(out) == {"Users": [{"UserId": "joe", "UserStatus": "ACTIVE"}]}
    _, out, _ = run(
        home, "users", "search", "knn", "--image", str(KNN / "test" / "obama_and_biden.jpg"), "--json"
    )
    resp = json.loads(out)
    assert set(resp) >= {"UserMatches", "FaceModelVersion", "UnsearchedFaces"}
    _, out, _ = run(home, "faces", "delete", "knn", biden[0], "--json")
    assert json.loads(out)["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    run(home, "users", "disassociate", "knn", "joe", biden[0])
    _, out, _ = run(home, "faces", "delete", "knn", biden[0], "--json")
    assert json.loads(out) == {"DeletedFaces": [biden[0]], "UnsuccessfulFaceDeletions": []}
    _, out, _ = run(home, "users", "delete", "knn", "joe")
    assert "Deleted user" in out


def test_errors_are_one_line_without_traceback(home: Path, indexed: list[dict]) -> None:
    for args in (
        ("collections", "describe", "missing"),
        ("collections", "create", "knn"),
        ("search", "knn", str(KNN / "test" / "obama1.jpg"), "--threshold", "150"),
        ("faces", "delete", "knn", "not-a-face-id"),
    ):
        code, out, err = run(home, *args, ok=False)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err


def test_real_entry_point(home: Path, indexed: list[dict], tmp_path: Path) -> None:
    """The installed `faceprint` script: an error exits non-zero with one line; listing works."""
    exe = Path(sys.executable).with_name("faceprint")
    bad = subprocess.run(
        [str(exe), "index", "nope", str(EXAMPLES / "obama.jpg"), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ResourceNotFoundException")
    good = subprocess.run(
        [str(exe), "faces", "list", "knn", "--json", "--max-results", "3", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    page = json.loads(good.stdout)
    assert good.returncode == 0 and len(page["Faces"]) == 3 and page["NextToken"]


def test_cli_searches_and_indexing_are_in_the_audit_log(home: Path, indexed: list[dict]) -> None:
    run(home, "search", "knn", str(EXAMPLES / "obama.jpg"), "--json")
    _, out, _ = run(home, "audit-log", "--verify", "--json")
    records = json.loads(out)["records"]
    ops = [r["operation"] for r in records]
    assert ops.count("IndexFaces") >= 9 and "SearchFacesByImage" in ops
    search = [r for r in records if r["operation"] == "SearchFacesByImage"][-1]
    assert search["collection"] == "knn" and search["key_id"].startswith("local:")
    assert search["threshold"] > 80 and search["matches"] == 2  # obama.jpg and obama2.jpg
