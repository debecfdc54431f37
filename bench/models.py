"""Milliseconds per face of each face model: align + embed (all its views), the same real faces.

LFW faces are detected once with the shared detector and landmarks (not timed: it is the same for every
model); then, for each model, its aligner cuts the views of every face and its network embeds them in
batches of 32 (`FaceModel.embed`). Best of `--repeats` runs. The baseline measured in the same run is the
built-in dlib model 2.0 (12 views per face); `ratio` is the model's time over dlib's.

    python bench/models.py [--faces 64] [--repeats 3] [--models dlib,mobileface] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from faceprint.accuracy import lfw
from faceprint.engine import FaceEngine
from faceprint.images import load_image
from faceprint.models import get_model

BATCH = 32


def faces(n: int) -> list:
    """(pixels, geometry) of the largest face of the first `n` LFW images that have one."""
    root, out = lfw.lfw_root(), []
    engine = FaceEngine.shared()
    for path in lfw.read_images().paths[::50]:
        img = load_image(root / path)
        found = engine.detect(img, max_faces=1)
        if found:
            out.append((img.pixels, found[0].geometry))
        if len(out) == n:
            break
    return out


def time_model(name: str, items: list, repeats: int) -> float:
    """Best ms per face of aligning and embedding `items` with model `name`."""
    model = get_model(name)
    model.embed(items[0][0], [items[0][1]])  # load and warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(items), BATCH):
            batch = items[i : i + BATCH]
            model.describe(np.stack([model.cut(p, g) for p, g in batch]))
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="dlib,mobileface")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    items = faces(args.faces)
    names = args.models.split(",")
    if "dlib" not in names:
        names.insert(0, "dlib")
    ms = {n: time_model(n, items, args.repeats) for n in names}
    result = {
        "bench": "models",
        "faces": len(items),
        "load": os.getloadavg()[0],
        "threads": os.environ.get("FACEPRINT_ONNX_THREADS", "auto"),
        "models": {
            n: {
                "ms_per_face": round(v, 3),
                "views": get_model(n).passes,
                "dim": get_model(n).dim,
                "ratio": round(v / ms["dlib"], 4),
            }
            for n, v in ms.items()
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    for n, r in result["models"].items():
        print(
            f"{n}: {r['ms_per_face']:.2f} ms per face ({r['views']} passes, {r['dim']}-D), {r['ratio']}x dlib"
        )


if __name__ == "__main__":
    main()
