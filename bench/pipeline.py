"""Detect + embed per image: faceprint's default pipeline against the face_recognition library.

Both run in this process on the same decoded images. face_recognition's default pipeline is HOG with one
upsample, then the 128-D dlib ResNet on 5-point chips, one face at a time; faceprint uses its default
detector, dlib's 5- and 68-point landmarks, pose and quality, and its default (batched) embedder.
Identification on face_recognition's own knn example set is scored for both with the same rule:
nearest enrolled face, accepted at dlib's same-person threshold: distance 0.6 between face_recognition's raw
descriptors, Similarity 80 (distance 0.424) between faceprint's unit-length ones.

    python bench/pipeline.py [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from faceprint.config import data_dir
from faceprint.engine import FaceEngine
from faceprint.extras import MissingExtraError, require
from faceprint.images import load_image
from faceprint.similarity import distance_for_similarity

RAW_MATCH_DISTANCE = 0.6  # face_recognition (raw dlib descriptors)
UNIT_MATCH_DISTANCE = distance_for_similarity(80.0)  # faceprint (unit-length descriptors): 0.424


def image_set(data: Path) -> list[Path]:
    """A fixed, varied set of real images: portraits, groups, a crowd, LFW and Congress."""
    ex = data / "known_identities" / "face_recognition_examples" / "examples"
    files = sorted((ex / "knn_examples").rglob("*.jp*g"))
    files += [ex / n for n in ("obama.jpg", "obama2.jpg", "biden.jpg", "two_people.jpg", "obama-720p.jpg")]
    files += [data / "crowd" / "retinaface_test_crowd.jpg", data / "crowd" / "facenet_pytorch_multiface.jpg"]
    files += sorted((data / "lfw" / "lfw-deepfunneled").glob("A*/*_0001.jpg"))[:20]
    files += sorted((data / "congress" / "photos").glob("*.jpg"))[:10]
    return files


def knn_identities(data: Path) -> tuple[list[tuple[str, Path]], list[tuple[set[str], Path]]]:
    """(label, train image) pairs and (expected labels, test image) pairs of the knn example set."""
    knn = data / "known_identities" / "face_recognition_examples" / "examples" / "knn_examples"
    train = [(p.parent.name, p) for p in sorted((knn / "train").rglob("*.jp*g"))]
    expected = {
        "johnsnow_test1.jpg": {"kit_harington"},
        "obama_and_biden.jpg": {"obama", "biden"},
        "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
        "obama1.jpg": {"obama"},
        "alex_lacamoire1.jpg": {"alex_lacamoire"},
    }
    test = [(expected[p.name], p) for p in sorted((knn / "test").glob("*.jp*g"))]
    return train, test


def run_face_recognition(pixels: np.ndarray) -> list[np.ndarray]:
    import face_recognition

    locations = face_recognition.face_locations(pixels)
    return face_recognition.face_encodings(pixels, locations)


def run_faceprint(engine: FaceEngine, pixels: np.ndarray) -> list[np.ndarray]:
    return [f.embedding for f in engine.analyze(pixels)]


def identify(embed, train, test, match_distance: float) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(correctly identified test images, test images): every expected person found, nobody else."""
    gallery, labels = [], []
    for label, path in train:
        vecs = embed(load_image(path).pixels)
        if vecs:
            gallery.append(vecs[0])
            labels.append(label)
    g = np.stack(gallery)
    correct = 0
    for expected, path in test:
        found = set()
        for v in embed(load_image(path).pixels):
            d = np.linalg.norm(g - v, axis=1)
            if d.min() <= match_distance:
                found.add(labels[int(d.argmin())])
        correct += found == expected
    return correct, len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed passes (the best is kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        require("face_recognition", "bench", "the face_recognition baseline")
    except MissingExtraError as exc:
        sys.exit(f"bench/pipeline.py: {exc.message}")
    data = data_dir()
    images = [(p, load_image(p).pixels) for p in image_set(data)]
    engine = FaceEngine.shared()
    pipelines = {
        "face_recognition": (run_face_recognition, RAW_MATCH_DISTANCE),
        "faceprint": (lambda px: run_faceprint(engine, px), UNIT_MATCH_DISTANCE),
    }
    for fn, _ in pipelines.values():  # warm up: load models, convert ONNX once
        fn(images[0][1])
    results: dict[str, dict] = {}
    for name, (fn, match_distance) in pipelines.items():
        best, faces = float("inf"), 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            faces = sum(len(fn(px)) for _, px in images)
            best = min(best, time.perf_counter() - t0)
        correct, total = identify(fn, *knn_identities(data), match_distance=match_distance)
        results[name] = {
            "ms_per_image": 1000 * best / len(images),
            "faces_found": faces,
            "knn_correct": correct,
            "knn_total": total,
        }
    fr, fp = results["face_recognition"], results["faceprint"]
    speedup = fr["ms_per_image"] / fp["ms_per_image"]
    print(f"{len(images)} real images, best of {args.repeat} passes")
    print(f"{'pipeline':<18}{'ms/image':>10}{'faces':>8}{'knn ok':>9}")
    for name, r in results.items():
        print(
            f"{name:<18}{r['ms_per_image']:>10.1f}{r['faces_found']:>8}{r['knn_correct']:>5}/{r['knn_total']}"
        )
    print(f"speed-up of faceprint over face_recognition: {speedup:.2f}x")
    if args.json:
        print(json.dumps({"images": len(images), "speedup": speedup, **results}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
