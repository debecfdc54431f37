"""`faceprint audit --models A,B,...`: several face models side by side on the same held-out people.

For each model, on LFW's held-out folds (`faceprint.accuracy.folds`), using only images whose face every
compared model detected (detection is shared, so they are the same images):

- TAR at FMR 1e-4, 1e-5 and 1e-6 over all pairs, in the model's own scoring (S-norm with its cohort; the
  ensemble's fused S-norm);
- FMR and FNMR by gender (Afifi labels) at the model's default 1:1 threshold (its table's FMR 1e-4);
- the identification test of the single-model audit: 150 held-out people enrolled with one photo and
  searched with another, and 100 strangers, at the default 1:N threshold for 150 faces;
- the Congress-vs-LFW search: the 118th Congress's portraits searched in every LFW image at the model's
  default 1:N threshold for that gallery size (members falsely matched, false matches, LFW mates found).

Every model must be calibrated (its false match rates are what the defaults come from).
"""

from __future__ import annotations

import time

import numpy as np

from faceprint.accuracy import folds, lfw
from faceprint.accuracy.embeddings import DETECTED, NO_FACE, EmbeddedSet, embed_dataset
from faceprint.accuracy.normalised import AllPairs, all_pairs, tar_at_fmr
from faceprint.accuracy.scoring_audit import enrolment_result, enrolment_split
from faceprint.errors import InvalidParameterError
from faceprint.scoring import cohort_stats, s_norm, unit

TARGET_FMRS = (1e-4, 1e-5, 1e-6)
GENDERS = ("female", "male")


def _is_fused(scorer) -> bool:
    return hasattr(scorer, "parts") and hasattr(scorer, "weight")


def _fused_parts(scorer, vectors: np.ndarray):
    from faceprint.models.ensemble import split

    return split(vectors, scorer.first_dim)


def heldout_pairs(scorer, vectors: np.ndarray, ids: np.ndarray, groups: np.ndarray) -> AllPairs:
    """All pairs of `vectors` in the scorer's variable z (the fused z for the ensemble)."""
    if not _is_fused(scorer):
        return all_pairs(vectors, ids, scorer.stats(vectors), groups)
    parts = [
        all_pairs(v, ids, cohort_stats(v, p.cohort.vectors, p.top_k), groups)
        for v, p in zip(_fused_parts(scorer, vectors), scorer.parts, strict=True)
    ]
    w = scorer.weight
    a, b = parts
    return AllPairs(
        w * a.genuine + (1 - w) * b.genuine,
        a.genuine_i,
        a.genuine_j,
        (w * a.impostor.astype(np.float64) + (1 - w) * b.impostor).astype(np.float32),
        a.impostor_group,
    )


def search_similarity(scorer, probes: np.ndarray, gallery: np.ndarray, block: int = 256) -> np.ndarray:
    """(probes, gallery) Similarity in the scorer's own scoring."""
    if _is_fused(scorer):
        pp, gp = _fused_parts(scorer, probes), _fused_parts(scorer, gallery)
        terms = [
            (
                w,
                unit(pv),
                unit(gv),
                cohort_stats(pv, p.cohort.vectors, p.top_k),
                cohort_stats(gv, p.cohort.vectors, p.top_k),
            )
            for w, p, pv, gv in zip((scorer.weight, 1 - scorer.weight), scorer.parts, pp, gp, strict=True)
        ]
    else:
        terms = [(1.0, unit(probes), unit(gallery), scorer.stats(probes), scorer.stats(gallery))]
    out = np.empty((len(probes), len(gallery)), np.float32)
    for r0 in range(0, len(probes), block):
        z = np.zeros((min(block, len(probes) - r0), len(gallery)), np.float64)
        for w, p, g, ps, gs in terms:
            z += w * s_norm(p[r0 : r0 + block] @ g.T, ps[r0 : r0 + block, None, :], gs[None, :, :])
        out[r0 : r0 + block] = scorer.percent(z)
    return out


def _gender_rates(pairs: AllPairs, ids: np.ndarray, person_gender: np.ndarray, z_threshold: float) -> dict:
    out = {}
    genuine_gender = person_gender[ids[pairs.genuine_i]]
    for gi, g in enumerate(GENDERS):
        imp = pairs.impostor[pairs.impostor_group == gi]
        gen = pairs.genuine[genuine_gender == gi]
        out[g] = {
            "fmr": float(np.mean(imp >= z_threshold)) if len(imp) else None,
            "impostor_pairs": len(imp),
            "fnmr": float(np.mean(gen < z_threshold)) if len(gen) else None,
            "genuine_pairs": len(gen),
        }
    return out


def embedded(engine, model, dataset: str, root, keys, policy: str, fallback: bool = False, console=None):
    """`embed_dataset` with `model`; an ensemble's rows are joined from its parts' (cached) sets, so
    comparing it costs no embedding of its own."""
    parts = getattr(model, "parts", None)
    if parts is None:
        return embed_dataset(
            engine.with_model(model), dataset, root, keys, policy, fallback=fallback, console=console
        )
    from faceprint.models.ensemble import join

    a, b = (embedded(engine, p, dataset, root, keys, policy, fallback, console) for p in parts)
    both = a.status == b.status
    return EmbeddedSet(
        a.keys,
        np.where(both, a.status, NO_FACE).astype(np.int8),
        a.boxes,
        a.n_faces,
        join(a.vectors, b.vectors),
    )


def _enrolment(scorer, vectors: np.ndarray, persons: list[str]) -> dict:
    """The single-model audit's identification test (`scoring_audit.enrolment_split`) in this model's
    own scoring."""
    gallery, probes, strangers = enrolment_split(persons)
    threshold = scorer.default_search_threshold(len(gallery))
    return enrolment_result(
        threshold,
        search_similarity(scorer, vectors[probes], vectors[gallery]),
        search_similarity(scorer, vectors[strangers], vectors[gallery]),
    )


def _congress(
    engine, model, scorer, gallery: np.ndarray, gallery_persons: np.ndarray, console, limit
) -> dict:
    from faceprint.accuracy import congress as cg

    members = cg.read_members()[:limit] if limit else cg.read_members()
    portraits = embedded(
        engine, model, "congress", cg.congress_root(), [m.photo for m in members], "largest", console=console
    )
    ok = portraits.status == DETECTED
    probes = [m for m, k in zip(members, ok, strict=True) if k]
    mates_by = cg.lfw_mates(members, set(gallery_persons.tolist()))
    mates = np.array([gallery_persons == mates_by.get(m.bioguide, "\0") for m in probes]).reshape(
        len(probes), -1
    )
    threshold = scorer.default_search_threshold(len(gallery))
    at = cg.SearchResult(search_similarity(scorer, portraits.vectors[ok], gallery), mates).at(threshold)
    flagged = at["false_matches"] > 0
    genders = ["female" if m.gender == "F" else "male" for m in probes]
    return {
        "gallery_size": len(gallery),
        "members_searched": len(probes),
        "threshold": threshold,
        "members_falsely_matched": int(flagged.sum()),
        "false_matches": int(at["false_matches"].sum()),
        "members_falsely_matched_by_gender": {g["group"]: g["count"] for g in cg.breakdown(genders, flagged)},
        "mates_found": int((at["found"] & at["has_mate"]).sum()),
        "mates": int(at["has_mate"].sum()),
    }


def compare(engine, names: list[str], console=None, limit: int | None = None) -> dict:
    """The side-by-side report of models `names` (see the module docstring); `limit`: only the first N
    LFW images and Congress members (a quick subset run)."""
    from faceprint.models import get_model

    t0 = time.perf_counter()
    models = [get_model(n) for n in names]
    scorers = {}
    for m in models:
        sc = m.scorer()
        if sc.table is None:
            raise InvalidParameterError(
                f"face model {m.name!r} is not calibrated: run `faceprint calibrate --model {m.name}` first"
            )
        scorers[m.name] = sc
    images = lfw.read_images()
    if limit:
        images = lfw.LfwImages(images.paths[:limit], images.persons[:limit], images.genders[:limit])
    sets = {
        m.name: embedded(engine, m, "lfw", lfw.lfw_root(), images.paths, "central", True, console)
        for m in models
    }
    detected = np.logical_and.reduce([es.status == DETECTED for es in sets.values()])
    held = folds.in_role(images.persons, "heldout") & detected
    ids_all = images.identity_ids()
    ids = ids_all[held]
    genders = lfw.person_genders(images)
    gindex = {g: i for i, g in enumerate(GENDERS)}
    image_group = np.array([gindex.get(genders.get(p, ""), -1) for p in images.persons], np.int8)
    person_gender = np.full(int(ids_all.max()) + 1, -1, np.int64)
    person_gender[ids_all] = image_group
    report: dict = {
        "models": names,
        "heldout_images": int(held.sum()),
        "heldout_people": len(np.unique(ids)),
        "tar_at_fmr": {},
        "by_gender_at_default": {},
        "enrolment": {},
        "congress_vs_lfw": {},
    }
    for m in models:
        sc, es = scorers[m.name], sets[m.name]
        pairs = heldout_pairs(sc, es.vectors[held], ids, image_group[held])
        report["tar_at_fmr"][m.name] = {
            f"{f:.0e}": round(tar_at_fmr(pairs.genuine, pairs.impostor, f)[0], 4) for f in TARGET_FMRS
        }
        t_cmp = sc.default_compare_threshold()
        report["by_gender_at_default"][m.name] = {
            "threshold": t_cmp,
            **_gender_rates(pairs, ids_all[held], person_gender, sc.score_at(t_cmp)),
        }
        del pairs
        persons = np.array([p for p, k in zip(images.persons, detected, strict=True) if k])
        report["enrolment"][m.name] = _enrolment(sc, es.vectors[detected], list(persons))
        report["congress_vs_lfw"][m.name] = _congress(
            engine, m, sc, es.vectors[detected], persons, console, limit
        )
    report["limit"] = limit
    report["pairs"] = "all pairs of held-out people's images detected by every model"
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report
