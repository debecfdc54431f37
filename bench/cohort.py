"""Cohort study: choose k and the cohort size, and compare a gender-balanced cohort with the plain one.

Everything is measured on LFW's held-out folds (people never in the cohort or the calibration folds,
`faceprint.accuracy.folds`), from the cached model vectors of `faceprint calibrate` (run it, or
`faceprint eval lfw`, first: this script embeds nothing). For each cohort (size, k, composition): TAR at
FMR 1e-3..1e-6 over all held-out pairs, and per gender, at one global threshold set to FMR 1e-4 on the
calibration folds, the FMR within each gender, the women/men FMR ratio and each gender's FNMR. The raw
score (no cohort) is the baseline, measured in the same run.

    .venv/bin/python bench/cohort.py [--json]
    .venv/bin/python bench/cohort.py --model sface --ks 100,200,400,800 --balanced-ks 100,200,400,800 --json

`--model NAME` reads that model's cached vectors (default `dlib`, model 2.0, the figures of
docs/accuracy.md's cohort table; an installed model needs its own `faceprint calibrate --model NAME` first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from faceprint.accuracy import folds, lfw
from faceprint.accuracy.embeddings import DETECTED, cache_path
from faceprint.accuracy.normalised import all_pairs, threshold_at_fmr
from faceprint.scoring import cohort_stats, unit

FMRS = (1e-3, 1e-4, 1e-5, 1e-6)


def cached_lfw(model: str = "dlib", detector: str = "auto"):
    """(vectors, persons, genders) of every detected LFW image in model `model`'s accuracy cache."""
    images = lfw.read_images()
    from faceprint.models import get_model

    face_model = get_model(model)
    path = cache_path("lfw", detector, face_model.version, face_model.cache_key())
    if not path.exists():
        sys.exit(
            f"no cached LFW vectors of model {model!r} ({path}): run `faceprint calibrate --model {model}`"
        )
    with np.load(path, allow_pickle=False) as z:
        pos = {str(k): i for i, k in enumerate(z["keys"])}
        status, vectors = z["status"], z["vectors"]
    rows = [pos.get(p, -1) for p in images.paths]
    keep = np.array([r >= 0 and status[r] == DETECTED for r in rows])
    idx = np.array([r for r, k in zip(rows, keep, strict=True) if k])
    persons = [p for p, k in zip(images.persons, keep, strict=True) if k]
    return unit(vectors[idx]), persons, lfw.person_genders(images)


def measure(x, persons, genders, cohort_idx, k, log) -> dict:
    """One configuration (cohort_idx None: raw) on held-out pairs; threshold from calibration pairs."""
    t0 = time.perf_counter()
    person_ids = {p: i for i, p in enumerate(sorted(set(persons)))}
    ids = np.array([person_ids[p] for p in persons])
    gidx = {"female": 0, "male": 1}
    grp = np.array([gidx.get(genders.get(p, ""), -1) for p in persons], np.int8)
    out: dict = {}
    for role in ("calibration", "heldout"):
        m = folds.in_role(persons, role)
        stats = None if cohort_idx is None else cohort_stats(x[m], x[cohort_idx], k)
        out[role] = all_pairs(x[m], ids[m], stats, grp[m])
    t = threshold_at_fmr(out["calibration"].impostor, 1e-4)
    ho = out["heldout"]
    row: dict = {"tar_at_fmr": {f"{f:g}": round(ho.tar_at_fmr(f)[0], 4) for f in FMRS}}
    row["fmr_at_1to1_default"] = float(np.mean(ho.impostor >= t))
    ho_persons = np.array([p for p, k_ in zip(persons, folds.in_role(persons, "heldout"), strict=True) if k_])
    gen_group = grp[folds.in_role(persons, "heldout")][ho.genuine_i]
    for g, gi in gidx.items():
        imp = ho.impostor[ho.impostor_group == gi]
        sel = gen_group == gi
        # FNMR averaged per person (each person with 2+ images counts once), and pair-weighted
        who = ho_persons[ho.genuine_i[sel]]
        miss = ho.genuine[sel] < t
        names, inv = np.unique(who, return_inverse=True)
        per_person = np.bincount(inv, weights=miss) / np.bincount(inv)
        row[g] = {
            "fmr": float(np.mean(imp >= t)),
            "fnmr": round(float(per_person.mean()), 4),
            "fnmr_pairs": round(float(miss.mean()), 4),
            "people": len(names),
        }
    row["women_men_fmr_ratio"] = round(row["female"]["fmr"] / max(row["male"]["fmr"], 1e-12), 2)
    row["pairs"] = {"genuine": len(ho.genuine), "impostor": len(ho.impostor)}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    label = "raw" if cohort_idx is None else f"{len(cohort_idx)} faces, top {k}"
    log(
        f"{label:28s} TAR {row['tar_at_fmr']}  women/men FMR {row['women_men_fmr_ratio']}  "
        f"FNMR women {row['female']['fnmr']:.3f} men {row['male']['fnmr']:.3f}"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--sizes", default="1000,2000,3000,4000")
    ap.add_argument("--ks", default="50,100,200,400")
    ap.add_argument("--size", type=int, default=3000, help="cohort size for the k sweep and balance test")
    ap.add_argument("--k", type=int, default=200, help="k for the size sweep and balance test")
    ap.add_argument("--model", default="dlib", help="face model whose cached vectors are read [dlib: 2.0]")
    ap.add_argument(
        "--balanced-ks", default="", help="also measure the gender-balanced cohort at these k (by_k)"
    )
    args = ap.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    t_start = time.perf_counter()
    x, persons, genders = cached_lfw(args.model)
    usable = np.ones(len(x), bool)
    log(f"{len(x)} detected LFW images; held-out {int(folds.in_role(persons, 'heldout').sum())}")
    result: dict = {"bench": "cohort", "model": args.model, "raw": measure(x, persons, genders, None, 0, log)}
    result["by_k"] = {}
    for k in (int(v) for v in args.ks.split(",")):
        idx = folds.pick_cohort(persons, usable, args.size)
        result["by_k"][str(k)] = measure(x, persons, genders, idx, k, log)
    result["by_size"] = {}
    for size in (int(v) for v in args.sizes.split(",")):
        idx = folds.pick_cohort(persons, usable, size)
        result["by_size"][str(len(idx))] = measure(x, persons, genders, idx, args.k, log)
    idx = folds.pick_cohort(persons, usable, args.size, genders=genders)
    women = sum(genders.get(persons[i]) == "female" for i in idx)
    log(f"balanced cohort: {len(idx)} faces, {women} of women")
    result["balanced"] = measure(x, persons, genders, idx, args.k, log)
    result["balanced"]["faces"] = len(idx)
    result["balanced"]["women_faces"] = int(women)
    if args.balanced_ks:
        result["balanced_by_k"] = {
            str(k): measure(x, persons, genders, idx, k, log)
            for k in (int(v) for v in args.balanced_ks.split(","))
        }
    plain = folds.pick_cohort(persons, usable, args.size)
    result["plain_women_share"] = round(
        sum(genders.get(persons[i]) == "female" for i in plain) / len(plain), 3
    )
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    result["load_avg"] = os.getloadavg()[0]
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
