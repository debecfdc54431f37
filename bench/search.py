"""Face search at scale: the collection vector index (FaissIndex) vs numpy brute force, same run.

The index holds N faces: real LFW dlib descriptors as mates (the first image of every person with 2+
images) plus N - mates synthetic distractors; the queries are *other* real images of those people.

Distractors follow the distribution of real dlib descriptors, fitted on the cached LFW embeddings
(bench/_lfw_embeddings.py, ~4,200 images of 1,680 people) with a two-level Gaussian model:
  * identity centres: mean and covariance of the per-person mean descriptors, minus the part of that
    covariance that comes from averaging only n_p noisy images (E[1/n_p] x within-person covariance);
  * within-person spread: the pooled covariance of descriptor - person mean, divided by N - P (the
    degrees of freedom left after estimating P person means), which makes it unbiased.
Each synthetic identity gets a centre drawn from the first Gaussian and SAMPLES_PER_ID descriptors drawn
around it from the second, so distractors have realistic norms, real intra-person spread and realistic
impostor distances (printed: real vs synthetic). Distractors are generated in chunks (chunk c from
seed (seed, c)); each chunk is added to the index and folded into the exact numpy top-K of every query,
then dropped, so the vectors are never held twice.

Measured in one run: build time, process RSS (and the index's share) after the build, p50/p99 latency
of single top-10 queries one at a time (as a server would), recall_at_1 = the index's top-1 is the
exact (numpy, float64-ranked) top-1, mate_recall_at_1 = of the queries whose true mate is the exact
top-1, the share where the index also ranks it first, and numpy brute-force single-query latency (over
all N vectors when N <= 2M; above that timed on a 1M slice and scaled by N/1M).

With `--normalised` (implies `--unit`) the search is the service's: the index's `--shortlist` nearest
faces by raw distance, re-ranked by the cohort-normalised score (adaptive S-norm with the shipped cohort,
`faceprint.scoring`). Each face's cohort statistics are computed as it is added (timed: the per-face
indexing cost), the probe's per query (inside the timed search). recall_at_1 is then against the
exhaustive normalised top-1 (every face's normalised score, computed in the same pass as the exact top-K).

    .venv/bin/python bench/search.py --n 1000000 [--queries 1000] [--compare] [--normalised] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from _lfw_embeddings import lfw_embeddings, model_lfw_embeddings
from faceprint.collections.service import SHORTLIST
from faceprint.collections.vector_index import SWITCH_AT, FaissIndex, nprobe_for
from faceprint.engine import unit_rows
from faceprint.scoring import default_scorer, s_norm

SAMPLES_PER_ID = 4  # synthetic descriptors per synthetic identity
K = 10
BYTES_PER_VECTOR = 128 * 4
NUMPY_FULL_MAX = 2_000_000  # above this the numpy baseline runs on a 1M slice, scaled linearly


def mem_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"]


@dataclass(frozen=True)
class DistractorModel:
    """Two-level Gaussian fit of dlib descriptors (identity centres, within-person residuals)."""

    mean: np.ndarray
    centre_factor: np.ndarray  # (d, d): centre = mean + z @ centre_factor.T
    within_factor: np.ndarray  # (d, d): sample = centre + z @ within_factor.T

    @staticmethod
    def _factor(cov: np.ndarray) -> np.ndarray:
        vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
        return vecs * np.sqrt(np.clip(vals, 0.0, None))

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray) -> DistractorModel:
        x = vectors.astype(np.float64)
        people, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        centres = np.zeros((len(people), x.shape[1]))
        np.add.at(centres, inverse, x)
        centres /= counts[:, None]
        resid = x - centres[inverse]
        within = resid.T @ resid / max(len(x) - len(people), 1)  # pooled, unbiased (N - P dof)
        between = np.cov(centres.T) - np.mean(1.0 / counts) * within
        return cls(centres.mean(0), cls._factor(between), cls._factor(within))

    def sample(self, n: int, rng: np.random.Generator, step: int = 1 << 17) -> np.ndarray:
        """`n` descriptors of ceil(n / SAMPLES_PER_ID) new identities, float32 (built in steps)."""
        d = len(self.mean)
        mean = self.mean.astype(np.float32)
        cf, wf = self.centre_factor.T.astype(np.float32), self.within_factor.T.astype(np.float32)
        out = np.empty((n, d), dtype=np.float32)
        for s in range(0, n, step):  # step is a multiple of SAMPLES_PER_ID: identities stay whole
            m = min(step, n - s)
            centres = mean + rng.standard_normal((-(-m // SAMPLES_PER_ID), d), dtype=np.float32) @ cf
            out[s : s + m] = np.repeat(centres, SAMPLES_PER_ID, axis=0)[:m]
            out[s : s + m] += rng.standard_normal((m, d), dtype=np.float32) @ wf
        return out


def distractors(model: DistractorModel, n: int, chunk: int, seed: int) -> Iterator[np.ndarray]:
    """The same `n` distractors, chunk by chunk, every time it is called."""
    for c, start in enumerate(range(0, n, chunk)):
        yield model.sample(min(chunk, n - start), np.random.default_rng([seed, c]))


def realism(model: DistractorModel, vectors: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """Norms, genuine and impostor distances of real vs synthetic descriptors."""
    rng = np.random.default_rng(seed)
    synth = model.sample(4000, rng)
    synth_labels = np.arange(4000) // SAMPLES_PER_ID

    def stats(x: np.ndarray, lab: np.ndarray) -> dict:
        i, j = np.triu_indices(len(x), 1)
        same = lab[i] == lab[j]
        genuine = np.linalg.norm(x[i[same]] - x[j[same]], axis=1)  # every same-identity pair
        a, b = rng.integers(0, len(x), (2, 300_000))
        other = lab[a] != lab[b]
        impostor = np.linalg.norm(x[a[other]] - x[b[other]], axis=1)  # random different-identity pairs
        return {
            "norm": round(float(np.linalg.norm(x, axis=1).mean()), 3),
            "genuine_mean": round(float(genuine.mean()), 3),
            "impostor_mean": round(float(impostor.mean()), 3),
            "impostor_below_0.6": round(float((impostor < 0.6).mean()), 4),
        }

    return {"real": stats(vectors, labels), "synthetic": stats(synth, synth_labels)}


class TopK:
    """Running exact top-K over chunks (float32 BLAS to shortlist, float64 to rank)."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.q, self.k = queries, k
        self.dist = np.full((len(queries), k), np.inf)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, ids: np.ndarray, x: np.ndarray, block: int = 50_000) -> None:
        for s in range(0, len(x), block):
            self._update(ids[s : s + block], x[s : s + block])

    def _update(self, ids: np.ndarray, x: np.ndarray) -> None:
        sq = (x * x).sum(1)[None, :] - 2.0 * (self.q @ x.T)
        kk = min(self.k + 5, x.shape[0])
        cand = np.argpartition(sq, kk - 1, axis=1)[:, :kk]
        exact = np.linalg.norm(x[cand].astype(np.float64) - self.q[:, None, :].astype(np.float64), axis=2)
        dist = np.concatenate([self.dist, exact], axis=1)
        allids = np.concatenate([self.ids, ids[cand]], axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, : self.k]
        self.dist = np.take_along_axis(dist, order, 1)
        self.ids = np.take_along_axis(allids, order, 1)


class BestNormalised:
    """Running exhaustive top-1 by normalised score over chunks (float64 scores)."""

    def __init__(self, queries: np.ndarray, stats: np.ndarray) -> None:
        self.q, self.stats = queries, stats
        self.best = np.full(len(queries), -np.inf)
        self.ids = np.full(len(queries), -1, dtype=np.int64)

    def update(self, ids: np.ndarray, x: np.ndarray, stats: np.ndarray, block: int = 50_000) -> None:
        for s in range(0, len(x), block):
            cos = (self.q @ x[s : s + block].T).astype(np.float64)
            z = s_norm(cos, self.stats[:, None, :], stats[None, s : s + block, :])
            j = z.argmax(axis=1)
            val = z[np.arange(len(z)), j]
            better = val > self.best
            self.best[better], self.ids[better] = val[better], ids[s + j[better]]


class NormalisedSearch:
    """The service's search: raw shortlist from the index, probe statistics, re-rank by S-norm."""

    def __init__(self, index: FaissIndex, scorer, stats: np.ndarray, shortlist: int) -> None:
        self.index, self.scorer, self.stats, self.shortlist = index, scorer, stats, shortlist

    def __call__(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = self.index.search(q, max(self.shortlist, k))
        qs = self.scorer.stats(q)
        cos = 1.0 - dist.astype(np.float64) ** 2 / 2.0  # unit vectors: exact distances of the shortlist
        z = s_norm(cos, qs[:, None, :], self.stats[np.maximum(ids, 0)])
        z[ids < 0] = -np.inf
        order = np.argsort(-z, axis=1)[:, :k]
        return np.take_along_axis(z, order, 1), np.take_along_axis(ids, order, 1)


def percentiles_ms(times: list[float]) -> tuple[float, float]:
    arr = np.asarray(times) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def time_index(search, queries: np.ndarray, k: int, warmup: int = 20) -> tuple[list[float], np.ndarray]:
    """Single-query latencies (seconds) and result ids."""
    for q in queries[:warmup]:
        search(q[None, :], k)
    times, found = [], np.full((len(queries), k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, ids = search(q[None, :], k)
        times.append(time.perf_counter() - t0)
        found[i, : ids.shape[1]] = ids[0]
    return times, found


def numpy_search(x: np.ndarray, norms: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The brute-force baseline a numpy user would write (squared-norm expansion + argpartition)."""
    sq = norms - 2.0 * (x @ q)
    top = np.argpartition(sq, k)[:k]
    return top[np.argsort(sq[top])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="faces in the index")
    ap.add_argument("--queries", type=int, default=1000, help="real query images (max ~1,680)")
    ap.add_argument("--chunk", type=int, default=1_000_000, help="distractors generated per step")
    ap.add_argument("--numpy-queries", type=int, default=50, help="single queries timed for numpy")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--switch-at", type=int, default=SWITCH_AT, help="flat -> shortlist threshold")
    ap.add_argument("--nprobe", type=int, default=None, help="lists probed (default: nprobe_for(nlist))")
    ap.add_argument("--compare", action="store_true", help="also measure IVF-Flat and HNSW32 (N <= 2M)")
    ap.add_argument(
        "--unit", action="store_true", help="unit-length vectors, as model 2.0 stores (default: raw dlib)"
    )
    ap.add_argument(
        "--normalised",
        action="store_true",
        help="re-rank by cohort-normalised score (model 2.0 vectors of non-cohort people; implies --unit)",
    )
    ap.add_argument("--shortlist", type=int, default=SHORTLIST, help="raw candidates re-ranked")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    args.unit = args.unit or args.normalised
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    emb = model_lfw_embeddings() if args.normalised else lfw_embeddings()
    vectors = unit_rows(emb.vectors) if args.unit else emb.vectors
    labels = emb.labels
    model = DistractorModel.fit(vectors, labels)
    real = realism(model, vectors, labels, args.seed)
    log(f"descriptors real vs synthetic: {real}")

    first = np.r_[True, labels[1:] != labels[:-1]]  # rows are grouped by person (sorted files)
    second = np.r_[False, first[:-1]] & ~first
    mates, mate_labels = vectors[first], labels[first]
    rng = np.random.default_rng(args.seed)
    qrows = np.sort(rng.choice(np.flatnonzero(second), min(args.queries, int(second.sum())), replace=False))
    queries, truth = vectors[qrows], np.searchsorted(mate_labels, labels[qrows])
    n_mates = len(mates)
    n_dis = args.n - n_mates
    if n_dis < 0:
        raise SystemExit(f"--n must be at least {n_mates} (the real mates)")
    raw_mb = args.n * BYTES_PER_VECTOR / 2**20

    # -- build (and the exact top-K of every query, from the same chunks) ---------------------------
    rss0, _ = mem_mb()
    index = FaissIndex(128, switch_at=args.switch_at, nprobe=args.nprobe)
    top = TopK(queries, K)
    scorer = default_scorer() if args.normalised else None
    all_stats = np.empty((args.n, 2), np.float32) if scorer else None
    best = BestNormalised(queries, scorer.stats(queries)) if scorer else None
    build_s = gen_s = exact_s = stats_s = 0.0
    start, blocks = 0, distractors(model, n_dis, args.chunk, args.seed)
    if args.unit:
        blocks = (unit_rows(b) for b in blocks)
    block: np.ndarray | None = mates
    while block is not None:
        t0 = time.perf_counter()
        index.add(np.arange(start, start + len(block), dtype=np.int64), block)
        t1 = time.perf_counter()
        top.update(np.arange(start, start + len(block), dtype=np.int64), block)
        t2 = time.perf_counter()
        if scorer is not None:
            all_stats[start : start + len(block)] = scorer.stats(block)
            t3 = time.perf_counter()
            best.update(np.arange(start, start + len(block)), block, all_stats[start : start + len(block)])
            stats_s += t3 - t2
            exact_s += time.perf_counter() - t3
            t2 = time.perf_counter()
        start += len(block)
        block = next(blocks, None)
        build_s, exact_s, gen_s = build_s + t1 - t0, exact_s + t2 - t1, gen_s + time.perf_counter() - t2
    rss1, hwm1 = mem_mb()
    nprobe = index.nprobe or nprobe_for(index.nlist, len(index))
    log(
        f"built {index!r} in {build_s:.1f} s (+{gen_s:.1f} s generating distractors); nprobe {nprobe}; "
        f"RSS {rss1:.0f} MiB (index {rss1 - rss0:.0f} MiB) for {raw_mb:.0f} MiB raw, peak {hwm1:.0f} MiB"
    )

    # -- index latency ----------------------------------------------------------------------------
    times, found = time_index(index.search, queries, K)
    p50, p99 = percentiles_ms(times)
    log(f"index: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(queries)} single queries")
    normalised = None
    if scorer is not None:
        search = NormalisedSearch(index, scorer, all_stats, args.shortlist)
        n_times, n_found = time_index(search, queries, K)
        n50, n99 = percentiles_ms(n_times)
        n_recall = float(np.mean(n_found[:, 0] == best.ids))
        single = []
        for q in queries[:200]:  # what one IndexFaces (or one probe) adds: the statistics of one face
            t0 = time.perf_counter()
            scorer.stats(q[None, :])
            single.append(time.perf_counter() - t0)
        s50, s99 = percentiles_ms(single)
        normalised = {
            "scorer": scorer.name,
            "one_face_stats_p50_ms": round(s50, 3),
            "one_face_stats_p99_ms": round(s99, 3),
            "ratio_p50_vs_raw_index": round(n50 / p50, 2),
            "shortlist": args.shortlist,
            "p50_ms": round(n50, 3),
            "p99_ms": round(n99, 3),
            "recall_at_1_vs_exhaustive_normalised": round(n_recall, 4),
            "mate_rank1_exhaustive_normalised": round(float(np.mean(best.ids == truth)), 4),
            "mate_rank1": round(float(np.mean(n_found[:, 0] == truth)), 4),
            "stats_s": round(stats_s, 1),
            "stats_us_per_face": round(1e6 * stats_s / args.n, 2),
        }
        log(f"normalised re-ranking of {args.shortlist}: {normalised}")

    # a different id at rank 1 still counts when it is an exact tie in distance
    got_d = index.search(queries, 1)[0][:, 0].astype(np.float64)
    recall1 = float(np.mean((found[:, 0] == top.ids[:, 0]) | (np.abs(got_d - top.dist[:, 0]) <= 1e-6)))
    recall10 = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, top.ids, strict=True)]))
    mate_first = top.ids[:, 0] == truth  # exact search ranks the true mate first
    mate_exact = float(np.mean(mate_first))
    mate_index = float(np.mean(found[:, 0] == truth))
    mate_recall = float(np.mean(found[mate_first, 0] == truth[mate_first])) if mate_first.any() else 1.0
    log(
        f"recall@1 vs exact {recall1:.4f} (true mate kept at rank 1: {mate_recall:.4f}), recall@10 "
        f"{recall10:.4f}; mate at rank 1: exact {mate_exact:.4f}, index {mate_index:.4f} "
        f"(exact batch pass {exact_s:.1f} s)"
    )

    # -- numpy brute force, single queries -----------------------------------------------------------
    slice_n = args.n if args.n <= NUMPY_FULL_MAX else 1_000_000
    base = np.empty((slice_n, 128), dtype=np.float32)
    base[: min(n_mates, slice_n)] = mates[:slice_n]
    filled = min(n_mates, slice_n)
    for block in distractors(model, n_dis, args.chunk, args.seed):
        take = min(len(block), slice_n - filled)
        if take <= 0:
            break
        base[filled : filled + take] = block[:take]
        filled += take
    norms = (base * base).sum(1)
    nq = min(args.numpy_queries, len(queries))
    for q in queries[:3]:
        numpy_search(base, norms, q, K)
    np_times = []
    for q in queries[:nq]:
        t0 = time.perf_counter()
        numpy_search(base, norms, q, K)
        np_times.append((time.perf_counter() - t0) * args.n / slice_n)
    np_p50, np_p99 = percentiles_ms(np_times)
    ratio = np_p50 / p50
    log(
        f"numpy brute force: p50 {np_p50:.2f} ms, p99 {np_p99:.2f} ms"
        f"{' (1M slice x N/1M)' if slice_n < args.n else ''}; index is {ratio:.0f}x faster at p50"
    )

    alternatives = None
    if args.compare:
        full = base if slice_n == args.n else None
        alternatives = compare_alternatives(full, queries, top, index.nlist, log)
    del base, norms

    result = {
        "bench": "search",
        "n": args.n,
        "mates": n_mates,
        "queries": len(queries),
        "k": K,
        "kind": index.kind,
        "nlist": index.nlist,
        "nprobe": nprobe,
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "recall_at_1": round(recall1, 4),
        "recall_at_10": round(recall10, 4),
        "mate_recall_at_1": round(mate_recall, 4),
        "mate_rank1_exact": round(mate_exact, 4),
        "mate_rank1_index": round(mate_index, 4),
        "build_s": round(build_s, 1),
        "generate_s": round(gen_s, 1),
        "rss_mb": round(rss1),
        "index_rss_mb": round(rss1 - rss0),
        "peak_rss_mb": round(hwm1),
        "raw_mb": round(raw_mb),
        "rss_over_raw": round(rss1 / raw_mb, 3),
        "numpy_p50_ms": round(np_p50, 2),
        "numpy_p99_ms": round(np_p99, 2),
        "numpy_extrapolated": slice_n < args.n,
        "ratio_vs_numpy": round(ratio, 1),
        "exact_pass_s": round(exact_s, 1),
        "realism": real,
        "alternatives": alternatives,
        "unit": args.unit,
        "normalised": normalised,
        "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


def compare_alternatives(
    base: np.ndarray | None, queries: np.ndarray, top: TopK, nlist: int, log
) -> dict | None:
    """The designs not chosen, on the same vectors: faiss HNSW32 (efConstruction 40) and IVF-Flat with
    the index's nlist; build time, extra RSS, latency and recall@1 against exact."""
    if base is None:
        log("comparison skipped: N > 2M")
        return None
    out: dict = {}

    def measure(search, label: str) -> dict:
        times, found = time_index(search, queries, K)
        p50, p99 = percentiles_ms(times)
        rec = float(np.mean(found[:, 0] == top.ids[:, 0]))
        log(f"  {label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, recall@1 {rec:.4f}")
        return {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "recall_at_1": round(rec, 4)}

    rss0, _ = mem_mb()
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(base.shape[1]), base.shape[1], nlist)
    sample = np.random.default_rng(0).choice(len(base), min(len(base), 64 * nlist), replace=False)
    ivf.train(base[np.sort(sample)])
    ivf.add(base)
    out["ivfflat"] = {"build_s": round(time.perf_counter() - t0, 1), "rss_mb": round(mem_mb()[0] - rss0)}
    log(f"IVF-Flat nlist {nlist}: {out['ivfflat']}")
    for nprobe in (nlist // 8, nlist // 4):
        ivf.nprobe = nprobe
        out["ivfflat"][f"nprobe_{nprobe}"] = measure(ivf.search, f"IVF-Flat nprobe {nprobe}")
    del ivf

    rss0, _ = mem_mb()
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(base.shape[1], 32)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(base)
    out["hnsw32"] = {"build_s": round(time.perf_counter() - t0, 1), "rss_mb": round(mem_mb()[0] - rss0)}
    log(f"HNSW32: {out['hnsw32']}")
    for ef in (64, 256):
        hnsw.hnsw.efSearch = ef
        out["hnsw32"][f"ef_{ef}"] = measure(hnsw.search, f"HNSW32 efSearch {ef}")
    return out


if __name__ == "__main__":
    main()
