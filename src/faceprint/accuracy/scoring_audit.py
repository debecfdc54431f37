"""Raw against cohort-normalised scoring on LFW's held-out folds: the audit's side-by-side table.

For each scorer (raw: the distance map with a table measured here on the calibration folds; normalised:
the shipped scorer, whose table `faceprint calibrate` measured on the same folds) and only on people of
the held-out folds: TAR at FMR 1e-3..1e-6 over all pairs; per-gender FMR and FNMR at the 1:1 default;
FNMR at the 1:N default for 10,000 faces; and the new user's test, 150 people enrolled with one photo each,
searched with another photo, and 100 people who are not enrolled searched too, at the default for 150.
"""

from __future__ import annotations

import hashlib

import numpy as np

from faceprint.accuracy import folds
from faceprint.accuracy.normalised import AllPairs, all_pairs
from faceprint.scoring import Scorer

FMRS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5, "1e-6": 1e-6}
ENROLLED, STRANGERS = 150, 100
GENDERS = ("female", "male")


def raw_scorer(model=None) -> Scorer:
    """Raw scoring with the raw table `faceprint calibrate` measured on the calibration folds beside the
    normalised one (what faceprint scored before cohort normalisation), of `model` (default:
    the default model)."""
    from faceprint import calibration
    from faceprint.accuracy.calibrate import raw_path
    from faceprint.models import get_model

    model_in_use = model or get_model()
    path = model_in_use.calibration().table or model_in_use.calibration_files()[0]
    table = calibration.table(str(raw_path(path)))
    scorer = Scorer(table.model_version, table, None)
    if model is not None:
        scorer.check(model.version, model.dim)
    return scorer


def _ids(persons: list[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(p, len(index)) for p in persons], dtype=np.int64)


def _group_rates(pairs: AllPairs, grp: np.ndarray, persons: np.ndarray, t: float) -> dict:
    out: dict = {}
    gen_group = grp[pairs.genuine_i]
    for g, name in enumerate(GENDERS):
        imp = pairs.impostor[pairs.impostor_group == g]
        sel = gen_group == g
        miss = pairs.genuine[sel] < t
        _, inv = np.unique(persons[pairs.genuine_i[sel]], return_inverse=True)
        per_person = np.bincount(inv, weights=miss) / np.maximum(1, np.bincount(inv))
        out[name] = {
            "fmr": float(np.mean(imp >= t)) if len(imp) else None,
            "fnmr": float(per_person.mean()) if len(per_person) else None,
            "fnmr_pairs": float(miss.mean()) if len(miss) else None,
            "impostor_pairs": len(imp),
            "people_with_pairs": int(inv.max() + 1) if len(inv) else 0,
        }
    f, m = out["female"]["fmr"], out["male"]["fmr"]
    out["women_men_fmr_ratio"] = f / m if f is not None and m else None
    return out


def enrolment_split(persons: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indexes into `persons` of the identification test: 150 held-out people's first photos (the
    gallery), their second photos (the probes), and the first photos of 100 other held-out people
    (strangers, never enrolled). People are taken in an order fixed by a hash of their name."""
    held = folds.in_role(persons, "heldout")
    by_person: dict[str, list[int]] = {}
    for i in np.flatnonzero(held):
        by_person.setdefault(persons[i], []).append(int(i))
    order = sorted(by_person, key=lambda p: hashlib.sha1(f"enrol:{p}".encode()).hexdigest())
    twice = [p for p in order if len(by_person[p]) >= 2][:ENROLLED]
    others = [p for p in order if p not in set(twice)][:STRANGERS]
    return (
        np.array([by_person[p][0] for p in twice]),
        np.array([by_person[p][1] for p in twice]),
        np.array([by_person[p][0] for p in others]),
    )


def enrolment_result(threshold: float, mate: np.ndarray, stranger: np.ndarray) -> dict:
    """The identification test's counts from Similarity matrices (probes x gallery, strangers x gallery),
    where probe i's mate is gallery face i."""
    if mate.size == 0:  # a subset run with nobody photographed twice: nobody enrolled, nothing matched
        mate, stranger = np.zeros((0, 1), np.float32), np.full((len(stranger), 1), -np.inf, np.float32)
    best = mate.argmax(axis=1)
    top = mate[np.arange(len(mate)), best]
    rank1 = (best == np.arange(len(mate))) & (top >= threshold)
    return {
        "enrolled": len(mate),
        "threshold": threshold,
        "rank1_found_at_default": int(rank1.sum()),
        "rank1_without_threshold": int((best == np.arange(len(mate))).sum()),
        "strangers": len(stranger),
        "strangers_matched_at_default": int((stranger.max(axis=1) >= threshold).sum()),
    }


def _enrolment(scorer: Scorer, x: np.ndarray, stats: np.ndarray | None, persons: list[str]) -> dict:
    """150 held-out people enrolled with their first photo, searched with their second; 100 others."""
    gallery, probes, strangers = enrolment_split(persons)
    t = scorer.default_search_threshold(len(gallery))

    def scores(rows: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                scorer.scores(
                    x[r],
                    None if stats is None else stats[r],
                    x[gallery],
                    None if stats is None else stats[gallery],
                )
                for r in rows
            ]
        )

    return enrolment_result(t, scores(probes), scores(strangers))


def compare(
    scorers: dict[str, Scorer], vectors: np.ndarray, persons: list[str], genders: dict[str, str]
) -> dict:
    """The side-by-side table on held-out people (see the module docstring)."""
    held = folds.in_role(persons, "heldout")
    hx = vectors[held]
    hp = np.array([p for p, k in zip(persons, held, strict=True) if k])
    ids = _ids(list(hp))
    gidx = {g: i for i, g in enumerate(GENDERS)}
    grp = np.array([gidx.get(genders.get(p, ""), -1) for p in hp], np.int8)
    out: dict = {
        "people": len(set(hp)),
        "images": len(hx),
        "folds": list(folds.HELDOUT_FOLDS),
    }
    for name, scorer in scorers.items():
        stats = scorer.stats(vectors) if scorer.normalised else None
        pairs = all_pairs(hx, ids, None if stats is None else stats[held], grp)
        t11 = scorer.default_compare_threshold()
        t1n = scorer.default_search_threshold(10_000)
        z11, z1n = scorer.score_at(t11), scorer.score_at(t1n)
        out[name] = {
            "scorer": scorer.name,
            "pairs": {"genuine": len(pairs.genuine), "impostor": len(pairs.impostor)},
            "tar_at_fmr": {key: pairs.tar_at_fmr(f)[0] for key, f in FMRS.items()},
            "compare_default": t11,
            "fmr_at_compare_default": float(np.mean(pairs.impostor >= z11)),
            "fnmr_at_compare_default": float(np.mean(pairs.genuine < z11)),
            "by_gender_at_compare_default": _group_rates(pairs, grp, hp, z11),
            "search_default_10000": t1n,
            "fmr_at_search_default_10000": float(np.mean(pairs.impostor >= z1n)),
            "fnmr_at_search_default_10000": float(np.mean(pairs.genuine < z1n)),
            "enrolment": _enrolment(scorer, vectors, stats, persons),
        }
    return out
