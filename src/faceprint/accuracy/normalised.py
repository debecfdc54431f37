"""All-pairs scores of a labelled set of face vectors, raw or cohort-normalised, as plain arrays.

The audit, `faceprint calibrate` and `bench/cohort.py` share these: every genuine (same-person) pair's score
and every impostor pair's score (float32, so the 14 million impostor pairs of LFW's held-out folds take
56 MB), from which TAR at a target FMR, per-group error rates and calibration histograms follow exactly.
The score is in the scorer's variable: the normalised score z (S-norm) or, for raw scoring, the cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceprint.scoring import s_norm, unit


@dataclass
class AllPairs:
    """Scores of every pair i < j, split by same person; `*_i`, `*_j` index the input rows."""

    genuine: np.ndarray  # float64
    genuine_i: np.ndarray
    genuine_j: np.ndarray
    impostor: np.ndarray  # float32
    impostor_group: np.ndarray  # int8: group index when both images share one, else -1

    def tar_at_fmr(self, fmr: float) -> tuple[float, float]:
        """(TAR, threshold): the share of genuine pairs above the score that only `fmr` of impostors reach."""
        return tar_at_fmr(self.genuine, self.impostor, fmr)


def all_pairs(
    vectors: np.ndarray,
    ids: np.ndarray,
    stats: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    block: int = 1024,
) -> AllPairs:
    """Score all pairs of `vectors` (cosine when `stats` is None, else S-norm with these statistics)."""
    x = unit(vectors).astype(np.float32)
    n = len(x)
    ids = np.asarray(ids)
    grp = np.full(n, -1, np.int8) if groups is None else np.asarray(groups, np.int8)
    gen, gi, gj, imp, ig = [], [], [], [], []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        raw = x[r0:r1] @ x[r0:].T
        if stats is None:
            score = raw.astype(np.float64)
        else:
            score = s_norm(raw, stats[r0:r1, None, :], stats[None, r0:, :])
        rows = np.arange(r0, r1)[:, None]
        cols = np.arange(r0, n)[None, :]
        upper = cols > rows
        same = ids[r0:r1, None] == ids[None, r0:]
        a, b = np.nonzero(upper & same)
        gen.append(score[a, b])
        gi.append(a + r0)
        gj.append(b + r0)
        mask = upper & ~same
        imp.append(score[mask].astype(np.float32))
        ga, gb = grp[r0:r1, None], grp[None, r0:]
        ig.append(np.where(ga == gb, ga, -1).astype(np.int8)[mask])
    return AllPairs(
        np.concatenate(gen),
        np.concatenate(gi),
        np.concatenate(gj),
        np.concatenate(imp),
        np.concatenate(ig),
    )


def tar_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold that at most `fmr` of the impostor scores reach."""
    allowed = int(np.floor(fmr * len(impostor) + 1e-9))
    if allowed >= len(impostor):
        return 1.0, -np.inf
    # the (allowed+1)-th highest impostor score must fall below the threshold
    kth = np.partition(impostor, len(impostor) - allowed - 1)[len(impostor) - allowed - 1]
    t = float(np.nextafter(np.float64(kth), np.inf))
    return float(np.mean(genuine >= t)), t


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """The lowest score threshold at which at most `fmr` of these impostor scores are accepted."""
    return tar_at_fmr(np.zeros(1), impostor, fmr)[1]
