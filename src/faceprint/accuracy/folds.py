"""LFW people split into folds by a hash of the name: cohort, calibration and held-out evaluation folds.

A person's fold is `sha1(name) mod 10`. Folds 0-2 give the shipped cohort's vectors, folds 3-5 the
calibration table, folds 6-9 every reported accuracy figure, so no reported number is measured on a
person used to fit it (neither in the cohort nor in the calibration). The split is by person, never by
image: two photos of one person are always on the same side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

FOLDS = 10
COHORT_FOLDS = (0, 1, 2)
CALIBRATION_FOLDS = (3, 4, 5)
HELDOUT_FOLDS = (6, 7, 8, 9)
ROLES = {"cohort": COHORT_FOLDS, "calibration": CALIBRATION_FOLDS, "heldout": HELDOUT_FOLDS}


def fold_of(name: str) -> int:
    """The fold (0-9) of an LFW person."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % FOLDS


def in_role(persons: Sequence[str], role: str) -> np.ndarray:
    """Boolean mask of the images whose person belongs to `role` ("cohort", "calibration", "heldout")."""
    folds = set(ROLES[role])
    memo: dict[str, bool] = {}
    return np.array([memo.setdefault(p, fold_of(p) in folds) for p in persons], dtype=bool)


def pick_cohort(
    persons: Sequence[str],
    usable: np.ndarray,
    size: int,
    genders: dict[str, str] | None = None,
) -> np.ndarray:
    """Indices of `size` cohort images: people of the cohort folds in hash order, one image each per
    round (first images first), so the cohort holds as many different people as it can.

    With `genders` (person -> "female"/"male") the cohort is gender-balanced: rounds alternate women and
    men, and it stops when either runs out (it may then be smaller than `size`).
    """
    mask = in_role(persons, "cohort") & np.asarray(usable, bool)
    by_person: dict[str, list[int]] = {}
    for i in np.flatnonzero(mask):
        by_person.setdefault(persons[i], []).append(int(i))
    people = sorted(by_person, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    if genders is not None:
        women = [p for p in people if genders.get(p) == "female"]
        men = [p for p in people if genders.get(p) == "male"]
        w = _rounds(by_person, women, size // 2)
        m = _rounds(by_person, men, size // 2)
        n = min(len(w), len(m))
        return np.array(sorted(w[:n] + m[:n]), dtype=np.int64)
    return np.array(sorted(_rounds(by_person, people, size)), dtype=np.int64)


def _rounds(by_person: dict[str, list[int]], people: list[str], size: int) -> list[int]:
    out: list[int] = []
    depth = 0
    while len(out) < size:
        added = False
        for p in people:
            if depth < len(by_person[p]):
                out.append(by_person[p][depth])
                added = True
                if len(out) == size:
                    break
        if not added:
            break
        depth += 1
    return out
