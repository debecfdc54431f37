"""Collections pinned to their face model: one home holds dlib and mobileface collections, probes are
embedded with the collection's model, vectors of another model are refused on every path, a removed
model's collection answers a clear error and keeps its faces; the `faceprint:model` tag through boto3."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from conftest import DATA, KNN
from faceprint.cli import cli
from faceprint.collections.service import Collections
from faceprint.engine import FaceEngine
from faceprint.errors import InvalidParameterError
from faceprint.models import onnx_file

MOBILEFACE = DATA.parent / "models" / "mobileface.onnx"
TRAIN = KNN / "train"
PEOPLE = ("obama", "biden", "kit_harington", "rose_leslie")
VERSIONS = {"mf": "100.1", "dl": "2.0", "d8": "2.2", "d1": "2.1"}  # d1: the first int8 model

pytestmark = pytest.mark.skipif(not MOBILEFACE.is_file(), reason="../shared/models/mobileface.onnx missing")


def cli_run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def add_mobileface() -> None:
    onnx_file.add("mobileface", MOBILEFACE, 112, "arcface5", reserved=("dlib",))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with mobileface added, collection `mf` (mobileface) and `dl` (dlib) holding the same people."""
    path = tmp_path_factory.mktemp("models-home")
    saved = os.environ.get("FACEPRINT_HOME")
    os.environ["FACEPRINT_HOME"] = str(path)
    add_mobileface()
    with Collections(path) as svc:
        assert (
            svc.create_collection(CollectionId="mf", Tags={"faceprint:model": "mobileface"})[
                "FaceModelVersion"
            ]
            == "100.1"
        )
        dl = svc.create_collection(CollectionId="dl", Tags={"faceprint:model": "dlib"})
        assert dl["FaceModelVersion"] == "2.0"
        assert svc.create_collection(CollectionId="d8")["FaceModelVersion"] == "2.2"  # the default
        d1 = svc.create_collection(CollectionId="d1", Tags={"faceprint:model": "dlib-int8-2.1"})
        assert d1["FaceModelVersion"] == "2.1"
        for person in PEOPLE:
            for image in sorted((TRAIN / person).iterdir())[:1]:
                for coll in VERSIONS:
                    resp = svc.index_faces(
                        CollectionId=coll, Image={"Bytes": image.read_bytes()}, ExternalImageId=person
                    )
                    assert resp["FaceModelVersion"] == VERSIONS[coll]
    yield path
    if saved is not None:
        os.environ["FACEPRINT_HOME"] = saved


def probe(person: str) -> dict:
    return {"Bytes": sorted((TRAIN / person).iterdir())[-1].read_bytes()}


def test_each_collection_searches_with_its_own_model(home: Path) -> None:
    with Collections(home) as svc:
        for coll, version in VERSIONS.items():
            resp = svc.search_faces_by_image(CollectionId=coll, Image=probe("obama"), FaceMatchThreshold=30)
            assert resp["FaceModelVersion"] == version
            best = resp["FaceMatches"][0]
            assert best["Face"]["ExternalImageId"] == "obama"
            assert best["Face"]["IndexFacesModelVersion"] == version
        # mobileface is not calibrated here: its false match rates are unknown, never dlib's
        mf = svc.search_faces_by_image(CollectionId="mf", Image=probe("obama"), FaceMatchThreshold=30)
        assert all(m["EstimatedFalseMatchRate"] is None for m in mf["FaceMatches"])
        assert mf["ExpectedFalseMatches"] is None and mf["Calibration"]["Status"] == "uncalibrated"
        assert "calibrate --model mobileface" in mf["Calibration"]["Note"]
        for coll in (
            "dl",
            "d8",
            "d1",
        ):  # the dlib versions answer with their own calibrated false match rates
            dl = svc.search_faces_by_image(CollectionId=coll, Image=probe("obama"))
            assert 0 < dl["FaceMatches"][0]["EstimatedFalseMatchRate"] < 1e-3 and "Calibration" not in dl


def test_a_vector_of_another_model_is_refused(home: Path) -> None:
    dlib_vector = FaceEngine.shared().with_model("dlib").embed_image(TRAIN / "obama" / "obama.jpg")
    mf_vector = FaceEngine.shared().with_model("mobileface").embed_image(TRAIN / "obama" / "obama.jpg")
    with Collections(home) as svc:
        for vector, version in ((dlib_vector, "2.0"), (dlib_vector, "100.1"), (np.zeros(256), "2.0")):
            with pytest.raises(InvalidParameterError, match="model"):
                svc.search_faces_by_vector(CollectionId="mf", Vector=vector, ModelVersion=version)
        found = svc.search_faces_by_vector(CollectionId="mf", Vector=mf_vector, ModelVersion="100.1")
        assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
        with pytest.raises(InvalidParameterError, match=r"FaceModelVersion 100\.1"):
            svc.search_faces_by_vector(CollectionId="dl", Vector=mf_vector, ModelVersion="100.1")
        # the dlib versions never mix either: close vectors, but another model's
        for coll, version in (("d8", "2.0"), ("d1", "2.2"), ("d8", "2.1")):
            with pytest.raises(InvalidParameterError, match="model"):
                svc.search_faces_by_vector(CollectionId=coll, Vector=dlib_vector, ModelVersion=version)


def test_video_matcher_refuses_tracks_of_another_model(home: Path) -> None:
    from faceprint.video.matcher import CollectionMatcher

    vector = FaceEngine.shared().embed_image(TRAIN / "obama" / "obama.jpg")
    with CollectionMatcher(home, "mf", 30) as matcher:
        assert matcher.model.name == "mobileface"
        with pytest.raises(InvalidParameterError, match="cannot be compared"):
            matcher.matches(vector, "2.2")


def test_users_of_a_mobileface_collection(home: Path) -> None:
    with Collections(home) as svc:
        faces = svc.list_faces(CollectionId="mf")["Faces"]
        obama = [f["FaceId"] for f in faces if f.get("ExternalImageId") == "obama"]
        svc.create_user(CollectionId="mf", UserId="barack")
        svc.associate_faces(CollectionId="mf", UserId="barack", FaceIds=obama, UserMatchThreshold=0)
        resp = svc.search_users_by_image(CollectionId="mf", Image=probe("obama"), UserMatchThreshold=30)
        assert resp["UserMatches"][0]["User"]["UserId"] == "barack"
        assert resp["UserMatches"][0]["EstimatedFalseMatchRate"] is None


def test_a_removed_model_gives_a_clear_error_and_loses_no_faces(home: Path) -> None:
    with Collections(home) as svc:
        before = svc.list_faces(CollectionId="mf")["Faces"]
    code, _, _ = cli_run("models", "remove", "mobileface")
    assert code == 0
    try:
        code, _, err = cli_run("search", "mf", str(TRAIN / "obama" / "obama2.jpg"))
        assert code == 2 and err.count("\n") == 1
        assert "collection 'mf'" in err and "'mobileface' (FaceModelVersion 100.1) was removed" in err
        with Collections(home) as svc:
            assert svc.list_faces(CollectionId="mf")["Faces"] == before  # nothing lost
            assert svc.search_faces_by_image(CollectionId="dl", Image=probe("obama"))["FaceMatches"]
    finally:
        add_mobileface()  # the same file and settings: version 100.1 again, the collection is back
    with Collections(home) as svc:
        resp = svc.search_faces_by_image(CollectionId="mf", Image=probe("obama"), FaceMatchThreshold=30)
        assert resp["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"


def test_cli_creates_indexes_and_searches_a_mobileface_collection(home: Path) -> None:
    code, out, err = cli_run("collections", "create", "cli-mf", "--model", "mobileface", "--json")
    assert code == 0 and json.loads(out)["FaceModelVersion"] == "100.1", err
    code, _, err = cli_run("index", "cli-mf", str(TRAIN / "biden"), str(TRAIN / "obama"))
    assert code == 0, err
    code, out, err = cli_run(
        "search", "cli-mf", str(TRAIN / "biden" / "biden2.jpg"), "--threshold", "30", "--json"
    )
    assert code == 0, err
    resp = json.loads(out)
    assert resp["FaceModelVersion"] == "100.1" and resp["FaceMatches"][0]["Similarity"] > 90
    code, _, err = cli_run("collections", "create", "bad", "--model", "nope")
    assert code == 2 and "face model 'nope' is not installed or added" in err


def test_boto3_collection_tagged_with_its_model(home: Path) -> None:
    from faceprint.server.launcher import start_server

    out = CliRunner().invoke(cli, ["keys", "create", "--name", "t", "--json"], catch_exceptions=False)
    key = json.loads(out.stdout)["AccessKey"]
    server = start_server(home)
    try:
        client = boto3.client(
            "rekognition",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        made = client.create_collection(CollectionId="wire-mf", Tags={"faceprint:model": "mobileface"})
        assert made["FaceModelVersion"] == "100.1"
        assert client.create_collection(CollectionId="wire-dl")["FaceModelVersion"] == "2.2"  # the default
        for coll in ("wire-mf", "wire-dl"):
            for person in PEOPLE:
                image = sorted((TRAIN / person).iterdir())[0]
                client.index_faces(
                    CollectionId=coll, Image={"Bytes": image.read_bytes()}, ExternalImageId=person
                )
        for coll, version in (("wire-mf", "100.1"), ("wire-dl", "2.2")):
            resp = client.search_faces_by_image(
                CollectionId=coll, Image=probe("biden"), FaceMatchThreshold=30
            )
            assert resp["FaceModelVersion"] == version
            assert resp["FaceMatches"][0]["Face"]["ExternalImageId"] == "biden"
        with pytest.raises(ClientError) as exc:
            client.create_collection(CollectionId="wire-x", Tags={"faceprint:model": "nope"})
        assert exc.value.response["Error"]["Code"] == "InvalidParameterException"
        assert "nope" in exc.value.response["Error"]["Message"]
    finally:
        server.stop()


def test_migrate_re_embeds_from_kept_crops_and_refuses_without_them(home: Path) -> None:
    code, _, _ = cli_run("collections", "create", "kept")
    assert code == 0
    code, _, err = cli_run("index", "kept", "--keep-chips", *(str(TRAIN / p) for p in PEOPLE))
    assert code == 0, err
    code, out, err = cli_run("collections", "migrate", "kept", "kept-mf", "--model", "mobileface", "--json")
    assert code == 0, err
    resp = json.loads(out)
    assert (
        resp["FaceModelVersion"] == "100.1" and resp["FacesMigrated"] == 8 and not resp["FacesNotFoundInCrop"]
    )
    with Collections(home) as svc:
        source = {f["FaceId"]: f for f in svc.list_faces(CollectionId="kept")["Faces"]}
        migrated = {f["FaceId"]: f for f in svc.list_faces(CollectionId="kept-mf")["Faces"]}
        for pair in resp["Faces"]:
            old, new = source[pair["SourceFaceId"]], migrated[pair["FaceId"]]
            assert old["ImageId"] == new["ImageId"] and old["ExternalImageId"] == new["ExternalImageId"]
            assert old["IndexFacesModelVersion"] == "2.2" and new["IndexFacesModelVersion"] == "100.1"
        found = svc.search_faces_by_image(
            CollectionId="kept-mf", Image=probe("rose_leslie"), FaceMatchThreshold=30
        )
        assert found["FaceMatches"][0]["Face"]["ExternalImageId"].startswith("img")
        assert {m["Face"]["ImageId"] for m in found["FaceMatches"][:2]} <= {
            f["ImageId"] for f in source.values() if f["ExternalImageId"] in ("img1.jpg", "img2.jpg")
        }
    # `mf` was indexed without --keep-chips: refused, with the reason, and nothing is created
    code, _, err = cli_run("collections", "migrate", "mf", "mf-dlib", "--model", "dlib")
    assert code == 2 and err.count("\n") == 1 and "4 of 4 faces were indexed without a kept crop" in err
    code, _, err = cli_run("collections", "describe", "mf-dlib")
    assert code == 2 and "ResourceNotFoundException" in err


def test_stored_video_search_embeds_tracks_with_the_collection_model(home: Path) -> None:
    from faceprint.video.service import VideoJobs
    from faceprint.video.worker import Worker

    examples = KNN.parent
    with Collections(home) as svc:
        svc.create_collection(CollectionId="ham-mf", Tags={"faceprint:model": "mobileface"})
        for name in ("lin-manuel-miranda.png", "alex-lacamoire.png", "obama.jpg", "biden.jpg"):
            svc.index_faces(CollectionId="ham-mf", Image=examples / name, ExternalImageId=name.split(".")[0])
    clip = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"
    with VideoJobs(home) as jobs:
        job = jobs.start_face_search(Video=str(clip), CollectionId="ham-mf", FaceMatchThreshold=35)["JobId"]
        Worker(home, store=jobs.store).run_once(job)
        got = jobs.get_face_search(JobId=job, MaxResults=1000)
    assert got["JobStatus"] == "SUCCEEDED", got.get("StatusMessage")
    matches = [m for p in got["Persons"] for m in p["FaceMatches"]]
    assert all(m["Face"]["IndexFacesModelVersion"] == "100.1" and m["Similarity"] >= 35 for m in matches)
    assert "lin-manuel-miranda" in {m["Face"]["ExternalImageId"] for m in matches}


def test_after_calibrate_model_searches_carry_its_own_false_match_rates(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last in this module: it calibrates mobileface (on the first LFW images, a quick table)."""
    monkeypatch.setenv("FACEPRINT_ACCURACY_CACHE", str(tmp_path / "cache"))
    code, out, err = cli_run("calibrate", "--model", "mobileface", "--max-images", "200", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    folder = home / "models" / "mobileface"
    assert summary["model_version"] == "100.1" and summary["output"] == str(folder / "calibration.json")
    table = json.loads((folder / "calibration.json").read_text())
    assert table["model_version"] == "100.1" and table["score"]["dim"] == 256
    code, out, _ = cli_run("models", "describe", "mobileface", "--json")
    assert json.loads(out)["Calibration"] == "calibrated"
    with Collections(home) as svc:
        resp = svc.search_faces_by_image(CollectionId="mf", Image=probe("obama"), FaceMatchThreshold=0)
        assert "Calibration" not in resp and resp["ExpectedFalseMatches"] > 0
        fmrs = [m["EstimatedFalseMatchRate"] for m in resp["FaceMatches"]]
        assert all(0 < f <= 1 for f in fmrs) and fmrs == sorted(fmrs)  # best match, lowest FMR
        assert resp["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
        dl = svc.search_faces_by_image(CollectionId="dl", Image=probe("obama"), FaceMatchThreshold=0)
        # each collection's FMRs come from its own model's table
        assert (
            dl["FaceMatches"][0]["EstimatedFalseMatchRate"]
            != resp["FaceMatches"][0]["EstimatedFalseMatchRate"]
        )
    # the same through the CLI and through boto3 against a server
    code, out, err = cli_run(
        "search", "mf", str(TRAIN / "obama" / "obama2.jpg"), "--threshold", "0", "--json"
    )
    assert code == 0, err
    cli_best = json.loads(out)["FaceMatches"][0]
    assert cli_best["Face"]["ExternalImageId"] == "obama" and 0 < cli_best["EstimatedFalseMatchRate"] < 1
    from faceprint.server.launcher import start_server

    made = CliRunner().invoke(cli, ["keys", "create", "--name", "t2", "--json"], catch_exceptions=False)
    key = json.loads(made.stdout)["AccessKey"]
    server = start_server(home)
    try:
        client = boto3.client(
            "rekognition",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        wire = client.search_faces_by_image(CollectionId="mf", Image=probe("obama"), FaceMatchThreshold=0)
        assert wire["FaceModelVersion"] == "100.1"
        assert wire["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
        assert wire["FaceMatches"][0]["Similarity"] == pytest.approx(
            resp["FaceMatches"][0]["Similarity"], abs=1e-3
        )
    finally:
        server.stop()
    # a dlib table copied over mobileface's is refused: a table is only used with its own model
    import shutil

    from faceprint.calibration import default_path

    shutil.copy(default_path(), folder / "calibration.json")
    code, _, err = cli_run("search", "mf", str(TRAIN / "obama" / "obama2.jpg"))
    assert code == 2 and "measured on face model '2.0', not '100.1'" in err
    (folder / "calibration.json").unlink()
    (folder / "cohort.npz").unlink()


def test_indexfaces_keeps_the_wide_crop_when_the_server_setting_is_on(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setenv("FACEPRINT_KEEP_CHIPS", "1")
    with Collections(home) as svc:
        svc.create_collection(CollectionId="crops")
        image = TRAIN / "obama" / "obama.jpg"
        face = svc.index_faces(CollectionId="crops", Image={"Bytes": image.read_bytes()})["FaceRecords"][0]
        jpeg = svc.face_chip(CollectionId="crops", FaceId=face["Face"]["FaceId"])
    crop = Image.open(io.BytesIO(jpeg))
    assert crop.width == crop.height and 100 <= crop.width <= 400
    again = FaceEngine.shared().detect(jpeg)  # the face is found again in the crop, centred, whole
    assert len(again) == 1 and abs(again[0].box.center[0] - crop.width / 2) < crop.width / 10
    assert again[0].box.width < crop.width / 2
