"""Face detection: faces found and milliseconds per image for each faceprint detector.

Runs dlib HOG (upsample 0 and 1), dlib's MMOD CNN (on a few small images only: seconds per image),
BlazeFace (tiled) and the default "auto" detector on the crowd photos, two_people.jpg, two portraits and
LFW deep-funneled images taken from the 6,000-pair protocol (every k-th). For LFW the count is images in
which the central face was found. The baseline is face_recognition's default, `face_locations(img)` (dlib
HOG, upsample 1, full resolution), measured in the same run; the ratios are its time over auto's
(speed-up) and auto's faces over its faces.

    .venv/bin/python bench/detect.py [--lfw 200] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceprint.config import data_dir
from faceprint.detectors import make_detector
from faceprint.detectors.base import Detector
from faceprint.images import load_image

CENTRAL = 40  # an LFW face counts when its box centre is within 40 px of the 250x250 image's centre


def baseline() -> tuple[str, Callable[[np.ndarray], list[tuple[float, float]]]]:
    """face_recognition.face_locations, or what it calls (dlib HOG, upsample 1) when it is missing."""
    try:
        import face_recognition

        def run(px: np.ndarray) -> list[tuple[float, float]]:
            return [((lf + r) / 2, (t + b) / 2) for t, r, b, lf in face_recognition.face_locations(px)]

        return "face_recognition", run
    except ImportError:
        hog = make_detector("hog", upsample=1, max_side=None)
        return "dlib_hog1", lambda px: [d.center for d in hog.detect(px)]


def lfw_pair_images(root: Path, n: int) -> list[Path]:
    """Every k-th distinct image of LFW's pairs.txt (7,701 images), n of them."""
    names: list[tuple[str, int]] = []
    for line in (root / "lfw" / "pairs.txt").read_text().splitlines()[1:]:
        f = line.split("\t")
        pair = (
            [(f[0], int(f[1])), (f[0], int(f[2]))] if len(f) == 3 else [(f[0], int(f[1])), (f[2], int(f[3]))]
        )
        names += pair
    unique = sorted(set(names))
    step = max(1, len(unique) // max(1, n))
    folder = root / "lfw" / "lfw-deepfunneled"
    return [folder / p / f"{p}_{i:04d}.jpg" for p, i in unique[::step][:n]]


def groups(root: Path, n_lfw: int) -> dict[str, list[Path]]:
    ex = root / "known_identities" / "face_recognition_examples" / "examples"
    crowd = root / "crowd"
    return {
        "selfie_crowd": [crowd / "tinyfaces_worlds_largest_selfie.jpg"],
        "retinaface_crowd": [crowd / "retinaface_test_crowd.jpg"],
        "other_groups": [
            crowd / n
            for n in ("facenet_pytorch_multiface.jpg", "tinyfaces_tf_celeb.jpg", "tinyfaces_tf_celeb2.jpg")
        ],
        "two_people": [ex / "two_people.jpg"],
        "portraits": [ex / "obama-1080p.jpg", ex / "obama.jpg"],
        "lfw": lfw_pair_images(root, n_lfw),
    }


def count(group: str, centres: list[tuple[float, float]]) -> int:
    if group != "lfw":
        return len(centres)
    return int(any(abs(x - 125) < CENTRAL and abs(y - 125) < CENTRAL for x, y in centres))


def measure(
    detectors: dict[str, Callable], images: list[np.ndarray], group: str, repeat: int, skip: set[str]
) -> dict[str, dict[str, float]]:
    """Faces found and ms per image of every detector on one group. The detectors take turns on each
    image (so a burst of load from other processes hits them alike); each image's time is the best of
    `repeat` runs."""
    found = dict.fromkeys(detectors, 0)
    best = {name: [float("inf")] * len(images) for name in detectors}
    for rep in range(repeat):
        for i, px in enumerate(images):
            for name, run in detectors.items():
                if name in skip:
                    continue
                t0 = time.perf_counter()
                centres = run(px)
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
                if rep == 0:
                    found[name] += count(group, centres)
    return {
        name: {
            "images": len(images),
            "faces": found[name],
            "ms_per_image": round(1000 * np.mean(best[name]), 1),
        }
        for name in detectors
        if name not in skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=int, default=200, help="LFW pair images to use")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per image (the best is kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    root = data_dir()
    imgs = {
        g: [load_image(p, limits=_no_limits()).pixels for p in paths]
        for g, paths in groups(root, args.lfw).items()
    }
    base_name, base_run = baseline()

    def centres(det: Detector) -> Callable[[np.ndarray], list[tuple[float, float]]]:
        return lambda px: [d.center for d in det.detect(px)]

    detectors: dict[str, Callable] = {
        base_name: base_run,
        "hog_up0": centres(make_detector("hog", upsample=0)),
        "hog_up1": centres(make_detector("hog", upsample=1)),
        "cnn": centres(make_detector("cnn")),
        "blazeface": centres(make_detector("blazeface")),
        "auto": centres(make_detector("auto")),
    }
    cnn_groups = {"other_groups": 1, "lfw": 10}  # the CNN only on a few small images (first n)
    for run in detectors.values():  # load models and interpreters before timing
        run(imgs["lfw"][0])

    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in detectors}
    for group, images in imgs.items():
        for name, r in measure(detectors, images, group, args.repeat, skip={"cnn"}).items():
            results[name][group] = r
        if group in cnn_groups:  # the CNN alone, on its few images
            few = images[-cnn_groups[group] :] if group == "other_groups" else images[: cnn_groups[group]]
            results["cnn"][group] = measure({"cnn": detectors["cnn"]}, few, group, 1, skip=set())["cnn"]

    header = f"{'detector':<18}" + "".join(f"{g:>22}" for g in imgs)
    print(header + "\n" + " " * 18 + "".join(f"{'faces   ms/img':>22}" for _ in imgs))
    for name, per in results.items():
        cells = []
        for group in imgs:
            r = per.get(group)
            cells.append(
                f"{'-':>22}" if r is None else f"{r['faces']:>6}/{r['images']:<4}{r['ms_per_image']:>10.1f}  "
            )
        print(f"{name:<18}" + "".join(cells))

    ratios = {}
    for group in imgs:
        b, a = results[base_name][group], results["auto"][group]
        ratios[group] = {
            "speedup": round(b["ms_per_image"] / a["ms_per_image"], 2),
            "faces_ratio": round(a["faces"] / b["faces"], 2) if b["faces"] else None,
        }
    print(f"\nauto vs {base_name} (same run): speed-up (its ms / auto's ms) and faces found (auto / its)")
    for group, r in ratios.items():
        print(f"  {group:<18} speed-up {r['speedup']:>6.2f}x   faces {r['faces_ratio']}x")
    if args.json:
        print(json.dumps({"baseline": base_name, "results": results, "auto_vs_baseline": ratios}))


def _no_limits():
    """The selfie is under Rekognition's 5 MB limit, but read the files as they are regardless."""
    from faceprint.config import ImageLimits

    return ImageLimits(max_bytes=50 * 1024 * 1024)


if __name__ == "__main__":
    main()
