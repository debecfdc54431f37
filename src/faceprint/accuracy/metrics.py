"""Verification metrics: 10-fold accuracy, ROC, AUC, TAR at FAR, DET curves and confidence intervals.

Scores are Similarity percents: higher means more alike; a pair is accepted when score >= threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from faceprint.accuracy.pairs import BINS, STEPS


@dataclass(frozen=True)
class FoldResult:
    """LFW 10-fold protocol: per-fold threshold (chosen on the other folds) and test accuracy."""

    accuracies: np.ndarray
    thresholds: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation over folds (ddof=1)."""
        return float(self.accuracies.std(ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def standard_error(self) -> float:
        return self.std / float(np.sqrt(len(self.accuracies)))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising accuracy: a midpoint between adjacent distinct scores (ties: the lowest)."""
    order = np.argsort(scores, kind="stable")
    s, y = np.asarray(scores, float)[order], np.asarray(same, bool)[order]
    n = len(s)
    same_at_or_above = np.append(y[::-1].cumsum()[::-1], 0)  # accepted genuine pairs if cut before k
    diff_below = np.concatenate([[0], (~y).cumsum()])  # rejected impostor pairs if cut before k
    correct = np.where(np.concatenate([[True], s[1:] > s[:-1], [True]]), same_at_or_above + diff_below, -1)
    k = int(np.argmax(correct))
    if k == 0:
        return float(s[0] - 1e-6)
    if k == n:
        return float(s[-1] + 1e-6)
    return float((s[k - 1] + s[k]) / 2)


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    """Accuracy of each fold at the threshold that is best on all the other folds."""
    scores, same, folds = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    accs, ths = [], []
    for f in np.unique(folds):
        train = folds != f
        t = best_threshold(scores[train], same[train])
        accs.append(float(np.mean((scores[~train] >= t) == same[~train])))
        ths.append(t)
    return FoldResult(np.array(accs), np.array(ths))


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve: P(genuine score > impostor score) + half the ties (Mann-Whitney)."""
    g, i = np.asarray(genuine, float), np.asarray(impostor, float)
    ranks = stats.rankdata(np.concatenate([g, i]))
    u = ranks[: len(g)].sum() - len(g) * (len(g) + 1) / 2
    return float(u / (len(g) * len(i)))


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate, threshold) at every distinct score, thresholds descending."""
    g, i = np.sort(np.asarray(genuine, float)), np.sort(np.asarray(impostor, float))
    th = np.unique(np.concatenate([g, i]))[::-1]
    far = (len(i) - np.searchsorted(i, th, side="left")) / len(i)
    tar = (len(g) - np.searchsorted(g, th, side="left")) / len(g)
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[np.inf], th])


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose false accept rate is <= `far`.

    With m impostor pairs the FAR resolution is 1/m: below it this is the TAR at zero false accepts.
    """
    i = np.sort(np.asarray(impostor, float))[::-1]
    allowed = int(np.floor(far * len(i) + 1e-9))  # impostors that may score >= threshold
    t = np.nextafter(i[allowed], np.inf) if allowed < len(i) else -np.inf
    return float(np.mean(np.asarray(genuine, float) >= t)), float(t)


def hist_error_rates(genuine_hist: np.ndarray, impostor_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at every threshold k/100 of the 0.01 bin grid, from score histograms."""
    imp = impostor_hist[::-1].cumsum()[::-1] / max(1, impostor_hist.sum())  # share >= bin
    gen = np.concatenate([[0], genuine_hist.cumsum()[:-1]]) / max(1, genuine_hist.sum())  # share < bin
    return imp, gen


def det_curve(genuine_hist: np.ndarray, impostor_hist: np.ndarray) -> dict[str, list[float]]:
    """DET points (FMR > 0) as lists: threshold, fmr, fnmr; thinned to at most ~400 points."""
    fmr, fnmr = hist_error_rates(genuine_hist, impostor_hist)
    th = np.arange(BINS) / STEPS
    keep = fmr > 0
    idx = np.nonzero(keep)[0]
    if len(idx) > 400:  # keep points evenly spaced in log FMR
        logf = np.log10(fmr[idx])
        marks = np.linspace(logf.max(), logf.min(), 400)
        idx = np.unique(idx[np.searchsorted(-logf, -marks)].clip(max=idx[-1]))
    return {"threshold": th[idx].tolist(), "fmr": fmr[idx].tolist(), "fnmr": fnmr[idx].tolist()}


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if total == 0:
        return float("nan"), float("nan")
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_fmr(
    sizes: np.ndarray,
    fm_a: np.ndarray,
    fm_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """FMR replicates from resampling identities (a cluster bootstrap, NIST style).

    `sizes[k]` is the number of images of identity k; each false match is an impostor pair between
    identities `fm_a[m]` and `fm_b[m]`. A replicate draws identities with replacement (weights w) and
    computes sum(w_a w_b over false matches) / sum(w_a w_b n_a n_b over identity pairs a < b).
    """
    rng = np.random.default_rng(seed)
    k = len(sizes)
    n = np.asarray(sizes, float)
    out = np.empty(n_boot)
    for r in range(n_boot):
        w = np.bincount(rng.integers(0, k, k), minlength=k).astype(float)
        wn = w * n
        pairs = (wn.sum() ** 2 - (wn * wn).sum()) / 2
        # copies of one identity drawn twice are the same person: their pairs are not impostors
        out[r] = (w[fm_a] * w[fm_b]).sum() / pairs if pairs > 0 else np.nan
    return out


def bootstrap_fnmr(
    genuine_pairs: np.ndarray, misses: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """FNMR replicates from resampling identities: per identity, its genuine pairs and its misses."""
    rng = np.random.default_rng(seed)
    g, m = np.asarray(genuine_pairs, float), np.asarray(misses, float)
    k = len(g)
    out = np.empty(n_boot)
    for r in range(n_boot):
        w = np.bincount(rng.integers(0, k, k), minlength=k)
        tot = (w * g).sum()
        out[r] = (w * m).sum() / tot if tot > 0 else np.nan
    return out


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap replicates."""
    r = np.asarray(replicates, float)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))
