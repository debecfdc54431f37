"""Cohort-normalised scoring on real faces: the S-norm definition, collections stored before the upgrade,
re-ranking, cohort files of another model, and `faceprint cohort build`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import KNN, LFW
from faceprint import scoring
from faceprint.collections.service import Collections
from faceprint.engine import FaceEngine
from faceprint.operations import compare_faces

PEOPLE = ["Tony_Blair", "Colin_Powell", "Gloria_Macapagal_Arroyo", "Jean_Chretien"]


def _lfw(person: str, n: int) -> Path:
    return LFW / person / f"{person}_{n:04d}.jpg"


@pytest.fixture(scope="module")
def scorer() -> scoring.Scorer:
    return scoring.default_scorer()


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    engine = FaceEngine.shared()
    return {f"{p}/{n}": engine.embed_image(_lfw(p, n)) for p in PEOPLE for n in (1, 2)}


def test_scorer_is_adaptive_s_norm_of_the_cosine(scorer: scoring.Scorer, vectors: dict) -> None:
    a, b = vectors["Tony_Blair/1"], vectors["Colin_Powell/1"]
    cohort = scorer.cohort.vectors.astype(np.float64)

    def stats(v: np.ndarray) -> tuple[float, float]:
        top = np.sort(cohort @ (v / np.linalg.norm(v)))[-scorer.top_k :]
        return top.mean(), top.std()

    (ma, sa), (mb, sb) = stats(a), stats(b)
    s = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    z = ((s - ma) / sa + (s - mb) / sb) / 2
    assert scorer.pair(a, b) == pytest.approx(scorer.table.similarity_map.percent(z), abs=1e-3)
    assert scorer.pair(a, b) == pytest.approx(scorer.pair(b, a), abs=1e-9)
    # a second photo of the same man outscores a different man, and means a lower false match rate
    same = scorer.pair(a, vectors["Tony_Blair/2"])
    assert same > scorer.pair(a, b) and scorer.false_match_rate(same) < scorer.false_match_rate(
        scorer.pair(a, b)
    )
    assert len(scorer.cohort) >= scorer.top_k and scorer.cohort.model_version == "2.2"


def test_compare_faces_reports_the_normalised_similarity(scorer: scoring.Scorer) -> None:
    engine = FaceEngine.shared()
    src, tgt = _lfw("Tony_Blair", 1), _lfw("Tony_Blair", 2)
    resp = compare_faces(src, tgt, similarity_threshold=0)
    expected = scorer.pair(engine.embed_image(src), engine.embed_image(tgt))
    assert resp["FaceMatches"][0]["Similarity"] == pytest.approx(expected, abs=1e-3)
    assert resp["FaceMatches"][0]["EstimatedFalseMatchRate"] == pytest.approx(
        scorer.false_match_rate(expected)
    )


def _index(svc: Collections, name: str) -> list[dict]:
    svc.create_collection(CollectionId=name)
    for p in PEOPLE:
        svc.index_faces(CollectionId=name, Image=_lfw(p, 1), ExternalImageId=p, MaxFaces=1)
    return [
        svc.search_faces_by_image(CollectionId=name, Image=_lfw(p, 2), FaceMatchThreshold=0)["FaceMatches"]
        for p in PEOPLE
    ]


def _pairs(matches: list[list[dict]]) -> list[list[tuple[str, float]]]:
    return [[(m["Face"]["ExternalImageId"], round(m["Similarity"], 4)) for m in ms] for ms in matches]


def test_a_collection_stored_before_cohort_normalisation_keeps_working(tmp_path: Path) -> None:
    """A database without the cohort columns (as written before the upgrade) opens, gains them, and
    searches give exactly the results of a collection indexed with the upgrade; nothing is re-indexed."""
    home = tmp_path / "home"
    with Collections(home=home) as svc:
        fresh = _index(svc, "old")
    db = home / "collections" / "faceprint.db"
    with sqlite3.connect(db) as conn:  # back to the schema of the first release
        for column in ("cohort_mu", "cohort_sd", "cohort_tag"):
            conn.execute(f"ALTER TABLE faces DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value=1 WHERE key='schema_version'")  # the first release's version
        assert "cohort_mu" not in {r[1] for r in conn.execute("PRAGMA table_info(faces)")}
    with Collections(home=home) as svc:
        old = [
            svc.search_faces_by_image(CollectionId="old", Image=_lfw(p, 2), FaceMatchThreshold=0)[
                "FaceMatches"
            ]
            for p in PEOPLE
        ]
        assert svc.describe_collection(CollectionId="old")["FaceCount"] == len(PEOPLE)
        face_id = old[0][0]["Face"]["FaceId"]
        by_face = svc.search_faces(CollectionId="old", FaceId=face_id, FaceMatchThreshold=0)
    for got, want in zip(_pairs(old), _pairs(fresh), strict=True):  # same faces, same order, same scores
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-3)
    assert [m[0]["Face"]["ExternalImageId"] for m in old] == PEOPLE  # each person's mate ranks first
    assert len(by_face["FaceMatches"]) == len(PEOPLE) - 1
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT cohort_mu, cohort_tag FROM faces").fetchall()
    assert stored and all(mu is None and tag is None for mu, tag in stored)  # computed, never rewritten


def test_search_re_ranks_by_the_normalised_score(tmp_path: Path, scorer: scoring.Scorer) -> None:
    with Collections(home=tmp_path / "home") as svc:
        results = _index(svc, "rerank")
        engine = svc.engine
        gallery = np.stack([engine.embed_image(_lfw(p, 1)) for p in PEOPLE])
        probe = engine.embed_image(_lfw(PEOPLE[2], 2))
        exhaustive = scorer.scores(probe, None, gallery, None)
        got = {m["Face"]["ExternalImageId"]: m["Similarity"] for m in results[2]}
        assert [m["Face"]["ExternalImageId"] for m in results[2]] == [
            PEOPLE[i] for i in np.argsort(-exhaustive)
        ]
        for person, score in zip(PEOPLE, exhaustive, strict=True):
            assert got[person] == pytest.approx(score, abs=1e-3)
        # stored statistics are the scorer's, computed at index time
        rows = svc.store.list_faces(svc.store.collection("rerank").id, 0, 10)
        assert all(r.cohort is not None and r.cohort_tag == scorer.tag for r in rows)


def test_a_cohort_of_another_model_is_refused(tmp_path: Path, monkeypatch, scorer) -> None:
    with Collections(home=tmp_path / "home") as svc:
        _index(svc, "c")
    for version, dim in (("1.1", 128), ("2.2", 64)):
        vectors = np.random.default_rng(0).standard_normal((300, dim)).astype(np.float32)
        path = scoring.Cohort.from_vectors(vectors, version, {}).save(
            tmp_path / f"cohort-{version}-{dim}.npz"
        )
        monkeypatch.setenv("FACEPRINT_COHORT", str(path))
        scoring.clear_cache()
        try:
            with (
                pytest.raises(scoring.CohortError, match=str(path)),
                Collections(home=tmp_path / "home") as svc,
            ):
                svc.search_faces_by_image(CollectionId="c", Image=_lfw(PEOPLE[0], 2))
            env = {**os.environ, "FACEPRINT_HOME": str(tmp_path / "home")}
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "faceprint",
                    "compare",
                    str(KNN / "train" / "biden" / "biden.jpg"),
                    str(KNN / "train" / "biden" / "biden.jpg"),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=False,
            )
            assert out.returncode == 2 and "Traceback" not in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr
        finally:
            monkeypatch.delenv("FACEPRINT_COHORT")
            scoring.clear_cache()
    bad = tmp_path / "not-a-cohort.npz"
    bad.write_bytes(b"no")
    with pytest.raises(scoring.CohortError, match="not a faceprint cohort"):
        scoring.Cohort.load(bad)


def test_cohort_build_cli(tmp_path: Path) -> None:
    """A folder of face images per person becomes a cohort file the scorer accepts; too few faces is a
    one-line error."""
    few = tmp_path / "few"
    for p in PEOPLE:
        (few / p).mkdir(parents=True)
        (few / p / "a.jpg").write_bytes(_lfw(p, 1).read_bytes())
    run = [sys.executable, "-m", "faceprint", "cohort", "build"]
    out = subprocess.run(
        [*run, str(few), "--output", str(tmp_path / "few.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 2 and "at least 400" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    folder = tmp_path / "people"
    people = sorted(d.name for d in LFW.iterdir())[:405]
    for p in people:
        (folder / p).mkdir(parents=True)
        (folder / p / "1.jpg").symlink_to(_lfw(p, 1))
    target = tmp_path / "mine.npz"
    out = subprocess.run(
        [*run, str(folder), "--output", str(target), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    cohort = scoring.Cohort.load(target)
    assert 400 <= len(cohort) <= 405 and cohort.model_version == "2.2" and cohort.dim == 128
    assert cohort.provenance["people"] == len(cohort) and (target.stat().st_mode & 0o077) == 0
    custom = scoring.Scorer("2.2", scoring.default_scorer().table, cohort)
    custom.check("2.2", 128)
    a, b = (FaceEngine.shared().embed_image(_lfw("Tony_Blair", n)) for n in (1, 2))
    assert custom.pair(a, b) > 50


def test_congress_gallery_faces_of_cohort_people_are_scored_without_their_person(
    scorer: scoring.Scorer, vectors: dict
) -> None:
    """The all-LFW gallery of the Congress search holds the shipped cohort's own faces (real LFW vectors):
    each gets statistics against the cohort without its person, the way a deployment's gallery (never in
    the cohort) has them; faces of people outside the cohort keep the scorer's statistics."""
    from faceprint.accuracy.congress import gallery_stats

    cohort = scorer.cohort.unit_vectors
    keys = sorted(vectors)
    gallery = scoring.unit(np.stack([vectors[k] for k in keys]))
    persons = np.array([k.split("/")[0] for k in keys])
    in_cohort = (gallery @ cohort.T).max(axis=1) >= 0.99999
    assert 0 < in_cohort.sum() < len(keys)  # these photos include cohort faces and faces outside it
    got, naive = gallery_stats(scorer, gallery, persons), scorer.stats(gallery)
    for i in np.flatnonzero(in_cohort):
        own = ((gallery[persons == persons[i]] @ cohort.T) >= 0.99999).any(axis=0)
        want = scoring.cohort_stats(gallery[i : i + 1], cohort[~own], scorer.top_k, cohort_is_unit=True)
        assert np.allclose(got[i], want[0], atol=1e-6)
        assert got[i, 1] < naive[i, 1]  # finding itself in the cohort inflated its standard deviation
    outside = ~np.isin(persons, persons[in_cohort])
    assert outside.any() and np.array_equal(got[outside], naive[outside])
