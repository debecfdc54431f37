"""Build the calibration table (`faceprint/data/calibration.json`) from all pairs of LFW.

The impostor distribution is every cross-identity pair of the LFW images in which the detector found a
face (images where it found none are left out: in use, such an image never yields a score); the genuine
distribution is every same-identity pair. The table format is `faceprint.calibration`'s.

Tail: log10(FMR) is fitted as a straight line in the embedding *distance* d over the high-score end of the
measured impostor distribution, from the first grid point with FMR <= 1e-4 up to the anchor, the last 0.1
grid point with at least 100 impostor pairs at or above it. The line is forced through the anchor, so the
table and the tail join without a step and the FMR stays monotone; beyond the anchor it is an extrapolation,
recorded as such in the provenance with the fit range and residuals. Why stop at 100 pairs: the top of
LFW's "impostor" distribution is label noise (the same man filed under two names, the same photograph under
two names), a dozen pairs at distances near 0 that would otherwise flatten the tail at about 1e-7 and make
every threshold above Similarity 98 look useless. Why distance: the Similarity map compresses near 100, so
a line in Similarity bends the tail; in distance the measured log-FMR is close to straight.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from faceprint import similarity as sim
from faceprint.accuracy.lfw import DatasetError
from faceprint.accuracy.pairs import STEPS, PairScores
from faceprint.calibration import FMR_FLOOR

GRID_STEP = 0.1  # Similarity step of the shipped table
MIN_TAIL_PAIRS = 100
TAIL_FMR_START = 1e-4


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{x:.{digits}g}")


def package_versions(names: tuple[str, ...] = ("faceprint", "numpy", "dlib-bin", "onnxruntime")) -> dict:
    """Installed versions of the packages that determine the scores, plus Python's."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def fit_tail(grid: np.ndarray, counts_at_or_above: np.ndarray, total: int) -> dict:
    """Anchored log-linear fit of the impostor tail (see the module docstring)."""
    enough = np.nonzero(counts_at_or_above >= MIN_TAIL_PAIRS)[0]
    if len(enough) == 0:
        raise DatasetError(f"fewer than {MIN_TAIL_PAIRS} impostor pairs: cannot fit the tail")
    anchor = int(enough[-1])
    fmr = np.array([_sig(c / total) for c in counts_at_or_above])  # the values the table ships
    start = int(np.nonzero(fmr <= TAIL_FMR_START)[0][0])
    start = min(start, anchor - 3)  # at least 4 points
    if start < 0:
        raise DatasetError("impostor distribution too narrow to fit the tail")
    dist = np.array([sim.distance_for_similarity(g) for g in grid])
    x, y = dist[start : anchor + 1], np.log10(fmr[start : anchor + 1])
    xa, ya = dist[anchor], np.log10(fmr[anchor])
    slope = float(((x - xa) * (y - ya)).sum() / ((x - xa) ** 2).sum())
    if not slope > 0:
        raise DatasetError(f"tail fit has non-positive slope {slope} in distance")
    residuals = y - (ya + slope * (x - xa))
    return {
        "from": float(grid[anchor]),
        "intercept": float(ya - slope * xa),
        "slope": slope,
        "fit_range": [float(grid[start]), float(grid[anchor])],
        "fit_fmr_range": [_sig(fmr[start]), _sig(fmr[anchor])],
        "fit_points": len(x),
        "anchor_pairs": int(counts_at_or_above[anchor]),
        "residual_rms_log10": _sig(float(np.sqrt(np.mean(residuals**2))), 4),
        "residual_max_abs_log10": _sig(float(np.abs(residuals).max()), 4),
    }


def build_table(scores: PairScores, model_version: str, provenance: dict) -> dict:
    """The calibration.json document for these pair scores."""
    grid = np.round(np.arange(0.0, 100.0 + GRID_STEP / 2, GRID_STEP), 4)
    bins = np.round(grid * STEPS).astype(int)
    imp_ge = scores.impostor_hist[::-1].cumsum()[::-1][bins]
    gen_lt = np.concatenate([[0], scores.genuine_hist.cumsum()])[bins]
    n_imp, n_gen = scores.n_impostor, scores.n_genuine
    tail = fit_tail(grid, imp_ge, n_imp)
    top = np.sort(scores.impostor_hist.nonzero()[0])[-1] / STEPS if n_imp else None
    prov = dict(provenance)
    prov.update(
        {
            "impostor_pairs": n_imp,
            "genuine_pairs": n_gen,
            "max_impostor_similarity": top,
            "similarity_map": f"100 / (1 + (d / {sim.D50})^{sim.EXPONENT:g}), d = L2 distance",
            "tail_fit": {k: v for k, v in tail.items() if k not in ("from", "intercept", "slope")},
            "tail_note": (
                f"FMR above Similarity {tail['from']} is extrapolated from the fitted line, not measured "
                f"(fewer than {MIN_TAIL_PAIRS} impostor pairs score that high)"
            ),
        }
    )
    return {
        "model_version": model_version,
        "provenance": prov,
        "similarity": grid.tolist(),
        "fmr": [max(FMR_FLOOR, _sig(v / n_imp)) if v else 0.0 for v in imp_ge],
        "fnmr": [_sig(v / n_gen) if n_gen else 0.0 for v in gen_lt],
        "tail": {
            "from": tail["from"],
            "variable": "distance",
            "intercept": tail["intercept"],
            "slope": tail["slope"],
        },
    }


def base_provenance(command: str, dataset: str, detector: str, embedder: str, counts: dict) -> dict:
    """Provenance fields common to every generated table."""
    return {
        "command": command,
        "generated": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "dataset": dataset,
        "detector": detector,
        "embedder": embedder,
        "versions": package_versions(),
        **counts,
    }


def default_output() -> Path:
    """Where the shipped table lives inside the package."""
    from faceprint.calibration import default_path

    return default_path()


def run_calibration(engine, output: Path, command: str, max_images: int | None = None, console=None) -> dict:
    """Embed LFW (cached), score all pairs, write the table to `output`; returns a summary."""
    import json

    from faceprint import calibration
    from faceprint.accuracy import lfw
    from faceprint.accuracy.embeddings import DETECTED, embed_dataset, progress_bar
    from faceprint.accuracy.pairs import score_all_pairs

    images = lfw.read_images()
    if max_images:
        images = lfw.LfwImages(
            images.paths[:max_images], images.persons[:max_images], images.genders[:max_images]
        )
    es = embed_dataset(
        engine, "lfw", lfw.lfw_root(), images.paths, policy="central", fallback=True, console=console
    )
    keep = es.status == DETECTED
    ids = images.identity_ids()[keep]
    with progress_bar(console) as bar:
        task = bar.add_task("Scoring all LFW pairs", total=int(keep.sum()))
        scores = score_all_pairs(
            es.vectors[keep], ids, progress=lambda done: bar.update(task, completed=done)
        )
    kept_paths = [p for p, k in zip(images.paths, keep, strict=True) if k]
    order = np.argsort(-scores.high_bin)[:10]
    top = [
        {
            "a": kept_paths[scores.high_i[k]],
            "b": kept_paths[scores.high_j[k]],
            "similarity": scores.high_bin[k] / STEPS,
        }
        for k in order
    ]
    counts = {
        "images": len(images),
        "images_scored": int(keep.sum()),
        "images_without_face": int((~keep).sum()),
        "identities": len(np.unique(ids)),
        "highest_impostor_pairs": top,
    }
    prov = base_provenance(
        command,
        "LFW deep-funneled (lfw/images.csv under the data folder)",
        getattr(engine.detector, "name", "?"),
        getattr(engine.embedder, "name", "?"),
        counts,
    )
    doc = build_table(scores, engine.model_version, prov)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=1) + "\n")
    calibration.table.cache_clear()
    cal = calibration.table(str(output))
    return {
        "output": str(output),
        "model_version": engine.model_version,
        "images_scored": counts["images_scored"],
        "images_without_face": counts["images_without_face"],
        "identities": counts["identities"],
        "impostor_pairs": scores.n_impostor,
        "genuine_pairs": scores.n_genuine,
        "tail": doc["tail"],
        "tail_fit": doc["provenance"]["tail_fit"],
        "fmr_at_80": cal.false_match_rate(80.0),
        "fnmr_at_80": cal.false_non_match_rate(80.0),
        "compare_threshold_fmr_1e-4": cal.threshold_for_fmr(1e-4),
        "search_threshold_n_10000": cal.threshold_for_fmr(0.01 / 10_000),
        "search_threshold_n_1000000": cal.threshold_for_fmr(0.01 / 1_000_000),
    }
