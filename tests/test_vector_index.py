"""The collection vector index on real LFW dlib descriptors: exact answers, deletes, persistence, the
flat -> IVF switch and the Milvus backend, each checked against numpy brute force."""

from __future__ import annotations

import csv
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import pytest

from faceprint import weights
from faceprint.collections import vector_index
from faceprint.collections.vector_index import (
    SWITCH_AT,
    FaissIndex,
    IndexFileError,
    VectorIndex,
    load_index,
    nlist_for,
    open_index,
)
from faceprint.config import data_dir
from faceprint.embedders import get_embedder
from faceprint.embedders.base import CHIP_PADDING, CHIP_SIZE

PEOPLE = 80  # LFW people with 3+ images: 2 enrolled, the 3rd is the query


@dataclass(frozen=True)
class Faces:
    ids: np.ndarray  # gallery ids (int64, deliberately sparse and unordered)
    gallery: np.ndarray  # (2 * PEOPLE, 128)
    queries: np.ndarray  # (PEOPLE, 128), a third image of each person


def _descriptor(path: Path) -> np.ndarray | None:
    """Descriptor (dlib's network, run by the default embedder) of the central HOG face, or None."""
    rgb = dlib.load_rgb_image(str(path))
    boxes = list(weights.hog_detector()(rgb, 0))
    if not boxes:
        return None
    box = min(boxes, key=lambda b: (b.center().x - 125) ** 2 + (b.center().y - 125) ** 2)  # LFW: centred
    shapes = dlib.full_object_detections()
    shapes.append(weights.shape_predictor_5()(rgb, box))
    chips = dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
    return get_embedder().embed_chips(np.asarray(chips))[0]


@pytest.fixture(scope="module")
def faces() -> Faces:
    lfw = data_dir() / "lfw"
    by_person: dict[str, list[str]] = defaultdict(list)
    with open(lfw / "images.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            by_person[row["person"]].append(row["file"])
    vecs = []
    for person in (p for p in sorted(by_person) if len(by_person[p]) >= 3):
        found = [v for f in sorted(by_person[person])[:3] if (v := _descriptor(lfw / f)) is not None]
        if len(found) == 3:
            vecs.append(found)
        if len(vecs) == PEOPLE:
            break
    vecs = np.asarray(vecs)
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.unique(rng.integers(1, 10**12, 3 * PEOPLE)))[: 2 * PEOPLE].astype(np.int64)
    return Faces(ids=ids, gallery=vecs[:, :2].reshape(-1, 128).copy(), queries=vecs[:, 2].copy())


def brute_force(ids: np.ndarray, gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple:
    """numpy exact k-NN: (L2 distances, ids)."""
    d = np.linalg.norm(queries[:, None, :].astype(np.float64) - gallery[None].astype(np.float64), axis=2)
    order = np.argsort(d, axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def approximate(faces: Faces) -> FaissIndex:
    """An IVF index over the gallery that probes only half of its lists."""
    index = FaissIndex(128, switch_at=50, nprobe=2)
    index.add(faces.ids, faces.gallery)
    assert index.kind == "ivfpq" and index.nlist == 4
    return index


def flat(faces: Faces) -> FaissIndex:
    index = FaissIndex(128)
    index.add(faces.ids, faces.gallery)
    assert index.kind == "flat"
    return index


def assert_exact_distances(index_d: np.ndarray, index_ids: np.ndarray, faces: Faces, live: set) -> None:
    """Every returned id is live and its distance is the true L2 distance, ascending."""
    pos = {int(i): n for n, i in enumerate(faces.ids)}
    for row, (dist, ids) in enumerate(zip(index_d, index_ids, strict=True)):
        real = [i for i in ids.tolist() if i >= 0]
        assert set(real) <= live
        true = [np.linalg.norm(faces.queries[row] - faces.gallery[pos[i]]) for i in real]
        np.testing.assert_allclose(dist[: len(real)], true, rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(dist[: len(real)]) >= 0)


@pytest.mark.parametrize("make", [flat, approximate], ids=["flat", "ivf"])
def test_top1_matches_numpy_brute_force(faces: Faces, make) -> None:
    index = make(faces)
    assert isinstance(index, VectorIndex) and len(index) == 2 * PEOPLE
    dist, ids = index.search(faces.queries, 5)
    bf_d, bf_ids = brute_force(faces.ids, faces.gallery, faces.queries, 5)
    assert dist.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (PEOPLE, 5)
    np.testing.assert_array_equal(ids[:, 0], bf_ids[:, 0])
    np.testing.assert_allclose(dist[:, 0], bf_d[:, 0], rtol=1e-5)
    assert_exact_distances(dist, ids, faces, set(faces.ids.tolist()))
    # real LFW: the nearest enrolled face is the same person for nearly every query
    same_person = (faces.ids.reshape(PEOPLE, 2) == ids[:, :1]).any(axis=1)
    assert same_person.mean() >= 0.95


@pytest.mark.parametrize("make", [flat, approximate], ids=["flat", "ivf"])
def test_removed_ids_are_never_returned(faces: Faces, make) -> None:
    index = make(faces)
    gone = faces.ids.reshape(PEOPLE, 2)[::2].reshape(-1)  # both images of every other person
    index.remove(gone)
    index.remove(np.asarray([1, 2, 3], dtype=np.int64))  # unknown ids: no effect
    index.remove(gone[:5])  # already removed: no effect
    live = set(faces.ids.tolist()) - set(gone.tolist())
    assert len(index) == len(live)
    dist, ids = index.search(faces.queries, len(faces.ids))  # ask for everything
    assert not np.isin(ids, gone).any()
    assert ((ids >= 0).sum(axis=1) <= len(live)).all()
    assert_exact_distances(dist, ids, faces, live)
    keep = ~np.isin(faces.ids, gone)
    enrolled = faces.queries[1::2]  # people still in the index (IVF may miss impostor-only top-1s)
    _, bf_ids = brute_force(faces.ids[keep], faces.gallery[keep], enrolled, 1)
    np.testing.assert_array_equal(index.search(enrolled, 1)[1][:, 0], bf_ids[:, 0])
    index.add(gone[:4], faces.gallery[~keep][:4])  # a removed id can come back
    assert len(index) == len(live) + 4 and index.search(faces.gallery[~keep][:1], 1)[1][0, 0] == gone[0]
    with pytest.raises(ValueError, match="already"):
        index.add(gone[:1], faces.gallery[:1])


@pytest.mark.parametrize("make", [flat, approximate], ids=["flat", "ivf"])
def test_save_load_round_trip(faces: Faces, make, tmp_path: Path) -> None:
    index = make(faces)
    index.remove(faces.ids[:7])
    path = tmp_path / "c1-42.index"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["c1-42.index"]  # no temporary file left
    loaded = load_index(path)
    assert (loaded.kind, loaded.nlist, len(loaded)) == (index.kind, index.nlist, len(index))
    d0, i0 = index.search(faces.queries, 10)
    d1, i1 = loaded.search(faces.queries, 10)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(d0, d1)
    loaded.add(faces.ids[:7], faces.gallery[:7])  # the loaded index stays writable
    assert len(loaded) == 2 * PEOPLE
    assert len(open_index(path, 128)) == len(index)
    with pytest.raises(IndexFileError):
        open_index(path, 64)
    empty = open_index(tmp_path / "absent.index", 128)
    assert len(empty) == 0 and empty.search(faces.queries[:2], 3)[1].tolist() == [[-1] * 3] * 2


def test_corrupt_or_missing_file_raises(faces: Faces, tmp_path: Path) -> None:
    path = tmp_path / "c.index"
    approximate(faces).save(path)
    good = path.read_bytes()
    for name, data in {
        "bit flip in a vector": good[: len(good) // 2]
        + bytes([good[len(good) // 2] ^ 1])
        + good[len(good) // 2 + 1 :],
        "truncated": good[: len(good) - 100],
        "trailing garbage": good + b"x",
        "not an index": b"SQLite format 3\0" + bytes(100),
        "empty": b"",
    }.items():
        bad = tmp_path / f"{name}.index"
        bad.write_bytes(data)
        with pytest.raises(IndexFileError):
            load_index(bad)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.index")


def test_switches_between_flat_and_ivf_automatically(faces: Faces) -> None:
    assert nlist_for(1_000_000) == 1024 and nlist_for(10_000_000) == 4096 and SWITCH_AT >= 10_000
    index = FaissIndex(128, switch_at=60)
    index.add(faces.ids[:40], faces.gallery[:40])
    assert index.kind == "flat"
    index.add(faces.ids[40:], faces.gallery[40:])
    assert index.kind == "ivfpq" and index.nlist > 1
    _, bf_ids = brute_force(faces.ids, faces.gallery, faces.queries, 1)
    np.testing.assert_array_equal(index.search(faces.queries, 1)[1][:, 0], bf_ids[:, 0])
    index.remove(faces.ids[:135])
    assert index.kind == "flat" and len(index) == 2 * PEOPLE - 135
    _, bf_ids = brute_force(faces.ids[135:], faces.gallery[135:], faces.queries, 1)
    np.testing.assert_array_equal(index.search(faces.queries, 1)[1][:, 0], bf_ids[:, 0])


def test_many_blocks_and_retraining(faces: Faces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw vectors spread over many storage blocks; the shortlist is re-trained as the index grows 4x."""
    monkeypatch.setattr(vector_index, "BLOCK_BITS", 2)  # 4 rows per block: 40 blocks
    index = FaissIndex(128, switch_at=30)
    index.add(faces.ids[:35], faces.gallery[:35])
    assert index.kind == "ivfpq" and index.nlist == 2
    index.add(faces.ids[35:], faces.gallery[35:])
    assert index.nlist == 4  # re-trained for 160 vectors
    _, bf_ids = brute_force(faces.ids, faces.gallery, faces.queries, 1)
    np.testing.assert_array_equal(index.search(faces.queries, 1)[1][:, 0], bf_ids[:, 0])
    gone = faces.ids[::3]
    index.remove(gone)
    keep = ~np.isin(faces.ids, gone)
    dist, ids = index.search(faces.queries, 3)
    assert not np.isin(ids, gone).any()
    assert_exact_distances(dist, ids, faces, set(faces.ids[keep].tolist()))
    index.save(tmp_path / "blocks.index")
    loaded = load_index(tmp_path / "blocks.index")
    np.testing.assert_array_equal(loaded.search(faces.queries, 3)[1], ids)


def test_concurrent_searches_never_see_removed_faces(faces: Faces) -> None:
    index = approximate(faces)
    gone = faces.ids[: PEOPLE // 2]
    errors: list[BaseException] = []
    removed = threading.Event()

    def searcher() -> None:
        try:
            for _ in range(200):
                was_removed = removed.is_set()
                _, ids = index.search(faces.queries, 5)
                assert not (was_removed and np.isin(ids, gone).any())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    index.remove(gone)
    removed.set()
    index.add(faces.ids[:3] + 1, faces.gallery[:3])
    for t in threads:
        t.join()
    assert not errors and len(index) == 2 * PEOPLE - len(gone) + 3
