"""Which views of a face to average: LFW 10-fold accuracy of descriptor view sets (how model 2.0 was chosen).

Every image of `lfw/pairs.txt` is detected once as `faceprint eval lfw` does it (`auto`, a second look by
dlib's CNN detector, then the fixed median box) and 20 views are embedded once: chips aligned on the 5- and
the 68-point landmarks at paddings 0.15, 0.20, 0.25, 0.30, 0.35, and their mirror images. Each view set in
`VIEW_SETS` is then scored from those embeddings: mean of its views, scaled to unit length, L2 distance,
10-fold accuracy. The baseline measured in the same run is the single 5-point chip at padding 0.25, dlib's
own descriptor.

    python bench/views.py [--limit N] [--json]     # about 9 min for the 7,701 pair images
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from faceprint.accuracy import lfw
from faceprint.accuracy.embeddings import _FixedBox, _is_central, _pick, progress_bar
from faceprint.accuracy.metrics import kfold_accuracy
from faceprint.detectors.cnn import CnnDetector
from faceprint.engine import DESCRIPTOR, Descriptor, Face, FaceEngine, unit_rows
from faceprint.images import load_image

ALIGNMENTS = (5, 68)
PADDINGS = (0.15, 0.20, 0.25, 0.30, 0.35)
# (name, alignments, paddings, mirror)
VIEW_SETS = [
    ("5-point chip, padding 0.25 (dlib's descriptor; baseline)", (5,), (0.25,), False),
    ("5-point chip + mirror (model 1.1's views)", (5,), (0.25,), True),
    ("68-point chip + mirror", (68,), (0.25,), True),
    ("5- and 68-point chips + mirrors", (5, 68), (0.25,), True),
    ("5-point chips at 0.20, 0.25, 0.30 + mirrors", (5,), (0.20, 0.25, 0.30), True),
    ("5- and 68-point chips at 0.20, 0.25, 0.30, no mirrors", (5, 68), (0.20, 0.25, 0.30), False),
    ("5- and 68-point chips at 0.20, 0.25, 0.30 + mirrors (model 2.0)", (5, 68), (0.20, 0.25, 0.30), True),
    ("5- and 68-point chips at 0.15 to 0.35 + mirrors", (5, 68), PADDINGS, True),
]


def view_index(alignments: tuple[int, ...], paddings: tuple[float, ...], mirror: bool) -> list[int]:
    """Positions of a view set's views in the (mirror, alignment, padding) layout of `embed_views`."""
    cuts = len(ALIGNMENTS) * len(PADDINGS)
    return [
        m * cuts + ALIGNMENTS.index(a) * len(PADDINGS) + PADDINGS.index(p)
        for m in ((0, 1) if mirror else (0,))
        for a in alignments
        for p in paddings
    ]


def embed_views(keys: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """(images, 20, 128) raw embeddings of every view, and how each image's face was found."""
    root = lfw.lfw_root()
    wide = Descriptor("views", alignments=ALIGNMENTS, paddings=PADDINGS, mirror=True)
    engine = FaceEngine(descriptor=wide)
    retry = FaceEngine(detector=CnnDetector(upsample=1), embedder=engine.embedder, descriptor=wide)
    out = np.zeros((len(keys), 2 * len(ALIGNMENTS) * len(PADDINGS), 128), np.float32)
    boxes: list[np.ndarray] = []
    missed: list[int] = []
    how = {"auto": 0, "cnn_retry": 0, "fixed_box": 0}

    def embed(i: int, face: Face) -> None:
        chips = face.views  # (alignment, padding) order: the wide descriptor cuts all 10
        out[i] = engine.embedder.embed_chips(np.concatenate([chips, np.ascontiguousarray(chips[:, :, ::-1])]))

    with progress_bar() as bar:
        task = bar.add_task("Embedding 20 views of each image", total=len(keys))
        for i, key in enumerate(keys):
            img = load_image(root / key)
            for name, eng in (("auto", engine), ("cnn_retry", retry)):
                faces = eng.detect(img, max_faces=10)
                if faces:
                    face = _pick(faces, "central", img.width, img.height)
                    if _is_central(face.box, img.width, img.height):
                        how[name] += 1
                        boxes.append(np.array([face.box.left, face.box.top, face.box.right, face.box.bottom]))
                        embed(i, face)
                        break
            else:
                missed.append(i)
            bar.advance(task)
    fixed = FaceEngine(_FixedBox(np.median(np.stack(boxes), axis=0)), engine.embedder, descriptor=wide)
    for i in missed:
        how["fixed_box"] += 1
        embed(i, fixed.detect(load_image(root / keys[i]), max_faces=1)[0])
    return out, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N same + N different pairs of each fold")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    pairs = lfw.read_pairs()
    if args.limit:
        from faceprint.accuracy.eval_lfw import select_pairs

        pairs = select_pairs(pairs, args.limit)
    keys = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    views, how = embed_views(keys)
    pos = {k: i for i, k in enumerate(keys)}
    a, b = np.array([pos[p.a] for p in pairs]), np.array([pos[p.b] for p in pairs])
    same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    rows = []
    for name, alignments, paddings, mirror in VIEW_SETS:
        vec = unit_rows(views[:, view_index(alignments, paddings, mirror)].mean(axis=1))
        res = kfold_accuracy(-np.linalg.norm(vec[a] - vec[b], axis=1), same, folds)
        passes = len(alignments) * len(paddings) * (2 if mirror else 1)
        rows.append({"views": name, "passes": passes, "accuracy": res.mean, "std": res.std})
    base = rows[0]["accuracy"]
    print(f"{len(pairs)} LFW pairs, {len(keys)} images; faces found by {how}")
    print(f"{'views averaged':<68}{'passes':>7}{'accuracy':>16}{'errors vs baseline':>20}")
    for r in rows:
        errors = round((1 - r["accuracy"]) * len(pairs)) - round((1 - base) * len(pairs))
        score = f"{100 * r['accuracy']:.2f}% ± {100 * r['std']:.2f}"
        print(f"{r['views']:<68}{r['passes']:>7}{score:>16}{errors:>+20}")
    shipped = next(r for r in rows if "model 2.0" in r["views"])
    assert shipped["passes"] == DESCRIPTOR.passes
    if args.json:
        summary = {"pairs": len(pairs), "images": len(keys), "found_by": how, "rows": rows}
        summary["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
