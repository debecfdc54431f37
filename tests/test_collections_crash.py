"""Durability: kill -9 real indexing processes at random moments; several processes on one home folder."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW
from faceprint.collections.service import Collections

# A real indexing process: indexes images, acknowledges each face on stdout once IndexFaces returned,
# deletes every third face (acknowledged too), and searches after each image so that the vector index
# is synced and saved to disk all the time (persist_every=1): kills land in SQLite commits, index
# saves and log trims alike.
CHILD = r"""
import json, sys
from faceprint.collections.service import Collections
home, files = sys.argv[1], sys.argv[2:]
svc = Collections(home=home)
svc.indexes.persist_every = 1
svc.indexes.trim_every = 2
for i, path in enumerate(files):
    resp = svc.index_faces(CollectionId="crash", Image=path, ExternalImageId=f"img{i}", MaxFaces=1)
    for rec in resp["FaceRecords"]:
        print(json.dumps({"added": rec["Face"]["FaceId"]}), flush=True)
        if i % 3 == 2:
            print(json.dumps({"deleting": rec["Face"]["FaceId"]}), flush=True)
            svc.delete_faces(CollectionId="crash", FaceIds=[rec["Face"]["FaceId"]])
            print(json.dumps({"deleted": rec["Face"]["FaceId"]}), flush=True)
    svc.search_faces_by_image(CollectionId="crash", Image=path)
print(json.dumps({"done": True}), flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "FACEPRINT_ONNX_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _images(n: int, seed: int) -> list[str]:
    people = sorted(p for p in os.listdir(LFW))
    rng = random.Random(seed)
    return [str(next((LFW / p).glob("*.jpg"))) for p in rng.sample(people, n)]


def _read_acks(lines: list[str], added: set[str], deleted: set[str], unsure: set[str] | None = None) -> bool:
    done = False
    for line in lines:
        msg = json.loads(line)
        added.update([msg["added"]] if "added" in msg else [])
        deleted.update([msg["deleted"]] if "deleted" in msg else [])
        # a delete asked for but not acknowledged (killed meanwhile) may or may not have happened
        if "deleting" in msg and unsure is not None:
            unsure.add(msg["deleting"])
        done = done or "done" in msg
    return done


def _assert_consistent(
    home: Path, added: set[str], deleted: set[str], unsure: frozenset[str] = frozenset()
) -> Collections:
    """Every acknowledged face is stored, every acknowledged delete is gone, and the vector index
    (loaded from the files on disk and caught up) holds exactly the faces SQLite holds."""
    svc = Collections(home=home)
    assert svc.store.integrity_check() == "ok"
    stored = {f["FaceId"] for f in svc.list_faces(CollectionId="crash")["Faces"]}
    assert added - deleted - unsure <= stored
    assert not (deleted & stored)
    coll = svc.store.collection("crash")
    assert coll.face_count == len(stored)
    entry = svc.indexes.sync(coll.id)
    rows = svc.store.list_faces(coll.id, 0, 10_000)
    if rows:
        _, ids = entry.index.search(np.zeros((1, entry.index.dim), np.float32), len(rows) + 5)
        assert sorted(i for i in ids[0] if i >= 0) == sorted(r.row for r in rows)
    return svc


@pytest.mark.slow
def test_kill_minus_9_while_indexing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Collections(home=home).create_collection(CollectionId="crash")
    rng = random.Random(9)
    images = _images(48, seed=9)
    added: set[str] = set()
    deleted: set[str] = set()
    unsure: set[str] = set()  # deletes asked for whose acknowledgement a kill may have cut off
    kills = 0
    for round_no in range(6):
        batch = images[round_no * 8 : (round_no + 1) * 8]
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), *batch], stdout=subprocess.PIPE, text=True, env=_env()
        )
        lines = []
        wanted = rng.randint(1, 6)
        while len(lines) < wanted:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(rng.uniform(0.0, 0.4))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        rest, _ = child.communicate(timeout=60)
        _read_acks(lines + rest.splitlines(), added, deleted, unsure)
        assert child.returncode in (0, -signal.SIGKILL)
        _assert_consistent(home, added, deleted, frozenset(unsure - deleted)).close()
    print(
        f"\n{kills} kill -9 in 6 rounds; {len(added)} faces acknowledged, {len(deleted)} deletes acknowledged"
    )
    assert kills >= 4 and len(added) >= 6
    # after the crashes the collection still answers correctly: the image of a stored face finds it
    svc = _assert_consistent(home, added, deleted, frozenset(unsure - deleted))
    for face in svc.list_faces(CollectionId="crash", MaxResults=3)["Faces"]:
        resp = svc.search_faces(CollectionId="crash", FaceId=face["FaceId"], FaceMatchThreshold=0)
        stored = {f["FaceId"] for f in svc.list_faces(CollectionId="crash")["Faces"]}
        assert {m["Face"]["FaceId"] for m in resp["FaceMatches"]} <= stored
    svc.close()


@pytest.mark.slow
def test_concurrent_writers_and_reader_on_one_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reader = Collections(home=home)
    reader.create_collection(CollectionId="crash")
    sets = [_images(6, seed=s) for s in (21, 22)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), *files], stdout=subprocess.PIPE, text=True, env=_env()
        )
        for files in sets
    ]
    searches = 0
    while any(c.poll() is None for c in children):
        if reader.describe_collection(CollectionId="crash")["FaceCount"]:
            resp = reader.search_faces_by_image(CollectionId="crash", Image=sets[0][0], FaceMatchThreshold=0)
            assert resp["FaceMatches"]
            searches += 1
        time.sleep(0.2)
    added: set[str] = set()
    deleted: set[str] = set()
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        assert _read_acks(out.splitlines(), added, deleted)
    assert len(added) >= 10 and len(deleted) >= 3
    svc = _assert_consistent(home, added, deleted)
    stored = {f["FaceId"] for f in svc.list_faces(CollectionId="crash")["Faces"]}
    assert stored == added - deleted
    print(f"\n2 writers + 1 reader ({searches} searches): {len(added)} added, {len(deleted)} deleted")
    svc.close()
    reader.close()
