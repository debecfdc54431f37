"""Which views of a face to average: LFW 10-fold accuracy of descriptor view sets (how model 2.0 was chosen).

Every image of `lfw/pairs.txt` is detected once as `faceprint eval lfw` does it (the same `embed_dataset`:
`auto`, a second look by dlib's CNN detector, then the fixed median box) and 20 views are embedded once:
chips aligned on the 5- and the 68-point landmarks at paddings 0.15, 0.20, 0.25, 0.30, 0.35, and their
mirror images. Each view set in
`VIEW_SETS` is then scored from those embeddings: mean of its views, scaled to unit length, L2 distance,
10-fold accuracy. The baseline measured in the same run is the single 5-point chip at padding 0.25, dlib's
own descriptor.

    python bench/views.py [--limit N] [--json]     # about 9 min for the 7,701 pair images (then cached)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from faceprint.accuracy import lfw
from faceprint.accuracy.embeddings import DETECTED, FALLBACK, RETRIED, embed_dataset
from faceprint.accuracy.metrics import kfold_accuracy
from faceprint.engine import DESCRIPTOR, Descriptor, FaceEngine, unit_rows

ALIGNMENTS = (5, 68)
PADDINGS = (0.15, 0.20, 0.25, 0.30, 0.35)
# Every view set is a descriptor: what it cuts and whether it mirrors (its version is only a label here).
VIEW_SETS = [
    ("5-point chip, padding 0.25 (dlib's descriptor; baseline)", Descriptor("-", (5,), (0.25,), False)),
    ("5-point chip + mirror (model 1.1's views)", Descriptor("-", (5,), (0.25,), True)),
    ("68-point chip + mirror", Descriptor("-", (68,), (0.25,), True)),
    ("5- and 68-point chips + mirrors", Descriptor("-", (5, 68), (0.25,), True)),
    ("5-point chips at 0.20, 0.25, 0.30 + mirrors", Descriptor("-", (5,), (0.20, 0.25, 0.30), True)),
    (
        "5- and 68-point chips at 0.20, 0.25, 0.30, no mirrors",
        Descriptor("-", (5, 68), (0.20, 0.25, 0.30), False),
    ),
    ("5- and 68-point chips at 0.20, 0.25, 0.30 + mirrors (model 2.0)", DESCRIPTOR),
    ("5- and 68-point chips at 0.15 to 0.35 + mirrors", Descriptor("-", ALIGNMENTS, PADDINGS, True)),
]


class AllViews(FaceEngine):
    """The default engine, cutting all 10 (alignment, padding) chips and keeping the embedding of each chip
    and of its mirror image (20 x 128, flattened) instead of their mean. Run through `embed_dataset`, it
    detects exactly as `faceprint eval lfw` does, and caches its vectors under model version "views-20"."""

    def __init__(self) -> None:
        super().__init__(descriptor=Descriptor("views-20", ALIGNMENTS, PADDINGS, mirror=True))

    @property
    def dim(self) -> int:
        return self.descriptor.passes * self.embedder.dim

    def describe(self, views: np.ndarray) -> np.ndarray:
        return self.view_embeddings(views).reshape(len(views), -1)


def mean_of(views: np.ndarray, descriptor: Descriptor) -> np.ndarray:
    """Unit-length mean of the views `descriptor` takes, out of (images, mirror, cut, 128) embeddings."""
    wide = [(a, p) for a in ALIGNMENTS for p in PADDINGS]
    cuts = [wide.index(c) for c in descriptor.cuts]
    mirrors = [0, 1] if descriptor.mirror else [0]
    return unit_rows(views[:, mirrors][:, :, cuts].mean(axis=(1, 2)))


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
    engine = AllViews()
    es = embed_dataset(engine, "lfw", lfw.lfw_root(), keys, policy="central", fallback=True)
    views = es.vectors.reshape(len(keys), 2, len(ALIGNMENTS) * len(PADDINGS), engine.embedder.dim)
    how = {name: int((es.status == s).sum()) for name, s in (("auto", DETECTED), ("cnn_retry", RETRIED))}
    how["fixed_box"] = int((es.status == FALLBACK).sum())
    pos = {k: i for i, k in enumerate(es.keys)}
    a, b = np.array([pos[p.a] for p in pairs]), np.array([pos[p.b] for p in pairs])
    same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    rows = []
    for name, descriptor in VIEW_SETS:
        vec = mean_of(views, descriptor)
        res = kfold_accuracy(-np.linalg.norm(vec[a] - vec[b], axis=1), same, folds)
        rows.append({"views": name, "passes": descriptor.passes, "accuracy": res.mean, "std": res.std})
    base = rows[0]["accuracy"]
    print(f"{len(pairs)} LFW pairs, {len(keys)} images; faces found by {how}")
    print(f"{'views averaged':<68}{'passes':>7}{'accuracy':>16}{'errors vs baseline':>20}")
    for r in rows:
        errors = round((1 - r["accuracy"]) * len(pairs)) - round((1 - base) * len(pairs))
        score = f"{100 * r['accuracy']:.2f}% ± {100 * r['std']:.2f}"
        print(f"{r['views']:<68}{r['passes']:>7}{score:>16}{errors:>+20}")
    if args.json:
        summary = {"pairs": len(pairs), "images": len(keys), "found_by": how, "rows": rows}
        summary["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
