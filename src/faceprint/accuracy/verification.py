"""Demographic differentials in 1:1 verification (NIST FRVT style) over all pairs of a labelled image set.

Per group, at a fixed threshold:
- FMR: share of impostor pairs with both images in the group that score >= threshold (each pair counts once);
- FNMR: share of genuine pairs scoring < threshold, averaged per person (each person with 2+ images counts
  once, so one person with hundreds of photos does not stand for the group);
- 95% confidence intervals from a bootstrap that resamples people (pairs of one person are not independent);
- the worst-group / best-group ratio (over groups of at least MIN_PEOPLE people).
Only images in which the detector found a face are scored; the share without one is reported per group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceprint.accuracy.metrics import (
    bootstrap_fmr,
    bootstrap_fnmr,
    det_curve,
    hist_error_rates,
    percentile_interval,
)
from faceprint.accuracy.pairs import BINS, STEPS, PairScores, score_all_pairs, threshold_bin

N_BOOT = 1000
MIN_PEOPLE = 2  # a group enters the worst/best ratios only with at least this many people


def _identity_weighted_genuine_hist(ps: PairScores, ids: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Genuine histogram where each person in `members` (bool over identities) has total weight 1."""
    gid = ids[ps.genuine_i]
    per_person = np.bincount(gid, minlength=len(members)).astype(float)
    keep = members[gid]
    hist = np.zeros(BINS)
    np.add.at(hist, ps.genuine_bin[keep], 1.0 / per_person[gid[keep]])
    return hist


def group_rates(
    ps: PairScores,
    ids: np.ndarray,
    members: np.ndarray,
    impostor_hist: np.ndarray,
    threshold: float,
    n_boot: int = N_BOOT,
) -> dict:
    """FMR and FNMR of one group (people flagged in `members`) at `threshold`, with bootstrap intervals."""
    k = len(members)
    sizes = np.bincount(ids, minlength=k)
    tb = threshold_bin(threshold)
    local = -np.ones(k, dtype=np.int64)
    local[members] = np.arange(int(members.sum()))
    # false matches: impostor records above threshold with both people in the group
    hi = ps.high_bin >= tb
    a, b = ids[ps.high_i[hi]], ids[ps.high_j[hi]]
    both = members[a] & members[b]
    fm = int(both.sum())
    imp_pairs = int(impostor_hist.sum())
    fmr = fm / imp_pairs if imp_pairs else None
    fmr_ci = [None, None]
    if imp_pairs and n_boot:
        reps = bootstrap_fmr(sizes[members], local[a[both]], local[b[both]], n_boot=n_boot)
        fmr_ci = list(percentile_interval(reps))
    # false non-matches, per person
    gid = ids[ps.genuine_i]
    genuine_per = np.bincount(gid, minlength=k)
    miss_per = np.bincount(gid[ps.genuine_bin < tb], minlength=k)
    with_pairs = members & (genuine_per > 0)
    per_person = miss_per[with_pairs] / genuine_per[with_pairs]
    fnmr = float(per_person.mean()) if len(per_person) else None
    fnmr_ci = [None, None]
    if len(per_person) and n_boot:
        fnmr_ci = list(
            percentile_interval(bootstrap_fnmr(np.ones(len(per_person)), per_person, n_boot=n_boot))
        )
    gen_pairs = int(genuine_per[members].sum())
    return {
        "people": int(members.sum()),
        "images": int(sizes[members].sum()),
        "impostor_pairs": imp_pairs,
        "false_matches": fm,
        "fmr": fmr,
        "fmr_ci95": fmr_ci,
        "people_with_genuine_pairs": int(with_pairs.sum()),
        "genuine_pairs": gen_pairs,
        "false_non_matches": int(miss_per[members].sum()),
        "fnmr": fnmr,
        "fnmr_ci95": fnmr_ci,
        "fnmr_pair_weighted": float(miss_per[members].sum() / gen_pairs) if gen_pairs else None,
    }


def worst_best_ratio(rows: dict[str, dict], key: str) -> dict:
    """Worst / best group of a rate, or the reason there is no ratio."""
    vals = {g: r[key] for g, r in rows.items() if r.get(key) is not None}
    if len(vals) < 2:
        return {
            "ratio": None,
            "worst": None,
            "best": None,
            "note": f"fewer than two groups of {MIN_PEOPLE}+ people",
        }
    worst, best = max(vals, key=vals.get), min(vals, key=vals.get)
    if vals[best] == 0:
        return {
            "ratio": None,
            "worst": worst,
            "best": best,
            "note": f"{best} has no errors at this threshold",
        }
    return {"ratio": vals[worst] / vals[best], "worst": worst, "best": best, "note": ""}


def tar_at_fmr(genuine_hist: np.ndarray, impostor_hist: np.ndarray, target: float) -> dict:
    """TAR at the lowest 0.01-grid threshold whose FMR is <= target (pair-weighted)."""
    fmr, fnmr = hist_error_rates(genuine_hist, impostor_hist)
    ok = np.nonzero(fmr <= target)[0]
    if not len(ok):
        return {"tar": None, "threshold": None}
    k = int(ok[0])
    return {"tar": float(1 - fnmr[k]), "threshold": k / STEPS, "fmr": float(fmr[k])}


def demographic_verification(
    vectors: np.ndarray,
    ids: np.ndarray,
    person_group: np.ndarray,
    groups: list[str],
    thresholds: dict[str, float],
    no_face_by_group: dict[str, tuple[int, int]],
    progress: Callable[[int], None] | None = None,
    n_boot: int = N_BOOT,
    scorer=None,
    stats: np.ndarray | None = None,
) -> dict:
    """All-pairs verification by group: rates and intervals at each named threshold, ratios, DET curves.

    `ids` (n,) are identity indices of the images; `person_group` maps identity -> group index (-1: none).
    """
    image_group = person_group[ids]
    ps = score_all_pairs(
        vectors,
        ids,
        image_group,
        groups,
        record_from=threshold_bin(min(thresholds.values())),
        progress=progress,
        scorer=scorer,
        stats=stats,
    )
    k = len(person_group)
    everyone = np.ones(k, bool) & (np.bincount(ids, minlength=k) > 0)
    out: dict = {"groups": groups, "thresholds": thresholds, "by_threshold": {}, "det": {}}
    for name, t in thresholds.items():
        rows = {"all": group_rates(ps, ids, everyone, ps.impostor_hist, t, n_boot)}
        for g, label in enumerate(groups):
            members = (person_group == g) & everyone
            rows[label] = group_rates(ps, ids, members, ps.impostor_hist_by_group[g], t, n_boot)
        for label, (missing, total) in no_face_by_group.items():
            if label in rows:
                rows[label]["no_face"] = missing
                rows[label]["no_face_rate"] = missing / total if total else None
        per_group = {g: r for g, r in rows.items() if g != "all"}
        out["by_threshold"][name] = {
            "threshold": t,
            "rows": rows,
            "fmr_ratio": worst_best_ratio(
                {g: r for g, r in per_group.items() if r["people"] >= MIN_PEOPLE}, "fmr"
            ),
            "fnmr_ratio": worst_best_ratio(
                {g: r for g, r in per_group.items() if r["people_with_genuine_pairs"] >= MIN_PEOPLE}, "fnmr"
            ),
        }
    out["det"]["all"] = det_curve(_identity_weighted_genuine_hist(ps, ids, everyone), ps.impostor_hist)
    for g, label in enumerate(groups):
        members = (person_group == g) & everyone
        if (
            ps.impostor_hist_by_group[g].sum()
            and (members & (np.bincount(ids[ps.genuine_i], minlength=k) > 0)).any()
        ):
            out["det"][label] = det_curve(
                _identity_weighted_genuine_hist(ps, ids, members), ps.impostor_hist_by_group[g]
            )
    out["tar_at_fmr"] = {f"{f:g}": tar_at_fmr(ps.genuine_hist, ps.impostor_hist, f) for f in (1e-3, 1e-4)}
    out["pairs"] = {"genuine": ps.n_genuine, "impostor": ps.n_impostor}
    return out
