"""Fit the box corrections that map BlazeFace and dlib CNN boxes onto dlib HOG's box convention.

dlib's shape predictors were trained on HOG boxes, so each other detector's boxes are shifted and scaled
(`faceprint.detectors.correction.BoxCorrection`) before landmarks are taken. This script finds faces that
HOG (upsample 1) and the other detector both see (one central face per LFW deep-funneled image, Congress
portraits), fits the correction on the even-numbered images (trimmed means of the per-face shift and scale),
and reports, on the odd-numbered (held-out) images, the IoU with HOG's box and the 68-point landmark error
(mean point distance / inter-ocular distance, against the landmarks from HOG's box) with and without the
correction. The ratio is corrected error / uncorrected error (lower is better).

    .venv/bin/python bench/fit_box_correction.py [--lfw 400] [--congress 100] [--cnn 80] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time

import dlib
import numpy as np

from faceprint.config import data_dir
from faceprint.detectors.blazeface import BlazeFaceDetector
from faceprint.detectors.cnn import CnnDetector
from faceprint.detectors.correction import IDENTITY, BoxCorrection, fit_correction
from faceprint.detectors.hog import HogDetector
from faceprint.images import load_image
from faceprint.weights import shape_predictor_5, shape_predictor_68


def sample_images(n_lfw: int, n_congress: int) -> list:
    """Every k-th LFW image (deterministic) and the first Congress portraits."""
    root = data_dir()
    with open(root / "lfw" / "images.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    step = max(1, len(rows) // max(1, n_lfw))
    paths = [root / "lfw" / r["file"] for r in rows[::step][:n_lfw]]
    paths += sorted((root / "congress" / "photos").glob("*.jpg"))[:n_congress]
    return paths


def central_box(boxes: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """The box whose centre is nearest the image centre."""
    if len(boxes) == 0:
        return None
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return boxes[np.argmin(np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2))]


def landmarks(pixels: np.ndarray, box: np.ndarray, points: int = 68) -> np.ndarray:
    """dlib's 68- or 5-point landmarks from a box, as the engine takes them."""
    rect = dlib.rectangle(*(round(float(v)) for v in box))
    predictor = shape_predictor_68() if points == 68 else shape_predictor_5()
    return np.array([(p.x, p.y) for p in predictor(pixels, rect).parts()], dtype=np.float64)


def landmark_error(pixels: np.ndarray, box: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance of the points to `reference` (same model), in inter-ocular distances."""
    pts = landmarks(pixels, box, len(reference))
    if len(reference) == 68:
        iod = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
    else:  # 5-point model: 0-1 one eye's corners, 2-3 the other's, 4 the nose
        iod = np.linalg.norm(reference[0:2].mean(0) - reference[2:4].mean(0))
    return float(np.linalg.norm(pts - reference, axis=1).mean() / iod)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def pairs_for(detector, paths: list, hog: HogDetector) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(pixels, own box, HOG box) for each image where both find a central face at the same place."""
    out = []
    for path in paths:
        px = load_image(path).pixels
        h, w = px.shape[:2]
        hb = central_box(_boxes(hog.detect(px)), w, h)
        ob = central_box(_boxes(detector.detect(px)), w, h)
        if hb is None or ob is None:
            continue
        # same face: centres closer than a third of HOG's box width
        if np.hypot(*((hb[:2] + hb[2:]) / 2 - (ob[:2] + ob[2:]) / 2)) < (hb[2] - hb[0]) / 3:
            out.append((px, ob, hb))
    return out


def _boxes(dets: list) -> np.ndarray:
    return np.array([[d.left, d.top, d.right, d.bottom] for d in dets]).reshape(-1, 4)


def evaluate(pairs: list, corr: BoxCorrection) -> dict[str, float]:
    iou_raw, iou_fit, err_raw, err_fit, err5_raw, err5_fit = [], [], [], [], [], []
    for px, own, hog_box in pairs:
        fixed = corr.apply(own)[0]
        ref, ref5 = landmarks(px, hog_box, 68), landmarks(px, hog_box, 5)
        iou_raw.append(box_iou(own, hog_box))
        iou_fit.append(box_iou(fixed, hog_box))
        err_raw.append(landmark_error(px, own, ref))
        err_fit.append(landmark_error(px, fixed, ref))
        err5_raw.append(landmark_error(px, own, ref5))
        err5_fit.append(landmark_error(px, fixed, ref5))
    return {
        "faces": len(pairs),
        "iou_uncorrected": float(np.mean(iou_raw)),
        "iou_corrected": float(np.mean(iou_fit)),
        "landmark_err_uncorrected": float(np.mean(err_raw)),
        "landmark_err_corrected": float(np.mean(err_fit)),
        "landmark5_err_uncorrected": float(np.mean(err5_raw)),
        "landmark5_err_corrected": float(np.mean(err5_fit)),
        "ratio": float(np.mean(err_fit) / np.mean(err_raw)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=int, default=400)
    ap.add_argument("--congress", type=int, default=100)
    ap.add_argument("--cnn", type=int, default=80, help="images for the (slow) CNN fit")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    paths = sample_images(args.lfw, args.congress)
    hog = HogDetector(upsample=1)
    cnn_paths = paths[:: max(1, len(paths) // max(1, args.cnn))][: args.cnn]
    result = {}
    for name, det, subset in (
        ("blazeface", BlazeFaceDetector(correction=IDENTITY), paths),
        ("cnn", CnnDetector(correction=IDENTITY), cnn_paths),
    ):
        pairs = pairs_for(det, subset, hog)
        fit = fit_correction([p[1] for p in pairs[0::2]], [p[2] for p in pairs[0::2]])
        held_out = evaluate(pairs[1::2], fit)
        result[name] = {"correction": {k: round(v, 4) for k, v in vars(fit).items()}, **held_out}
        r = held_out
        print(
            f"{name:9s} {len(pairs)} matched faces; fitted {result[name]['correction']}\n"
            f"  held-out ({r['faces']} faces): IoU with HOG {r['iou_uncorrected']:.3f} -> "
            f"{r['iou_corrected']:.3f}; "
            f"68-pt error {r['landmark_err_uncorrected']:.4f} -> {r['landmark_err_corrected']:.4f} IOD "
            f"(ratio {r['ratio']:.3f}); 5-pt error {r['landmark5_err_uncorrected']:.4f} -> "
            f"{r['landmark5_err_corrected']:.4f} IOD"
        )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
