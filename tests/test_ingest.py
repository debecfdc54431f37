"""The pipelined indexer on real images: order, a bad image among good ones, and durability under kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, LFW
from faceprint.audit import AuditLog
from faceprint.collections.ingest import Indexer
from faceprint.collections.service import Collections
from faceprint.errors import InvalidImageFormatError, InvalidParameterError


def _lfw(n: int, start: int = 0) -> list[Path]:
    people = sorted(os.listdir(LFW))[start::40][:n]
    return [sorted((LFW / p).glob("*.jpg"))[0] for p in people]


def _request(path: Path | str, name: str = "c") -> dict:
    return {"CollectionId": name, "Image": path, "ExternalImageId": Path(path).name}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Collections:
    svc = Collections(home=tmp_path_factory.mktemp("ingest"))
    svc.create_collection(CollectionId="c")
    svc.create_collection(CollectionId="one-by-one")
    yield svc
    svc.close()


def _faces(resp: dict) -> list[tuple]:
    return [tuple(round(v, 6) for v in r["Face"]["BoundingBox"].values()) for r in resp["FaceRecords"]]


def test_results_keep_input_order_and_match_one_image_at_a_time(svc: Collections) -> None:
    files = [*_lfw(8), EXAMPLES / "two_people.jpg"]
    batches = list(Indexer(svc, workers=2, batch_chips=40).run(_request(f) for f in files))
    assert len(batches) == 3  # 10 faces of 12 chips: 4 + 4 + 2, so order is the pipeline's doing
    results = [r for b in batches for r in b]
    assert [r.position for r in results] == list(range(len(files)))
    pairs = []
    for result, path in zip(results, files, strict=True):
        assert result.error is None
        one = svc.index_faces(**_request(path, "one-by-one"))
        assert _faces(result.response) == _faces(one)
        assert {r["Face"]["ExternalImageId"] for r in result.response["FaceRecords"]} <= {path.name}
        pairs += zip(result.response["FaceRecords"], one["FaceRecords"], strict=True)
    assert len(results[-1].response["FaceRecords"]) == 2  # two_people.jpg
    # the same vectors as one image at a time: batch composition does not change them
    for piped, alone in pairs:
        got = svc.store.face(svc.store.collection("c").id, piped["Face"]["FaceId"], embedding=True)
        want = svc.store.face(svc.store.collection("one-by-one").id, alone["Face"]["FaceId"], embedding=True)
        assert np.abs(got.embedding - want.embedding).max() < 1e-5


def test_a_bad_image_is_reported_in_its_place_and_blocks_nothing(svc: Collections, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((EXAMPLES / "obama.jpg").read_bytes()[:600])  # a real JPEG cut short
    good = _lfw(3, start=7)
    requests = [
        _request(good[0]),
        _request(broken),
        _request(tmp_path / "missing.jpg"),
        *map(_request, good[1:]),
    ]
    requests.insert(2, {**_request(good[1]), "MaxFaces": 0})  # refused by validation
    results = list(Indexer(svc, workers=2, batch_chips=12).index(requests))
    assert [r.position for r in results] == list(range(len(requests)))
    assert isinstance(results[1].error, InvalidImageFormatError)
    assert isinstance(results[2].error, InvalidParameterError)
    assert isinstance(results[3].error, InvalidParameterError)
    for i in (0, 4, 5):
        assert results[i].error is None and len(results[i].response["FaceRecords"]) == 1


def test_concurrent_index_faces_calls_share_batches_and_each_get_their_own_answer(svc: Collections) -> None:
    files = _lfw(6, start=3)
    answers: dict[int, dict] = {}

    def call(i: int) -> None:
        answers[i] = svc.index_faces(**_request(files[i]))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, path in enumerate(files):
        assert [r["Face"]["ExternalImageId"] for r in answers[i]["FaceRecords"]] == [path.name]


# `faceprint index --json` killed with SIGKILL once it has acknowledged some images: every image it printed
# is stored, with the FaceIds it printed, and audited.
@pytest.mark.slow
def test_kill_minus_9_loses_no_acknowledged_image(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Collections(home=home).create_collection(CollectionId="crash")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, path in enumerate(_lfw(60, start=11)):
        (folder / f"{i:03d}_{path.name}").symlink_to(path)
    env = {**os.environ, "FACEPRINT_HOME": str(home), "FACEPRINT_ONNX_THREADS": "1"}
    exe = [sys.executable, "-m", "faceprint", "index", "crash", str(folder), "--json"]
    child = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    acked = [json.loads(child.stdout.readline()) for _ in range(10)]
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()  # not communicate(): it would skip what readline() has buffered
    child.wait(timeout=60)
    acked += [json.loads(line) for line in rest.split("\n")[:-1]]  # a line cut by the kill is no ack
    assert child.returncode == -signal.SIGKILL and 10 <= len(acked) < 60
    svc = Collections(home=home)
    stored = {f["FaceId"]: f["ExternalImageId"] for f in svc.list_faces(CollectionId="crash")["Faces"]}
    for resp in acked:
        for rec in resp["FaceRecords"]:
            assert stored[rec["Face"]["FaceId"]] == rec["Face"]["ExternalImageId"]
    audit = AuditLog.for_home(home)
    audited = {
        i for r in audit.records() if r.operation == "IndexFaces" for i in json.loads(r.detail)["face_ids"]
    }
    assert {rec["Face"]["FaceId"] for resp in acked for rec in resp["FaceRecords"]} <= audited
    assert audit.verify().ok
    audit.close()
    svc.close()
