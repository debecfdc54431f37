"""Score every pair of a set of embeddings in blocks: genuine and impostor Similarity histograms.

Scores are binned on a 0.01 Similarity grid: bin k holds scores in [k/100, (k+1)/100), so "score >= t"
for a threshold t on that grid is exact. All genuine (same-identity) pairs are kept as records; impostor
pairs are counted in histograms (overall and within each group) and only those scoring at or above
`record_from` are kept as records, so tens of millions of pairs fit in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faceprint.similarity import D50, EXPONENT

STEPS = 100  # bins per Similarity point
BINS = 100 * STEPS + 1  # the last bin holds exactly 100


def similarity_array(d2: np.ndarray) -> np.ndarray:
    """Vectorised `faceprint.similarity.similarity` of squared L2 distances."""
    d2 = np.maximum(np.asarray(d2, dtype=np.float64), 0.0)
    return 100.0 / (1.0 + (d2 / (D50 * D50)) ** (EXPONENT / 2.0))


def to_bins(similarity: np.ndarray) -> np.ndarray:
    """Bin index of Similarity scores on the 0.01 grid."""
    return np.clip(np.floor(np.asarray(similarity) * STEPS + 1e-9), 0, BINS - 1).astype(np.int32)


def threshold_bin(percent: float) -> int:
    """The first bin counted as `score >= percent` (percent rounded to the 0.01 grid)."""
    return int(np.clip(round(float(percent) * STEPS), 0, BINS - 1))


def pair_similarity(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity of the pairs (vectors[a[k]], vectors[b[k]])."""
    diff = vectors[np.asarray(a)].astype(np.float64) - vectors[np.asarray(b)].astype(np.float64)
    return similarity_array(np.einsum("ij,ij->i", diff, diff))


@dataclass
class PairScores:
    """Histograms and records of all pairs among n embeddings with identity and group labels."""

    groups: list[str]
    genuine_hist: np.ndarray  # (BINS,) counts over all genuine pairs
    impostor_hist: np.ndarray  # (BINS,) counts over all impostor pairs
    impostor_hist_by_group: np.ndarray  # (G, BINS) impostor pairs with both images in group g
    genuine_i: np.ndarray  # genuine pair records: image indices and score bin
    genuine_j: np.ndarray
    genuine_bin: np.ndarray
    high_i: np.ndarray  # impostor pairs scoring >= record_from
    high_j: np.ndarray
    high_bin: np.ndarray
    record_from: int  # bin

    @property
    def n_genuine(self) -> int:
        """Genuine pairs (or, for a weighted histogram, the sum of the weights)."""
        return round(float(self.genuine_hist.sum()))

    @property
    def n_impostor(self) -> int:
        return int(self.impostor_hist.sum())


def score_all_pairs(
    vectors: np.ndarray,
    identities: np.ndarray,
    image_groups: np.ndarray | None = None,
    groups: list[str] | None = None,
    record_from: int = 80 * STEPS,
    block: int = 512,
    progress: Callable[[int], None] | None = None,
    scorer=None,
    stats: np.ndarray | None = None,
) -> PairScores:
    """Score all n(n-1)/2 pairs of `vectors` (n, d) in row blocks of the upper triangle.

    `identities` (n,) says which pairs are genuine; `image_groups` (n,) (index into `groups`, -1 for
    none) adds within-group impostor histograms. `progress(rows_done)` is called after each block.
    With a normalising `scorer` (faceprint.scoring) and the rows' cohort `stats` (n, 2), pairs are scored
    by its normalised Similarity instead of the raw distance map.
    """
    from faceprint.scoring import s_norm

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    ids = np.asarray(identities)
    groups = list(groups or [])
    g_count = len(groups)
    img_g = np.full(n, -1, dtype=np.int64) if image_groups is None else np.asarray(image_groups, np.int64)
    norms = np.einsum("ij,ij->i", x, x)
    imp_hist = np.zeros((g_count + 1) * BINS, dtype=np.int64)  # last row: pairs across or outside groups
    gen_hist = np.zeros(BINS, dtype=np.int64)
    gen_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    high_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        cols = np.arange(r0, n)
        if stats is not None and scorer is not None:
            cos = (x[r0:r1] @ x[r0:].T) / np.sqrt(norms[r0:r1, None] * norms[None, r0:])
            bins = to_bins(scorer.percent(s_norm(cos, stats[r0:r1, None, :], stats[None, r0:, :])))
        else:
            d2 = norms[r0:r1, None] + norms[None, r0:] - 2.0 * (x[r0:r1] @ x[r0:].T)
            bins = to_bins(similarity_array(d2))
        rows = np.arange(r0, r1)
        upper = cols[None, :] > rows[:, None]
        same = ids[r0:r1, None] == ids[None, r0:]
        gen_mask = upper & same
        imp_mask = upper & ~same
        gi, gj = np.nonzero(gen_mask)
        gb = bins[gi, gj]
        gen_parts.append(((gi + r0).astype(np.int32), (gj + r0).astype(np.int32), gb))
        gen_hist += np.bincount(gb, minlength=BINS)
        ga, gb_ = img_g[r0:r1, None], img_g[None, r0:]
        row_g = np.where((ga == gb_) & (ga >= 0), ga, g_count)
        key = row_g * BINS + bins
        imp_hist += np.bincount(key[imp_mask], minlength=(g_count + 1) * BINS)
        hi, hj = np.nonzero(imp_mask & (bins >= record_from))
        high_parts.append(((hi + r0).astype(np.int32), (hj + r0).astype(np.int32), bins[hi, hj]))
        if progress:
            progress(r1)
    by_group = imp_hist.reshape(g_count + 1, BINS)

    def cat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> np.ndarray:
        return np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype=np.int32)

    return PairScores(
        groups=groups,
        genuine_hist=gen_hist,
        impostor_hist=by_group.sum(axis=0),
        impostor_hist_by_group=by_group[:g_count].copy(),
        genuine_i=cat(gen_parts, 0),
        genuine_j=cat(gen_parts, 1),
        genuine_bin=cat(gen_parts, 2).astype(np.int32),
        high_i=cat(high_parts, 0),
        high_j=cat(high_parts, 1),
        high_bin=cat(high_parts, 2).astype(np.int32),
        record_from=record_from,
    )


def rate_at_or_above(hist: np.ndarray, threshold: float) -> float:
    """Share of a histogram's pairs scoring >= threshold (Similarity percent)."""
    total = hist.sum()
    return float(hist[threshold_bin(threshold) :].sum() / total) if total else float("nan")


def rate_below(hist: np.ndarray, threshold: float) -> float:
    """Share of a histogram's pairs scoring < threshold."""
    total = hist.sum()
    return float(hist[: threshold_bin(threshold)].sum() / total) if total else float("nan")
