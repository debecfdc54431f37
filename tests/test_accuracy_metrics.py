"""Pair scoring, metrics and the calibration table, checked against brute force on real LFW embeddings."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from faceprint.accuracy import lfw, metrics
from faceprint.accuracy.calibrate import build_table
from faceprint.accuracy.embeddings import DETECTED, RETRIED, embed_dataset
from faceprint.accuracy.pairs import BINS, pair_similarity, score_all_pairs, to_bins
from faceprint.calibration import CalibrationTable
from faceprint.engine import FaceEngine
from faceprint.similarity import similarity

PEOPLE = ["Kofi_Annan", "Serena_Williams", "Junichiro_Koizumi", "Laura_Bush", "Hans_Blix", "Tiger_Woods"]
PER_PERSON = 7


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch):
    """42 real LFW images of 6 people, embedded by the default engine into a temporary cache."""
    monkeypatch_module.setenv("FACEPRINT_ACCURACY_CACHE", str(tmp_path_factory.mktemp("acc-cache")))
    keys = [lfw.image_path(p, k) for p in PEOPLE for k in range(1, PER_PERSON + 1)]
    es = embed_dataset(FaceEngine.shared(), "lfw", lfw.lfw_root(), keys, policy="central", fallback=True)
    ids = np.repeat(np.arange(len(PEOPLE)), PER_PERSON)
    return es, ids


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_cache_is_reused(embedded) -> None:
    es, _ = embedded
    again = embed_dataset(
        FaceEngine.shared(), "lfw", lfw.lfw_root(), es.keys, policy="central", fallback=True
    )
    assert again.computed == 0
    np.testing.assert_array_equal(again.vectors, es.vectors)
    assert (es.status == DETECTED).sum() >= len(es.keys) - 2


def test_faces_the_default_detector_misses_get_a_second_look(embedded) -> None:
    """Two LFW images where `auto` finds no central face: dlib's CNN detector finds one (RETRIED), and its
    descriptor matches another photo of the same man better than any photo of someone else."""
    missed = [lfw.image_path("Colin_Montgomerie", 4), lfw.image_path("Luis_Horna", 2)]
    mates = [lfw.image_path("Colin_Montgomerie", 1), lfw.image_path("Luis_Horna", 4)]
    es = embed_dataset(
        FaceEngine.shared(), "lfw", lfw.lfw_root(), missed + mates, policy="central", fallback=True
    )
    assert es.status.tolist() == [RETRIED, RETRIED, DETECTED, DETECTED]
    assert np.allclose(np.linalg.norm(es.vectors, axis=1), 1.0, atol=1e-5)
    d = np.linalg.norm(es.vectors[:2, None] - es.vectors[None, 2:], axis=2)
    assert d[0, 0] < d[0, 1] and d[1, 1] < d[1, 0]


def test_block_scoring_matches_brute_force(embedded) -> None:
    es, ids = embedded
    groups = np.where(ids < 2, 0, 1)  # two groups of people
    ps = score_all_pairs(es.vectors, ids, groups, ["a", "b"], record_from=0, block=5)
    gen, imp, imp_a = np.zeros(BINS, int), np.zeros(BINS, int), np.zeros(BINS, int)
    for i, j in combinations(range(len(ids)), 2):
        b = to_bins(np.array([similarity(float(np.linalg.norm(es.vectors[i] - es.vectors[j])))]))[0]
        if ids[i] == ids[j]:
            gen[b] += 1
        else:
            imp[b] += 1
            if groups[i] == groups[j] == 0:
                imp_a[b] += 1
    # blocks compute distances in float32: a score on a bin edge may land one 0.01 bin lower or higher
    for got, want in ((ps.genuine_hist, gen), (ps.impostor_hist, imp), (ps.impostor_hist_by_group[0], imp_a)):
        assert got.sum() == want.sum()
        assert np.abs(np.cumsum(got - want)).max() <= 2
    assert len(ps.high_i) == ps.n_impostor  # record_from=0 keeps every impostor pair
    assert ps.n_genuine == len(PEOPLE) * PER_PERSON * (PER_PERSON - 1) // 2


def _pair_scores(es, ids):
    a, b = np.array(list(combinations(range(len(ids)), 2))).T
    return pair_similarity(es.vectors, a, b), ids[a] == ids[b]


def test_roc_auc_and_tar_match_brute_force(embedded) -> None:
    scores, same = _pair_scores(*embedded)
    gen, imp = scores[same], scores[~same]
    brute = np.mean([(g > i) + 0.5 * (g == i) for g in gen for i in imp])
    assert metrics.roc_auc(gen, imp) == pytest.approx(brute)
    tar, t = metrics.tar_at_far(gen, imp, 0.01)
    assert np.mean(imp >= t) <= 0.01
    assert tar == pytest.approx(np.mean(gen >= t))
    far, tpr, _ = metrics.roc_curve(gen, imp)
    assert far[0] == 0 and far[-1] == 1 and tpr[-1] == 1 and np.all(np.diff(far) >= 0)


def test_kfold_threshold_is_the_best_on_training_folds(embedded) -> None:
    scores, same = _pair_scores(*embedded)
    t = metrics.best_threshold(scores, same)
    best = max(np.mean((scores >= c) == same) for c in np.unique(scores))
    assert np.mean((scores >= t) == same) == pytest.approx(best)
    folds = np.arange(len(scores)) % 10
    res = metrics.kfold_accuracy(scores, same, folds)
    assert len(res.accuracies) == 10 and 0.8 < res.mean <= 1.0 and res.std >= 0


def test_bootstrap_and_wilson_intervals(embedded) -> None:
    es, ids = embedded
    ps = score_all_pairs(es.vectors, ids, record_from=0)
    threshold_bin = int(np.percentile(ps.high_bin, 95))
    hi = ps.high_bin >= threshold_bin
    point = hi.sum() / ps.n_impostor
    reps = metrics.bootstrap_fmr(np.bincount(ids), ids[ps.high_i[hi]], ids[ps.high_j[hi]], n_boot=300)
    lo, up = metrics.percentile_interval(reps)
    assert lo <= point <= up and np.isfinite(reps).all()
    lo, up = metrics.wilson_interval(3, 40)
    assert 0 < lo < 3 / 40 < up < 1
    assert metrics.wilson_interval(0, 40)[0] == 0.0


def test_calibration_table_from_real_pairs(embedded, tmp_path: Path) -> None:
    es, ids = embedded
    ps = score_all_pairs(es.vectors, ids)
    doc = build_table(ps, "test-model", {"command": "test"})
    table = CalibrationTable.from_json(doc)
    fmr = np.array(doc["fmr"])
    assert np.all(np.diff(fmr) <= 0) and fmr[0] == 1.0
    # below the tail the table is the measured share of impostor pairs at or above the score
    s = 60.0
    measured = ps.impostor_hist[int(s * 100) :].sum() / ps.n_impostor
    assert table.false_match_rate(s) == pytest.approx(measured, rel=1e-3)
    # the tail starts where the measurement stops and keeps falling
    t = table.tail_from
    assert table.false_match_rate(t + 5) < table.false_match_rate(t)
    assert table.false_match_rate(t) == pytest.approx(table.false_match_rate(t - 1e-9), rel=1e-9)
    assert table.false_match_rate(t) <= table.false_match_rate(t - 0.5)
    assert doc["provenance"]["tail_fit"]["fit_points"] >= 4
    assert table.threshold_for_fmr(1e-4) > t
