"""`faceprint eval lfw`: the standard LFW 10-fold verification protocol on lfw/pairs.txt.

Each fold's threshold is the one that maximises accuracy on the other nine folds; the fold is scored
at it. Also reported: ROC AUC and TAR at FAR 1e-3 / 1e-4 over all 6,000 pairs (3,000 impostor pairs,
so FAR 1e-4 is below the protocol's resolution and reads as TAR at zero false accepts), accuracy at
fixed thresholds, and how many images needed a second look (dlib's CNN detector) or the fallback box
because no face was detected.

Raw and cohort-normalised scores side by side: the top-level figures are raw (the protocol as published),
`normalised` holds the same figures for the scorer's normalised Similarity, and a full run (all pairs per
fold) adds `heldout`: TAR at FMR 1e-3..1e-6 over all pairs of LFW's held-out people, both ways.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from rich.console import Console

from faceprint import scoring
from faceprint import similarity as sim
from faceprint.accuracy import folds as person_folds
from faceprint.accuracy import lfw
from faceprint.accuracy.embeddings import DETECTED, FALLBACK, RETRIED, embed_dataset
from faceprint.accuracy.metrics import kfold_accuracy, roc_auc, roc_curve, tar_at_far
from faceprint.accuracy.pairs import pair_similarity

FARS = (1e-3, 1e-4)
HELDOUT_FMRS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5, "1e-6": 1e-6}


def select_pairs(pairs: list[lfw.Pair], per_fold: int | None) -> list[lfw.Pair]:
    """The first `per_fold` same and `per_fold` different pairs of each fold (all when None)."""
    if per_fold is None:
        return pairs
    out, seen = [], {}
    for p in pairs:
        k = (p.fold, p.same)
        if seen.get(k, 0) < per_fold:
            seen[k] = seen.get(k, 0) + 1
            out.append(p)
    return out


def evaluate(
    engine, per_fold: int | None = None, root: Path | None = None, console: Console | None = None
) -> dict:
    """Run the protocol with `engine`; returns the results as a JSON-ready dict (with raw scores)."""
    pairs = select_pairs(lfw.read_pairs(root), per_fold)
    base = lfw.lfw_root(root)
    keys = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    es = embed_dataset(engine, "lfw", base, keys, policy="central", fallback=True, console=console)
    pos = {k: i for i, k in enumerate(es.keys)}
    a = np.array([pos[p.a] for p in pairs])
    b = np.array([pos[p.b] for p in pairs])
    scores = pair_similarity(es.vectors, a, b)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    res = kfold_accuracy(scores, same, folds)
    gen, imp = scores[same], scores[~same]
    fell_back = es.status == FALLBACK
    fallback_keys = {k for k, f in zip(es.keys, fell_back, strict=True) if f}
    fixed = {"rekognition_80": sim.REKOGNITION_DEFAULT_THRESHOLD}
    with contextlib.suppress(FileNotFoundError):  # no raw calibration table yet
        from faceprint.accuracy.scoring_audit import raw_scorer

        fixed["faceprint_compare_default"] = raw_scorer(engine.model).default_compare_threshold()
    out = {
        "protocol": "LFW pairs.txt, 10-fold, threshold chosen on the other 9 folds",
        "images": len(keys),
        "pairs": len(pairs),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
        "detected": int((es.status == DETECTED).sum()),
        "detected_by_cnn_retry": int((es.status == RETRIED).sum()),
        "fallback": int(fell_back.sum()),
        "fallback_box": None if es.fallback_box is None else [round(float(v), 1) for v in es.fallback_box],
        "pairs_with_fallback": int(sum(p.a in fallback_keys or p.b in fallback_keys for p in pairs)),
        "accuracy_mean": res.mean,
        "accuracy_std": res.std,
        "accuracy_standard_error": res.standard_error,
        "fold_accuracies": res.accuracies.tolist(),
        "fold_thresholds_similarity": [round(float(t), 3) for t in res.thresholds],
        "fold_thresholds_distance": [round(sim.distance_for_similarity(t), 4) for t in res.thresholds],
        "roc_auc": roc_auc(gen, imp),
        "far_resolution": 1.0 / max(1, len(imp)),
        "tar_at_far": {},
        "accuracy_at_fixed_threshold": {},
        "detector": getattr(engine.detector, "name", "?"),
        "embedder": getattr(engine.embedder, "name", "?"),
        "model": engine.model.name,
        "model_version": engine.model_version,
        "calibration": engine.model.calibration().status,
    }
    for far in FARS:
        tar, t = tar_at_far(gen, imp, far)
        out["tar_at_far"][f"{far:g}"] = {"tar": tar, "threshold": round(t, 3) if np.isfinite(t) else None}
    for name, t in fixed.items():
        out["accuracy_at_fixed_threshold"][name] = {
            "threshold": t,
            "accuracy": float(np.mean((scores >= t) == same)),
        }
    scorer = engine.model.scorer()  # the model's own table and cohort (uncalibrated: raw cosines)
    scorer.check(engine.model_version, engine.dim)
    stats = scorer.stats(es.vectors)
    cos = np.einsum("ij,ij->i", scoring.unit(es.vectors[a]), scoring.unit(es.vectors[b]))
    norm = scorer.percent(scoring.s_norm(cos, stats[a], stats[b]))
    res_n = kfold_accuracy(norm, same, folds)
    ngen, nimp = norm[same], norm[~same]
    out["normalised"] = {
        "scorer": scorer.name,
        "accuracy_mean": res_n.mean,
        "accuracy_std": res_n.std,
        "accuracy_standard_error": res_n.standard_error,
        "roc_auc": roc_auc(ngen, nimp),
        "tar_at_far": {},
        "accuracy_at_fixed_threshold": {},
        "note": "pairs.txt people include cohort-fold people; held-out figures are in `heldout`",
    }
    for far in FARS:
        tar, t = tar_at_far(ngen, nimp, far)
        out["normalised"]["tar_at_far"][f"{far:g}"] = {
            "tar": tar,
            "threshold": round(t, 3) if np.isfinite(t) else None,
        }
    for name, t in {
        "rekognition_80": sim.REKOGNITION_DEFAULT_THRESHOLD,
        "faceprint_compare_default": scorer.default_compare_threshold(),
    }.items():
        out["normalised"]["accuracy_at_fixed_threshold"][name] = {
            "threshold": t,
            "accuracy": float(np.mean((norm >= t) == same)),
        }
    if per_fold is None:
        out["heldout"] = heldout_tar(engine, scorer, root, console)
    out["_scores"] = {"genuine": gen, "impostor": imp}
    return out


def heldout_tar(engine, scorer, root: Path | None = None, console: Console | None = None) -> dict:
    """TAR at FMR 1e-3..1e-6 over all pairs of the held-out folds' images, raw and normalised."""
    from faceprint.accuracy.normalised import all_pairs

    images = lfw.read_images(root)
    held = person_folds.in_role(images.persons, "heldout")
    keys = [p for p, h in zip(images.paths, held, strict=True) if h]
    persons = [p for p, h in zip(images.persons, held, strict=True) if h]
    es = embed_dataset(
        engine, "lfw", lfw.lfw_root(root), keys, policy="central", fallback=True, console=console
    )
    keep = es.status == DETECTED
    ids = np.unique(np.array(persons)[keep], return_inverse=True)[1]
    x = es.vectors[keep]
    out: dict = {"people": int(ids.max() + 1) if len(ids) else 0, "images": int(keep.sum())}
    for name, stats in (("raw", None), ("normalised", scorer.stats(x))):
        pairs = all_pairs(x, ids, stats)
        out[name] = {key: pairs.tar_at_fmr(f)[0] for key, f in HELDOUT_FMRS.items()}
        out["pairs"] = {"genuine": len(pairs.genuine), "impostor": len(pairs.impostor)}
    return out


def plot(result: dict, path: Path) -> Path:
    """ROC (log FAR) and score distributions, with the thresholds marked; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen, imp = result["_scores"]["genuine"], result["_scores"]["impostor"]
    far, tar, _ = roc_curve(gen, imp)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(np.maximum(far, 1e-5), tar, lw=1.8)
    ax1.set_xscale("log")
    ax1.set_xlim(1 / max(1, len(imp)) / 2, 1)
    ax1.set_ylim(max(0.0, float(tar[far <= 1e-2].min()) - 0.02) if (far <= 1e-2).any() else 0, 1.002)
    ax1.set_xlabel("false accept rate (log)")
    ax1.set_ylabel("true accept rate")
    ax1.set_title(
        f"LFW ROC: accuracy {100 * result['accuracy_mean']:.2f}% ± {100 * result['accuracy_std']:.2f}, "
        f"AUC {result['roc_auc']:.4f}",
        fontsize=10,
    )
    ax1.grid(True, which="both", alpha=0.3)
    bins = np.linspace(min(gen.min(), imp.min()), 100, 80)
    ax2.hist(imp, bins=bins, alpha=0.6, label=f"different people ({len(imp)})", color="tab:red")
    ax2.hist(gen, bins=bins, alpha=0.6, label=f"same person ({len(gen)})", color="tab:green")
    ax2.axvline(
        float(np.mean(result["fold_thresholds_similarity"])), color="k", ls="--", label="10-fold threshold"
    )
    for name, v in result["accuracy_at_fixed_threshold"].items():
        ax2.axvline(v["threshold"], ls=":", color="tab:blue" if "rek" in name else "tab:purple", label=name)
    ax2.set_xlabel("Similarity")
    ax2.set_ylabel("pairs")
    ax2.set_title(
        f"{result['pairs']} pairs; {result['fallback']} of {result['images']} images used the fallback box",
        fontsize=10,
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
