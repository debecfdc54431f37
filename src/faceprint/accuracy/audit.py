"""`faceprint audit`: verification, identification and detection audit, written as HTML + JSON.

0. Scoring: raw against cohort-normalised scores, side by side, on LFW's held-out folds
   (`faceprint.accuracy.scoring_audit`).
1. Verification on all pairs of LFW's held-out people by gender, and by perceived race on the 62-person
   attribute subset (cohort-normalised scores).
2. Identification, ACLU-style: Congress portraits searched against every LFW face; alternative photos
   of members searched against LFW plus the portraits (normalised; the raw figures beside them).
3. Detection: share of UTKFace crops where a face is found, by race, gender and age band.
Embeddings are cached (see `faceprint.accuracy.embeddings`), so a second run skips the slow part.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console

from faceprint import scoring
from faceprint import similarity as sim
from faceprint.accuracy import audit_figures as figs
from faceprint.accuracy import congress as cg
from faceprint.accuracy import detection_audit as da
from faceprint.accuracy import folds, lfw, scoring_audit
from faceprint.accuracy.embeddings import DETECTED, accuracy_cache_dir, embed_dataset, progress_bar
from faceprint.accuracy.verification import demographic_verification
from faceprint.config import data_dir

REKOGNITION = "Rekognition 80"
FACEPRINT = "faceprint default"


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (
        "faceprint",
        "numpy",
        "scipy",
        "matplotlib",
        "dlib-bin",
        "onnxruntime",
        "opencv-python-headless",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _pairs_progress(
    console: Console | None, description: str, n: int
) -> tuple[object, Callable[[int], None]]:
    bar = progress_bar(console)
    task = bar.add_task(description, total=n)
    return bar, lambda done: bar.update(task, completed=done)


def _verification(
    es,
    images: lfw.LfwImages,
    person_label: dict[str, str],
    groups: list[str],
    thresholds,
    console,
    n_boot,
    title,
    scorer,
) -> dict:
    keep = es.status == DETECTED
    persons = [images.persons[i] for i in range(len(images))]
    names = sorted(set(persons))
    pid = {p: i for i, p in enumerate(names)}
    ids_all = np.array([pid[p] for p in persons], dtype=np.int64)
    gidx = {g: i for i, g in enumerate(groups)}
    person_group = np.array([gidx.get(person_label.get(p, ""), -1) for p in names], dtype=np.int64)
    no_face = {}
    for g in groups:
        sel = person_group[ids_all] == gidx[g]
        no_face[g] = (int((sel & ~keep).sum()), int(sel.sum()))
    no_face["all"] = (int((~keep).sum()), len(keep))
    bar, update = _pairs_progress(console, title, int(keep.sum()))
    with bar:
        vectors = es.vectors[keep]
        stats = scorer.stats(vectors) if scorer.normalised else None
        out = demographic_verification(
            vectors,
            ids_all[keep],
            person_group,
            groups,
            thresholds,
            no_face,
            update,
            n_boot,
            scorer=scorer,
            stats=stats,
        )
    out["images_scored"] = int(keep.sum())
    out["images_without_face"] = int((~keep).sum())
    return out


def _lfw_subset(images: lfw.LfwImages, attrs: dict, limit: int) -> lfw.LfwImages:
    """Quick-run subset: the first limit/2 images plus limit/2 attribute-subset images spread over people."""
    in_attrs = [i for i, p in enumerate(images.paths) if p in attrs]
    spread = in_attrs[:: max(1, len(in_attrs) // max(1, limit // 2))][: limit // 2]
    idx = sorted(set(range(limit - len(spread))) | set(spread))
    return lfw.LfwImages(
        [images.paths[i] for i in idx], [images.persons[i] for i in idx], [images.genders[i] for i in idx]
    )


def run_audit(
    engine,
    out_dir: Path,
    command: str,
    limit: int | None = None,
    n_boot: int = 1000,
    console: Console | None = None,
) -> dict:
    """Run all three parts, write figures, audit.json and audit.html into `out_dir`; return the results."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    scorer = engine.model.scorer()
    scorer.check(engine.model_version, engine.dim)
    if scorer.table is None:
        raise scoring.CalibrationMismatchError(
            f"face model {engine.model.name!r} is not calibrated: its false match rates are unknown; run "
            f"`faceprint calibrate --model {engine.model.name}` before auditing it"
        )
    table = scorer.table
    out_dir.mkdir(parents=True, exist_ok=True)
    t_cmp = scorer.default_compare_threshold()
    verify_thresholds = {REKOGNITION: sim.REKOGNITION_DEFAULT_THRESHOLD, FACEPRINT: t_cmp}

    # --- LFW embeddings -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    images = lfw.read_images()
    attrs = lfw.read_attributes()
    if limit:
        images = _lfw_subset(images, attrs, limit)
    lfw_dir = lfw.lfw_root()
    es = embed_dataset(engine, "lfw", lfw_dir, images.paths, policy="central", fallback=True, console=console)
    timings["embed_lfw"] = time.perf_counter() - t0

    # --- 0. Raw against normalised scores, held-out people -----------------------------------------
    t0 = time.perf_counter()
    genders = lfw.person_genders(images)
    keep = es.status == DETECTED
    kept_persons = [p for p, k in zip(images.persons, keep, strict=True) if k]
    raw = scoring_audit.raw_scorer(engine.model)
    scorers = {"raw": raw, "normalised": scorer}
    comparison = scoring_audit.compare(scorers, es.vectors[keep], kept_persons, genders)
    timings["scoring"] = time.perf_counter() - t0

    # --- 1. Verification ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    held = [i for i, p in enumerate(images.persons) if folds.fold_of(p) in folds.HELDOUT_FOLDS]
    held_images = lfw.LfwImages(
        [images.paths[i] for i in held], [images.persons[i] for i in held], [images.genders[i] for i in held]
    )
    by_gender = _verification(
        es.subset(held_images.paths),
        held_images,
        genders,
        ["female", "male"],
        verify_thresholds,
        console,
        n_boot,
        "Scoring LFW pairs by gender",
        scorer,
    )
    races = lfw.person_races(attrs)
    sub = [i for i, p in enumerate(images.paths) if p in attrs]
    sub_images = lfw.LfwImages(
        [images.paths[i] for i in sub], [images.persons[i] for i in sub], [""] * len(sub)
    )
    by_race = _verification(
        es.subset(sub_images.paths),
        sub_images,
        races,
        list(lfw.RACES),
        verify_thresholds,
        console,
        n_boot,
        "Scoring attribute-subset pairs by race",
        scorer,
    )
    by_race["person_labels"] = {p: races[p] for p in sorted(set(sub_images.persons))}
    timings["verification"] = time.perf_counter() - t0

    # --- 2. Identification ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    identification = _identification(engine, images, es, scorers, console, limit)
    timings["identification"] = time.perf_counter() - t0

    # --- 3. Detection ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    utk = da.read_labels()
    if limit:
        utk = utk[:: max(1, len(utk) // limit)][:limit]
    det = embed_dataset(engine, "utkface", da.utk_root(), [u.file for u in utk], embed=False, console=console)
    found = det.status == DETECTED
    rates = da.detection_rates(utk, found)
    detection = {
        "images": len(utk),
        "found": int(found.sum()),
        "rates": rates,
        "miss_ratio": {facet: da.miss_ratio(rows) for facet, rows in rates.items()},
        "computed": det.computed,
    }
    timings["detection"] = time.perf_counter() - t0

    # --- figures, JSON, HTML --------------------------------------------------------------------------
    figures = {
        "calibration": figs.calibration_figure(
            table,
            {
                REKOGNITION: 80.0,
                "faceprint 1:1 default": t_cmp,
                f"faceprint 1:N default, N={identification['gallery_size']:,}": identification["thresholds"][
                    FACEPRINT
                ],
            },
            out_dir / "calibration.png",
        ),
        "det_gender": figs.det_figure(
            by_gender, "LFW verification by gender (all pairs)", out_dir / "det_gender.png"
        ),
        "rates_gender": figs.rates_figure(
            by_gender, FACEPRINT, "LFW by gender", out_dir / "rates_gender.png"
        ),
        "det_race": figs.det_figure(
            by_race, "LFW 62-person subset by perceived race", out_dir / "det_race.png"
        ),
        "rates_race": figs.rates_figure(
            by_race, REKOGNITION, "LFW 62-person subset by perceived race", out_dir / "rates_race.png"
        ),
        "congress_best": figs.best_score_figure(
            np.array(identification["_best_nonmate"]),
            identification["_gender_labels"],
            identification["thresholds"],
            out_dir / "congress_best_impostor.png",
        ),
        "congress_rates": figs.proportion_figure(
            identification["_rate_facets"],
            "Members with at least one false match (Wilson 95% CI)",
            "share of members",
            out_dir / "congress_false_matches.png",
        ),
        "detection": figs.proportion_figure(
            rates,
            "UTKFace subset: share of crops with a detected face",
            "detected",
            out_dir / "detection.png",
        ),
    }
    timings["total"] = time.perf_counter() - t_start
    report = {
        "command": command,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "limit": limit,
        "bootstrap": n_boot,
        "versions": versions(),
        "engine": {
            "detector": getattr(engine.detector, "name", "?"),
            "embedder": getattr(engine.embedder, "name", "?"),
            "model_version": engine.model_version,
        },
        "data_dir": str(data_dir()),
        "cache_dir": str(accuracy_cache_dir()),
        "calibration": {
            "model_version": table.model_version,
            "generated": table.provenance.get("generated"),
            "command": table.provenance.get("command"),
            "impostor_pairs": table.provenance.get("impostor_pairs"),
            "tail_from": table.tail_from,
        },
        "scorer": {
            "name": scorer.name,
            "cohort": scorer.cohort.provenance if scorer.cohort is not None else None,
            "cohort_fingerprint": scorer.cohort.fingerprint if scorer.cohort is not None else None,
            "top_k": scorer.top_k,
            "similarity_map": table.similarity_map.to_json(),
        },
        "thresholds": {
            "rekognition_default": sim.REKOGNITION_DEFAULT_THRESHOLD,
            "compare_default": t_cmp,
            "compare_default_fmr": table.false_match_rate(t_cmp),
            "rekognition_80_fmr": table.false_match_rate(80.0),
        },
        "scoring": comparison,
        "lfw": {
            "images": len(images),
            "detected": int((es.status == DETECTED).sum()),
            "fallback": int((es.status == 2).sum()),
            "computed": es.computed,
        },
        "verification": {"gender": by_gender, "race": by_race},
        "identification": {k: v for k, v in identification.items() if not k.startswith("_")},
        "detection": detection,
        "figures": figures,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    report["summary"] = summary(report)
    from faceprint.accuracy.audit_html import render

    (out_dir / "audit.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (out_dir / "audit.html").write_text(render(report))
    return report


def summary(report: dict) -> dict:
    """The numbers the issue tracks, raw and normalised side by side (the `--json` line's core)."""
    sc, idn = report["scoring"], report["identification"]
    out: dict = {}
    for name in ("normalised", "raw"):
        row = sc[name]
        g = row["by_gender_at_compare_default"]
        cg_row = idn["by_scorer"][name]
        out[name] = {
            "heldout_tar_at_fmr": {k: row["tar_at_fmr"][k] for k in ("1e-3", "1e-4", "1e-5", "1e-6")},
            "compare_default": row["compare_default"],
            "gender_fmr_ratio_at_default": g["women_men_fmr_ratio"],
            "fmr_by_gender_at_default": {k: g[k]["fmr"] for k in ("female", "male")},
            "fnmr_by_gender_at_default": {k: g[k]["fnmr"] for k in ("female", "male")},
            "fnmr_at_search_default_10000": row["fnmr_at_search_default_10000"],
            "enrolment": row["enrolment"],
            "congress": cg_row,
        }
    top = dict(out["normalised"])
    top["raw"] = out["raw"]
    return top


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def _identification(engine, images: lfw.LfwImages, es, scorers: dict, console, limit: int | None) -> dict:
    scorer = scorers["normalised"]
    members = cg.read_members()
    alts = cg.read_alt_photos()
    if limit:
        members = members[:limit]
        keep_ids = {m.bioguide for m in members}
        alts = [a for a in alts if a[0] in keep_ids][: max(1, limit // 4)]
    folder = cg.congress_root()
    portraits = embed_dataset(
        engine,
        "congress",
        folder,
        [m.photo for m in members],
        policy="largest",
        console=console,
        description="Embedding Congress portraits",
    )
    alt_es = embed_dataset(
        engine,
        "congress",
        folder,
        [a[1] for a in alts],
        policy="largest",
        console=console,
        description="Embedding alternative member photos",
    )
    gallery_keep = es.status == DETECTED
    gallery = es.vectors[gallery_keep]
    gallery_persons = np.array([p for p, k in zip(images.persons, gallery_keep, strict=True) if k])
    n_gallery = len(gallery)
    mates_by_member = cg.lfw_mates(members, set(images.persons))
    t_search = scorer.default_search_threshold(n_gallery)
    thresholds = {REKOGNITION: sim.REKOGNITION_DEFAULT_THRESHOLD, FACEPRINT: t_search}
    gallery_stats = cg.gallery_stats(scorer, gallery, gallery_persons)  # the cohort's people left out

    probe_ok = portraits.status == DETECTED
    probes = [m for m, ok in zip(members, probe_ok, strict=True) if ok]
    mates = np.array([gallery_persons == mates_by_member.get(m.bioguide, "\0") for m in probes]).reshape(
        len(probes), n_gallery
    )
    probe_vectors = portraits.vectors[probe_ok]
    by_scorer = {}
    for name, sc in scorers.items():
        r = cg.search(
            probe_vectors,
            gallery,
            mates,
            sc,
            sc.stats(probe_vectors),
            cg.gallery_stats(sc, gallery, gallery_persons),
        )
        at = r.at(sc.default_search_threshold(n_gallery))
        has = at["has_mate"]
        by_scorer[name] = {
            "threshold": sc.default_search_threshold(n_gallery),
            "members_falsely_matched_at_default": int((at["false_matches"] > 0).sum()),
            "false_matches_at_default": int(at["false_matches"].sum()),
            "mates_found_at_default": int((at["found"] & has).sum()),
            "mates": int(has.sum()),
        }
    res = cg.search(probe_vectors, gallery, mates, scorer, scorer.stats(probe_vectors), gallery_stats)
    best_nonmate = np.where(res.mates, -1.0, res.scores).max(axis=1) if n_gallery else np.zeros(len(probes))
    out: dict = {
        "gallery": "every LFW image with a detected face (one face per image)",
        "gallery_size": n_gallery,
        "members": len(members),
        "members_searched": len(probes),
        "members_without_face": [m.name for m, ok in zip(members, probe_ok, strict=True) if not ok],
        "thresholds": thresholds,
        "lfw_name_matches": [],
        "by_threshold": {},
        "by_scorer": by_scorer,
    }
    for m in probes:
        if m.bioguide in mates_by_member:
            i = probes.index(m)
            mate_scores = res.scores[i][res.mates[i]]
            rank = int((res.scores[i] > mate_scores.max()).sum()) + 1 if len(mate_scores) else None
            out["lfw_name_matches"].append(
                {
                    "member": m.name,
                    "lfw_person": mates_by_member[m.bioguide],
                    "lfw_images": int(res.mates[i].sum()),
                    "best_mate_similarity": float(mate_scores.max()) if len(mate_scores) else None,
                    "best_mate_rank": rank,
                }
            )
    genders = ["female" if m.gender == "F" else "male" for m in probes]
    parties = [m.party for m in probes]
    for name, t in thresholds.items():
        at = res.at(t)
        flagged = at["false_matches"] > 0
        fmr = scorer.false_match_rate(t)
        nonmates = n_gallery - res.mates.sum(axis=1)
        expected_members = float((1 - (1 - fmr) ** nonmates).sum())
        order = np.argsort(-np.where(res.mates, -1.0, res.scores), axis=1)[:, :3]
        examples = []
        for i in np.nonzero(flagged)[0]:
            for j in order[i]:
                if res.scores[i, j] >= t and not res.mates[i, j]:
                    examples.append(
                        {
                            "member": probes[i].name,
                            "party": probes[i].party,
                            "lfw_person": str(gallery_persons[j]),
                            "similarity": round(float(res.scores[i, j]), 2),
                        }
                    )
        examples.sort(key=lambda e: -e["similarity"])
        has = at["has_mate"]
        out["by_threshold"][name] = {
            "threshold": t,
            "estimated_fmr": fmr,
            "false_matches": int(at["false_matches"].sum()),
            "members_falsely_matched": int(flagged.sum()),
            "expected_members_falsely_matched": expected_members,
            "expected_false_matches": float(fmr * nonmates.sum()),
            "by_gender": cg.breakdown(genders, flagged),
            "by_party": cg.breakdown(parties, flagged),
            "genuine_found": int((at["found"] & has).sum()),
            "genuine_missed": [probes[i].name for i in np.nonzero(has & ~at["found"])[0]],
            "genuine_total": int(has.sum()),
            "top_false_matches": examples[:15],
        }
    out["_best_nonmate"] = best_nonmate.tolist()
    out["_gender_labels"] = genders
    fb = out["by_threshold"]
    out["_rate_facets"] = {
        f"gender, {REKOGNITION}": fb[REKOGNITION]["by_gender"],
        f"party, {REKOGNITION}": fb[REKOGNITION]["by_party"],
        f"gender, {FACEPRINT}": fb[FACEPRINT]["by_gender"],
    }
    out["alt_photos"] = _alt_photos(
        members, portraits, alts, alt_es, gallery, gallery_persons, mates_by_member, scorer, gallery_stats
    )
    return out


def _alt_photos(
    members, portraits, alts, alt_es, gallery, gallery_persons, mates_by_member, scorer, gallery_stats
) -> dict:
    """Alternative photos vs LFW + portraits: is the member's own portrait found, and at what rank?"""
    port_ok = portraits.status == DETECTED
    port_ids = np.array([m.bioguide for m, ok in zip(members, port_ok, strict=True) if ok])
    full = np.concatenate([gallery, portraits.vectors[port_ok]])
    full_stats = np.concatenate([gallery_stats, scorer.stats(portraits.vectors[port_ok])])
    labels = np.concatenate([gallery_persons, port_ids])
    ok = alt_es.status == DETECTED
    probe_ids = [b for (b, _), k in zip(alts, ok, strict=True) if k]
    mates = np.array([(labels == b) | (labels == mates_by_member.get(b, "\0")) for b in probe_ids]).reshape(
        len(probe_ids), len(labels)
    )
    res = cg.search(alt_es.vectors[ok], full, mates, scorer, scorer.stats(alt_es.vectors[ok]), full_stats)
    n = len(labels)
    thresholds = {
        REKOGNITION: sim.REKOGNITION_DEFAULT_THRESHOLD,
        FACEPRINT: scorer.default_search_threshold(n),
    }
    out = {
        "photos": len(alts),
        "searched": int(ok.sum()),
        "gallery_size": n,
        "thresholds": thresholds,
        "by_threshold": {},
    }
    mate_best = np.where(res.mates, res.scores, -1.0).max(axis=1) if len(probe_ids) else np.zeros(0)
    nonmate_best = np.where(res.mates, -1.0, res.scores).max(axis=1) if len(probe_ids) else np.zeros(0)
    out["rank1_correct"] = int((mate_best > nonmate_best).sum())
    out["mate_similarity_median"] = float(np.median(mate_best)) if len(mate_best) else None
    for name, t in thresholds.items():
        at = res.at(t)
        out["by_threshold"][name] = {
            "threshold": t,
            "found": int(at["found"].sum()),
            "missed": int((~at["found"]).sum()),
            "false_matches": int(at["false_matches"].sum()),
            "photos_with_false_match": int((at["false_matches"] > 0).sum()),
        }
    return out
