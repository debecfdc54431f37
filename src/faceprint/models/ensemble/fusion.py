"""Fit and measure the dlib+faceres fusion on LFW, by people (`faceprint.accuracy.folds`).

Each part is S-normed against its own model's cohort (cohort folds). The fusion weight is chosen on the
calibration folds only: the weight (grid step 0.05) with the best mean TAR at FMR 1e-5 and 1e-6 there. The
fused score's calibration table is measured on the same calibration folds. TAR on the held-out folds is
what is reported. Images count when both models detected the face (status DETECTED in both caches).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceprint.accuracy.normalised import AllPairs, all_pairs, tar_at_fmr
from faceprint.scoring import Cohort, cohort_stats

WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))
TARGET_FMRS = (1e-4, 1e-5, 1e-6)
SELECTION_FMRS = (1e-5, 1e-6)  # the weight maximises the mean TAR at these on the calibration folds


@dataclass
class PartSet:
    """One model's LFW vectors (rows aligned with the other part's), its cohort and top k."""

    name: str
    vectors: np.ndarray
    cohort: Cohort
    top_k: int


def snorm_pairs(part: PartSet, mask: np.ndarray, ids: np.ndarray) -> AllPairs:
    v = part.vectors[mask]
    return all_pairs(v, ids[mask], cohort_stats(v, part.cohort.vectors, part.top_k))


def fuse(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    return weight * np.asarray(a, np.float64) + (1.0 - weight) * np.asarray(b, np.float64)


def tars(genuine: np.ndarray, impostor: np.ndarray, fmrs=TARGET_FMRS) -> dict[str, float]:
    return {f"{f:.0e}": round(tar_at_fmr(genuine, impostor, f)[0], 4) for f in fmrs}


def choose_weight(pa: AllPairs, pb: AllPairs, grid=WEIGHT_GRID) -> tuple[float, list[dict]]:
    """The weight of the first part with the best mean TAR at SELECTION_FMRS, and every weight's TARs."""
    rows = []
    for w in grid:
        imp = fuse(pa.impostor, pb.impostor, w).astype(np.float32)
        t = tars(fuse(pa.genuine, pb.genuine, w), imp, SELECTION_FMRS)
        rows.append({"weight": w, **t, "mean": round(float(np.mean(list(t.values()))), 4)})
    best = max(rows, key=lambda r: (r["mean"], -abs(r["weight"] - 0.5)))
    return float(best["weight"]), rows


def fit_and_evaluate(a: PartSet, b: PartSet, persons: list[str], usable: np.ndarray, ids: np.ndarray) -> dict:
    """Choose the weight on the calibration folds; TAR of each part and of the fusion on held-out people."""
    from faceprint.accuracy import folds

    calib = folds.in_role(persons, "calibration") & usable
    held = folds.in_role(persons, "heldout") & usable
    ca, cb = snorm_pairs(a, calib, ids), snorm_pairs(b, calib, ids)
    weight, grid = choose_weight(ca, cb)
    ha, hb = snorm_pairs(a, held, ids), snorm_pairs(b, held, ids)
    fused_imp = fuse(ha.impostor, hb.impostor, weight).astype(np.float32)
    return {
        "weight": weight,
        "weight_grid_calibration_folds": grid,
        "calibration_pairs": {"genuine": len(ca.genuine), "impostor": len(ca.impostor)},
        "heldout_pairs": {"genuine": len(ha.genuine), "impostor": len(ha.impostor)},
        "heldout_images": int(held.sum()),
        "heldout_people": len(set(np.asarray(ids)[held].tolist())),
        "heldout_tar": {
            a.name: tars(ha.genuine, ha.impostor),
            b.name: tars(hb.genuine, hb.impostor),
            f"{a.name}+{b.name}": tars(fuse(ha.genuine, hb.genuine, weight), fused_imp),
        },
        "_calibration_pairs": (ca, cb),
    }


def fused_table(
    result: dict, a: PartSet, b: PartSet, ids_calib: np.ndarray, version: str, command: str
) -> dict:
    """The fused score's calibration table (calibration folds), in `faceprint.calibration`'s format."""
    from faceprint.accuracy.calibrate import (
        SNORM_MAP,
        base_provenance,
        build_table,
        histograms,
        person_weights,
        weighting,
    )

    ca, cb = result["_calibration_pairs"]
    w = result["weight"]
    genuine, impostor = fuse(ca.genuine, cb.genuine, w), fuse(ca.impostor, cb.impostor, w)
    weights = person_weights(ids_calib[ca.genuine_i])
    scores = histograms(SNORM_MAP.percent(genuine), SNORM_MAP.percent(impostor), weights)
    counts = {
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "weight_grid": result["weight_grid_calibration_folds"],
    }
    prov = base_provenance(
        command,
        "LFW deep-funneled, calibration folds only (both models detected the face)",
        "auto",
        "dlib+faceres",
        counts,
    )
    score = {
        "kind": "fused-s-norm",
        "metric": "weight x S-norm(dlib) + (1 - weight) x S-norm(faceres) of each part's cosine",
        "weight": w,
        "parts": [
            {
                "model": p.name,
                "model_version": p.cohort.model_version,
                "cohort": p.cohort.fingerprint,
                "top_k": p.top_k,
                "dim": p.cohort.dim,
            }
            for p in (a, b)
        ],
        "dim": a.cohort.dim + b.cohort.dim,
    }
    doc = build_table(scores, version, prov, SNORM_MAP, score)
    doc["provenance"].update(weighting(len(genuine), scores.n_genuine))
    return doc


def write_table(doc: dict, path: Path) -> Path:
    from faceprint.files import private_dir, write_atomically

    private_dir(path.parent)
    return write_atomically(path, lambda fh: fh.write((json.dumps(doc, indent=1) + "\n").encode()))
