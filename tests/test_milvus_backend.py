"""The Milvus vector backend on a real Milvus standalone server (milvus 2.3.5, started once per session).

Real LFW faces go through the service into Milvus: searches match the FAISS backend's answers (the
cohort-normalised re-ranking runs on Milvus' shortlist), the Milvus collection has a deterministic name and
a real IVF_PQ index, nothing is written under the home folder, deletes reach Milvus. Then the server is
killed (SIGKILL) and restarted once: searches fail fast with a modeled error, an IndexFaces is not
acknowledged (nor kept), a delete is kept and reaches Milvus when it returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from conftest import LFW, once_back
from faceprint.collections.milvus_index import MilvusVectors, VectorIndexUnavailableError, collection_name
from faceprint.collections.service import Collections

T = TypeVar("T")
PEOPLE = sorted(p.name for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").exists())[:12]


def _img(person: str, n: int) -> Path:
    return LFW / person / f"{person}_{n:04d}.jpg"


def _enrol(svc: Collections) -> dict[str, str]:
    svc.create_collection(CollectionId="people")
    out = {}
    for person in PEOPLE:
        resp = svc.index_faces(
            CollectionId="people", Image=_img(person, 1), ExternalImageId=person, MaxFaces=1
        )
        out[person] = resp["FaceRecords"][0]["Face"]["FaceId"]
    return out


def _search(svc: Collections, person: str) -> list[tuple[str, float]]:
    resp = svc.search_faces_by_image(
        CollectionId="people", Image=_img(person, 2), FaceMatchThreshold=0, MaxFaces=5
    )
    return [(m["Face"]["FaceId"], round(m["Similarity"], 4)) for m in resp["FaceMatches"]]


def _when_back(call: Callable[[], T]) -> T:
    """`call` as soon as it stops failing with VectorIndexUnavailableError: a restarted server answers
    only once it has reloaded its collections."""
    return once_back(call, VectorIndexUnavailableError, within=180.0, pause=1.0)


def _client(uri: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, timeout=10)


def test_vectors_live_in_milvus_and_search_like_faiss(milvus_home: Path, tmp_path: Path, milvus) -> None:
    svc = Collections(home=milvus_home)
    assert isinstance(svc.indexes, MilvusVectors)
    faces = _enrol(svc)
    coll = svc.store.collection("people")
    name = collection_name(os.environ["FACEPRINT_MILVUS_PREFIX"], coll.id, coll.model_version)
    client = _client(milvus.uri)
    assert name in client.list_collections()
    index = client.describe_index(name, client.list_indexes(name)[0])
    assert index["index_type"] == "IVF_PQ" and index["metric_type"] == "L2"  # a real server builds it
    assert svc.indexes.count(coll.id, coll.model_version) == len(PEOPLE)
    assert not list(milvus_home.rglob("*.index"))  # no local pointer or cache files

    os.environ["FACEPRINT_VECTOR_BACKEND"] = "faiss"  # the same faces in the embedded backend
    try:
        local = Collections(home=tmp_path / "faiss", engine=svc.engine)
        local_faces = _enrol(local)
    finally:
        os.environ["FACEPRINT_VECTOR_BACKEND"] = "milvus"
    to_local = {faces[p]: local_faces[p] for p in PEOPLE}
    for person in PEOPLE[:6]:
        found = _search(svc, person)
        assert found and found[0][0] == faces[person]  # the true mate comes first
        assert [(to_local[f], s) for f, s in found] == _search(local, person)  # same re-ranked answer

    # a second node (another process's view: a fresh service on the same store) finds what A stored
    other = Collections(home=milvus_home, engine=svc.engine)
    assert _search(other, PEOPLE[0])[0][0] == faces[PEOPLE[0]]
    gone = faces[PEOPLE[0]]
    assert other.delete_faces(CollectionId="people", FaceIds=[gone])["DeletedFaces"] == [gone]
    assert svc.indexes.count(coll.id, coll.model_version) == len(PEOPLE) - 1  # applied in Milvus
    assert gone not in [f for f, _ in _search(svc, PEOPLE[0])]
    meta = f"{os.environ['FACEPRINT_MILVUS_PREFIX']}_meta"  # the shared watermark: the log applied so far

    def mark() -> list[dict]:
        return client.query(
            meta, filter=f'name == "{name}"', output_fields=["seq"], consistency_level="Strong"
        )

    assert mark()[0]["seq"] == svc.store.collection("people").last_seq
    svc.delete_collection(CollectionId="people")
    assert name not in client.list_collections() and not mark()
    local.close()
    other.close()
    svc.close()


def test_milvus_down_fails_fast_refuses_writes_and_catches_up(milvus_home: Path, milvus) -> None:
    svc = Collections(home=milvus_home)
    faces = _enrol(svc)
    coll = svc.store.collection("people")
    milvus.kill()
    try:
        started = time.monotonic()
        with pytest.raises(VectorIndexUnavailableError, match="Milvus"):
            _search(svc, PEOPLE[1])
        assert time.monotonic() - started < 10  # an error, not a hang
        extra = _img(PEOPLE[0], 2)
        with pytest.raises(VectorIndexUnavailableError):
            svc.index_faces(CollectionId="people", Image=extra, ExternalImageId="while-down", MaxFaces=1)
        listed = svc.list_faces(CollectionId="people", MaxResults=100)["Faces"]
        assert len(listed) == len(PEOPLE) and "while-down" not in {f.get("ExternalImageId") for f in listed}
        gone = faces[PEOPLE[1]]  # a delete is final in the store at once
        assert svc.delete_faces(CollectionId="people", FaceIds=[gone])["DeletedFaces"] == [gone]
    finally:
        milvus.start()
    assert svc.describe_collection(CollectionId="people")["FaceCount"] == len(PEOPLE) - 1
    found = _when_back(lambda: _search(svc, PEOPLE[2]))  # catches up first: the delete reaches Milvus
    assert found[0][0] == faces[PEOPLE[2]]
    assert svc.indexes.count(coll.id, coll.model_version) == len(PEOPLE) - 1
    resp = svc.index_faces(CollectionId="people", Image=extra, ExternalImageId="after", MaxFaces=1)
    assert _search(svc, PEOPLE[0])[0][0] in {faces[PEOPLE[0]], resp["FaceRecords"][0]["Face"]["FaceId"]}
    assert svc.indexes.count(coll.id, coll.model_version) == len(PEOPLE)
    svc.close()
