"""Build the cohort (`faceprint/data/cohort.npz`) and the calibration table (`calibration.json`) from LFW.

LFW's people are split into folds by a hash of the name (`faceprint.accuracy.folds`). The cohort is the
vectors of `COHORT_SIZE` images of people of the cohort folds (one image per person first). The table is
measured on the calibration folds only: the impostor distribution is every cross-identity pair of their
images in which the detector found a face (images where it found none are left out: in use, such an
image never yields a score), the genuine distribution every same-identity pair, both scored with the
cohort-normalised score (adaptive S-norm, `faceprint.scoring`). The held-out folds are left for the audit.
The table format is `faceprint.calibration`'s.

Tail: log10(FMR) is fitted as a straight line in the score variable x (the normalised score, or for a raw
table the embedding distance d) over the high-score end of the
measured impostor distribution, from the first grid point with FMR <= 1e-4 up to the anchor, the last 0.1
grid point with at least 100 impostor pairs at or above it. The line is forced through the anchor, so the
table and the tail join without a step and the FMR stays monotone; beyond the anchor it is an extrapolation,
recorded as such in the provenance with the fit range and residuals. Why stop at 100 pairs: the top of
LFW's "impostor" distribution is label noise (the same man filed under two names, the same photograph under
two names), a dozen pairs at distances near 0 that would otherwise flatten the tail at about 1e-7 and make
every threshold above Similarity 98 look useless. Why the score variable: the Similarity map compresses
near 100, so a line in Similarity bends the tail; in the score variable the measured log-FMR is close to
straight.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from faceprint.accuracy.lfw import DatasetError
from faceprint.accuracy.pairs import BINS, STEPS, PairScores, to_bins
from faceprint.calibration import FMR_FLOOR
from faceprint.similarity_maps import DistanceMap, LogisticMap, SimilarityMap

GRID_STEP = 0.1  # Similarity step of the shipped table
MIN_TAIL_PAIRS = 100
TAIL_FMR_START = 1e-4
COHORT_SIZE = 3000
TOP_K = 400
BALANCED_COHORT = False  # see docs/accuracy.md, "The cohort": measured both ways; a model may differ
# (`FaceModel.balanced_cohort`: sface's cohort is gender-balanced)
# Similarity of a normalised score z: 100 / (1 + exp(-(z - centre) / scale)). Fixed (a table rebuilt on other
# data keeps the scale), chosen once on the calibration folds so that Rekognition's 80 still means a lax
# threshold (FMR about 1e-2, as 80 did with raw scores), the 1:1 default sits near 92 and genuine pairs
# spread over 90-99 instead of crowding at 99.9.
SNORM_MAP = LogisticMap(centre=-1.8, scale=2.6)


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


def fit_tail(
    grid: np.ndarray, counts_at_or_above: np.ndarray, total: int, smap: SimilarityMap | None = None
) -> dict:
    """Anchored log-linear fit of the impostor tail in the map's variable (see the module docstring)."""
    smap = smap or DistanceMap()
    enough = np.nonzero(counts_at_or_above >= MIN_TAIL_PAIRS)[0]
    if len(enough) == 0:
        raise DatasetError(f"fewer than {MIN_TAIL_PAIRS} impostor pairs: cannot fit the tail")
    anchor = int(enough[-1])
    fmr = np.array([_sig(c / total) for c in counts_at_or_above])  # the values the table ships
    start = int(np.nonzero(fmr <= TAIL_FMR_START)[0][0])
    start = min(start, anchor - 3)  # at least 4 points
    if start < 0:
        raise DatasetError("impostor distribution too narrow to fit the tail")
    dist = np.array([smap.inverse(g) for g in grid])
    x, y = dist[start : anchor + 1], np.log10(fmr[start : anchor + 1])
    xa, ya = dist[anchor], np.log10(fmr[anchor])
    slope = float(((x - xa) * (y - ya)).sum() / ((x - xa) ** 2).sum())
    falling = slope > 0 if smap.variable == "distance" else slope < 0
    if not falling:
        raise DatasetError(f"tail fit has slope {slope} in {smap.variable}: the FMR would not fall")
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


def histograms(
    genuine: np.ndarray, impostor: np.ndarray, genuine_weights: np.ndarray | None = None
) -> PairScores:
    """PairScores holding only the Similarity histograms of these genuine and impostor scores
    (`genuine_weights`: a weight per genuine pair, e.g. 1 / pairs of its person)."""
    empty = np.zeros(0, np.int32)
    return PairScores(
        groups=[],
        genuine_hist=np.bincount(to_bins(genuine), weights=genuine_weights, minlength=BINS),
        impostor_hist=np.bincount(to_bins(impostor), minlength=BINS),
        impostor_hist_by_group=np.zeros((0, BINS), np.int64),
        genuine_i=empty,
        genuine_j=empty,
        genuine_bin=empty,
        high_i=empty,
        high_j=empty,
        high_bin=empty,
        record_from=BINS,
    )


def build_table(
    scores: PairScores,
    model_version: str,
    provenance: dict,
    smap: SimilarityMap | None = None,
    score: dict | None = None,
) -> dict:
    """The calibration.json document for these pair scores (Similarity on the map `smap`)."""
    smap = smap or DistanceMap()
    grid = np.round(np.arange(0.0, 100.0 + GRID_STEP / 2, GRID_STEP), 4)
    bins = np.round(grid * STEPS).astype(int)
    imp_ge = scores.impostor_hist[::-1].cumsum()[::-1][bins]
    gen_lt = np.concatenate([[0], scores.genuine_hist.cumsum()])[bins]
    n_imp, n_gen = scores.n_impostor, scores.n_genuine
    tail = fit_tail(grid, imp_ge, n_imp, smap)
    top = np.sort(scores.impostor_hist.nonzero()[0])[-1] / STEPS if n_imp else None
    prov = dict(provenance)
    prov.update(
        {
            "impostor_pairs": n_imp,
            "genuine_pairs": n_gen,
            "max_impostor_similarity": top,
            "similarity_map": _describe(smap),
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
            "variable": smap.variable,
            "intercept": tail["intercept"],
            "slope": tail["slope"],
        },
        "similarity_map": smap.to_json(),
        "score": score or {"kind": "raw", "metric": "L2 distance of unit vectors"},
    }


def _describe(smap: SimilarityMap) -> str:
    if isinstance(smap, LogisticMap):
        return f"100 / (1 + exp(-(z - {smap.centre:g}) / {smap.scale:g})), z = adaptive S-norm score"
    return f"100 / (1 + (d / {smap.d50:g})^{smap.exponent:g}), d = L2 distance"


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


def raw_path(table_path: Path) -> Path:
    """Where the raw-score table lives beside a calibration table."""
    return Path(table_path).with_name(Path(table_path).stem + "_raw.json")


def weighting(genuine_pairs: int, people: int) -> dict:
    return {
        "genuine_pairs": genuine_pairs,
        "people_with_genuine_pairs": people,
        "fnmr_weighting": "per person: each person with 2+ images counts once",
    }


def person_weights(genuine_person: np.ndarray) -> np.ndarray:
    """Weight 1 / (genuine pairs of the person) per genuine pair: the table's FNMR is then the mean over
    people, so one person with hundreds of photos does not stand for everyone."""
    counts = np.bincount(genuine_person)
    return 1.0 / counts[genuine_person]


def _distance(cos: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.asarray(cos, np.float64)))


def balanced_for(model) -> bool:
    """Whether `faceprint calibrate` builds `model`'s LFW cohort gender-balanced (its recipe)."""
    return bool(getattr(model, "balanced_cohort", BALANCED_COHORT))


def pick_cohort(images, es, size: int = COHORT_SIZE, balanced: bool = BALANCED_COHORT) -> np.ndarray:
    """Indices (into `images`) of the cohort images: detected faces of cohort-fold people."""
    from faceprint.accuracy import folds, lfw
    from faceprint.accuracy.embeddings import DETECTED

    genders = lfw.person_genders(images) if balanced else None
    return folds.pick_cohort(images.persons, es.status == DETECTED, size, genders)


def build_cohort(images, es, model_version: str, command: str, balanced: bool = BALANCED_COHORT):
    """The shipped cohort: vectors of cohort-fold images, with provenance (no images, no names)."""
    from faceprint.accuracy import folds, lfw
    from faceprint.scoring import Cohort

    idx = pick_cohort(images, es, COHORT_SIZE, balanced)
    genders = lfw.person_genders(images)
    people = {images.persons[i] for i in idx}
    women = sum(genders.get(images.persons[i]) == "female" for i in idx)
    return Cohort.from_vectors(
        es.vectors[idx],
        model_version,
        {
            "command": command,
            "generated": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            "source": "LFW deep-funneled: face vectors (not images) of public figures",
            "folds": f"people with sha1(name) mod {folds.FOLDS} in {list(folds.COHORT_FOLDS)}",
            "faces": len(idx),
            "people": len(people),
            "women_faces": int(women),
            "men_faces": int(sum(genders.get(images.persons[i]) == "male" for i in idx)),
            "gender_balanced": bool(balanced),
            "versions": package_versions(),
        },
    )


def person_folders(folder: Path):
    """(images, root, dataset name) of a folder holding one sub-folder of face images per person."""
    import hashlib

    from faceprint.accuracy import lfw

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(f"--data {folder} is not a folder")
    suffixes = {".jpg", ".jpeg", ".png", ".webp"}
    paths, persons = [], []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(person.iterdir()):
            if image.suffix.lower() in suffixes:
                paths.append(str(image.relative_to(folder)))
                persons.append(person.name)
    if len(set(persons)) < 10:
        raise DatasetError(f"--data {folder} holds {len(set(persons))} people; calibration needs many more")
    dataset = "data-" + hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    return lfw.LfwImages(paths, persons, [""] * len(paths)), folder, dataset


def run_calibration(
    engine,
    output: Path,
    command: str,
    max_images: int | None = None,
    console=None,
    cohort_file: Path | None = None,
    cohort_output: Path | None = None,
    data: Path | None = None,
) -> dict:
    """Embed LFW (cached), or the folder `data` (one sub-folder of images per person, split into cohort,
    calibration and held-out people by the same hash of their names as LFW); write the cohort (unless
    `cohort_file` is given) and the table measured with it on the calibration people's pairs; returns a
    summary. The table and cohort are of `engine`'s model (its `model_version`)."""
    import json

    from faceprint import calibration, scoring
    from faceprint.accuracy import folds, lfw
    from faceprint.accuracy.embeddings import DETECTED, embed_dataset
    from faceprint.accuracy.normalised import all_pairs

    if data is not None:
        images, root, dataset = person_folders(data)
        policy, fallback, balanced = "largest", False, False
    else:
        images, root, dataset = lfw.read_images(), lfw.lfw_root(), "lfw"
        policy, fallback = "central", True
        balanced = balanced_for(getattr(engine, "model", None))
    if max_images:
        images = lfw.LfwImages(
            images.paths[:max_images], images.persons[:max_images], images.genders[:max_images]
        )
    es = embed_dataset(engine, dataset, root, images.paths, policy=policy, fallback=fallback, console=console)
    if cohort_file is not None:
        cohort = scoring.Cohort.load(cohort_file)
        cohort_written = None
    else:
        cohort = build_cohort(images, es, engine.model_version, command, balanced)
        cohort_written = cohort.save(cohort_output or output.with_name("cohort.npz"))
    if cohort.model_version != engine.model_version or cohort.dim != engine.dim:
        raise scoring.CohortError(
            f"cohort {cohort_file} holds {cohort.dim}-D vectors of model {cohort.model_version!r}; the "
            f"engine computes {engine.dim}-D vectors of model {engine.model_version!r}"
        )
    calib = folds.in_role(images.persons, "calibration") & (es.status == DETECTED)
    ids = images.identity_ids()[calib]
    if len(np.unique(ids)) < 2:
        raise DatasetError("the calibration folds hold fewer than two people with a detected face")
    vectors = es.vectors[calib]
    pairs = all_pairs(vectors, ids, scoring.cohort_stats(vectors, cohort.vectors, TOP_K))
    weights = person_weights(ids[pairs.genuine_i])
    scores = histograms(SNORM_MAP.percent(pairs.genuine), SNORM_MAP.percent(pairs.impostor), weights)
    kept_paths = [p for p, k in zip(images.paths, calib, strict=True) if k]
    top_imp = np.argsort(-pairs.impostor)[:10]
    imp_i, imp_j = np.triu_indices(len(vectors), 1)
    not_same = ids[imp_i] != ids[imp_j]
    imp_i, imp_j = imp_i[not_same], imp_j[not_same]
    top = [
        {
            "a": kept_paths[imp_i[k]],
            "b": kept_paths[imp_j[k]],
            "similarity": round(float(SNORM_MAP.percent(pairs.impostor[k])), 2),
        }
        for k in top_imp
    ]
    counts = {
        "images": len(images),
        "images_scored": int(calib.sum()),
        "images_without_face": int((es.status != DETECTED).sum()),
        "identities": len(np.unique(ids)),
        "folds": {role: list(f) for role, f in folds.ROLES.items()},
        "highest_impostor_pairs": top,
    }
    prov = base_provenance(
        command,
        "LFW deep-funneled (lfw/images.csv under the data folder), calibration folds only"
        if data is None
        else f"{root} (one folder per person), calibration-fold people only",
        getattr(engine.detector, "name", "?"),
        getattr(engine.embedder, "name", "?"),
        counts,
    )
    prov["cohort"] = {k: v for k, v in cohort.provenance.items() if k != "versions"}
    score = {
        "kind": "s-norm",
        "metric": "cosine of unit vectors",
        "top_k": TOP_K,
        "cohort": cohort.fingerprint,
        "cohort_faces": len(cohort),
        "dim": cohort.dim,
    }
    doc = build_table(scores, engine.model_version, prov, SNORM_MAP, score)
    doc["provenance"].update(weighting(len(pairs.genuine), scores.n_genuine))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=1) + "\n")
    # the same pairs scored raw: what faceprint did before cohort normalisation (the audit's baseline)
    raw = all_pairs(vectors, ids)
    raw_map = DistanceMap()
    raw_doc = build_table(
        histograms(
            raw_map.percent(_distance(raw.genuine)),
            raw_map.percent(_distance(raw.impostor)),
            person_weights(ids[raw.genuine_i]),
        ),
        engine.model_version,
        {**prov, "highest_impostor_pairs": None, "note": "raw scores (no cohort): the audit's baseline"},
        raw_map,
    )
    raw_doc["provenance"].update(weighting(len(raw.genuine), scores.n_genuine))
    raw_path(output).write_text(json.dumps(raw_doc, indent=1) + "\n")
    calibration.table.cache_clear()
    scoring.clear_cache()
    cal = calibration.table(str(output))
    return {
        "output": str(output),
        "cohort": str(cohort_written or cohort_file),
        "cohort_faces": len(cohort),
        "cohort_gender_balanced": bool(cohort.provenance.get("gender_balanced", False)),
        "model_version": engine.model_version,
        "images_scored": counts["images_scored"],
        "images_without_face": counts["images_without_face"],
        "identities": counts["identities"],
        "impostor_pairs": scores.n_impostor,
        "genuine_pairs": len(pairs.genuine),
        "people_with_genuine_pairs": scores.n_genuine,
        "tail": doc["tail"],
        "tail_fit": doc["provenance"]["tail_fit"],
        "fmr_at_80": cal.false_match_rate(80.0),
        "fnmr_at_80": cal.false_non_match_rate(80.0),
        "compare_threshold_fmr_1e-4": cal.threshold_for_fmr(1e-4),
        "search_threshold_n_10000": cal.threshold_for_fmr(0.01 / 10_000),
        "search_threshold_n_1000000": cal.threshold_for_fmr(0.01 / 1_000_000),
    }
