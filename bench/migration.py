"""Migration accuracy: re-embedding a face from the crop `index --keep-chips` keeps vs from its image.

On held-out LFW people (never in the cohort or the calibration folds) with 2+ images, `--n` images are
taken (people in hash order, all their images). Each image is detected as `faceprint index` does (largest
face); its vector is computed twice with each model: from the original image (the baseline measured in
the same run) and from the kept crop (`faceprint.models.crops`: JPEG, decoded, detected again, aligned,
embedded), as `faceprint collections migrate` does. Reported per model: how many crops gave the face
back, the cosine between the two vectors of a face, and TAR at FMR 1e-3 of all pairs of the sample when
the gallery side comes from crops (probes from original images) against both sides from images; the
ratio is crop TAR / image TAR.

    python bench/migration.py [--n 400] [--models dlib,mobileface] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from faceprint.accuracy import folds, lfw
from faceprint.accuracy.normalised import all_pairs, tar_at_fmr
from faceprint.engine import FaceEngine
from faceprint.images import load_image
from faceprint.models.crops import crop_jpeg, wide_crop


def sample(n: int) -> tuple[list[str], list[str]]:
    images = lfw.read_images()
    held = folds.in_role(images.persons, "heldout")
    counts: dict[str, int] = {}
    for p, h in zip(images.persons, held, strict=True):
        if h:
            counts[p] = counts.get(p, 0) + 1
    paths, persons = [], []
    for path, person, h in zip(images.paths, images.persons, held, strict=True):
        if h and counts[person] >= 2 and counts[person] <= 20:
            paths.append(path)
            persons.append(person)
    return paths[:n], persons[:n]


def run(models: list[str], n: int) -> dict:
    root = lfw.lfw_root()
    paths, persons = sample(n)
    base = FaceEngine.shared()
    engines = {m: base.with_model(m) for m in models}
    orig = {m: [] for m in models}
    crop = {m: [] for m in models}
    kept_persons, lost = [], 0
    t0 = time.perf_counter()
    for path in paths:
        img = load_image(root / path)
        faces = base.detect(img, max_faces=1)
        if not faces:
            continue
        face = faces[0]
        again = load_image(crop_jpeg(wide_crop(img.pixels, face.box)))
        vectors_o, vectors_c = {}, {}
        for m, engine in engines.items():
            f = engine.detect(img, max_faces=1)[0]
            vectors_o[m] = engine.embed_faces(None, [f])[0].embedding
            g = engine.detect(again, max_faces=1)
            if not g:
                break
            vectors_c[m] = engine.embed_faces(None, [g[0]])[0].embedding
        if len(vectors_c) < len(engines):
            lost += 1
            continue
        for m in models:
            orig[m].append(vectors_o[m])
            crop[m].append(vectors_c[m])
        kept_persons.append(persons[paths.index(path)])
    seconds = time.perf_counter() - t0
    ids = np.unique(np.array(kept_persons), return_inverse=True)[1]
    out: dict = {
        "images": len(paths),
        "faces": len(kept_persons),
        "people": int(ids.max() + 1),
        "crops_without_face": lost,
        "seconds": round(seconds, 1),
        "models": {},
    }
    for m in models:
        o, c = np.stack(orig[m]), np.stack(crop[m])
        cos = np.einsum("ij,ij->i", o, c)
        tar_img = all_pairs(o, ids).tar_at_fmr(1e-3)[0]
        mixed = all_pairs_mixed(o, c, ids)
        out["models"][m] = {
            "cosine_image_vs_crop_mean": round(float(cos.mean()), 4),
            "cosine_image_vs_crop_p05": round(float(np.quantile(cos, 0.05)), 4),
            "tar_at_fmr_1e-3_images": round(tar_img, 4),
            "tar_at_fmr_1e-3_crop_gallery": round(mixed, 4),
            "ratio": round(mixed / tar_img, 4) if tar_img else None,
        }
    return out


def all_pairs_mixed(probes: np.ndarray, gallery: np.ndarray, ids: np.ndarray) -> float:
    """TAR at FMR 1e-3 over all pairs i < j scored probe i (image) against gallery j (crop)."""
    sims = probes @ gallery.T
    i, j = np.triu_indices(len(ids), 1)
    s, same = sims[i, j], ids[i] == ids[j]
    return tar_at_fmr(s[same], s[~same], 1e-3)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--models", default="dlib,mobileface")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"bench": "migration", "load": os.getloadavg()[0], **run(args.models.split(","), args.n)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['faces']} faces of {result['people']} held-out people, {result['seconds']} s")
    for m, r in result["models"].items():
        print(
            f"{m}: cosine image vs crop {r['cosine_image_vs_crop_mean']} "
            f"(5th pct {r['cosine_image_vs_crop_p05']}), TAR@1e-3 images "
            f"{r['tar_at_fmr_1e-3_images']:.3f}, crop gallery {r['tar_at_fmr_1e-3_crop_gallery']:.3f} "
            f"(ratio {r['ratio']})"
        )


if __name__ == "__main__":
    main()
