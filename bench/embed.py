"""Embedding speed: dlib's ResNet (baseline) vs its ONNX conversion in ONNX Runtime, same real chips.

Chips: LFW faces found by HOG, 5-point landmarks, dlib.get_face_chips(150, 0.25). Reports ms per face at
batch 1, 8 and 32 for both, the speed-up, the network's FLOPs per face (counted from the ONNX graph) and the
achieved GFLOP/s. `--sweep` also times graph-optimization levels and thread spinning.

    .venv/bin/python bench/embed.py [--faces 32] [--repeats 3] [--sweep] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

from faceprint import config, weights
from faceprint.embedders.base import CHIP_PADDING, CHIP_SIZE
from faceprint.embedders.dlib_resnet import DlibEmbedder
from faceprint.embedders.onnx_resnet import OnnxEmbedder, session_options

BATCHES = (1, 8, 32)
GOAL_RATIO = 7.0  # ONNX at batch 32 must be >= 7x faster per face than dlib


def lfw_chips(n: int) -> np.ndarray:
    """Aligned chips of the first HOG face of `n` LFW images (one per person, sorted, deterministic)."""
    root = config.data_dir() / "lfw" / "lfw-deepfunneled"
    chips: list[np.ndarray] = []
    for person in sorted(root.iterdir()):
        img = dlib.load_rgb_image(str(person / f"{person.name}_0001.jpg"))
        boxes = weights.hog_detector()(img, 0)
        if len(boxes):
            shapes = dlib.full_object_detections()
            shapes.append(weights.shape_predictor_5()(img, boxes[0]))
            chips.append(dlib.get_face_chips(img, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)[0])
        if len(chips) == n:
            break
    return np.stack(chips)


def graph_flops(path: Path) -> int:
    """FLOPs per face: 2 per multiply-add of Conv/MatMul, 1 per output of bias, Add, Relu and pools."""
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    shapes.update({v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output})
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        out = int(np.prod(shapes[node.output[0]]))
        if node.op_type == "Conv":
            _, cin, kh, kw = weights[node.input[1]]
            total += 2 * out * cin * kh * kw + (out if len(node.input) > 2 else 0)
        elif node.op_type == "MatMul":
            total += 2 * out * weights[node.input[1]][0]
        elif node.op_type in ("Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool"):
            total += out
    return total


Embed = Callable[[np.ndarray], np.ndarray]


def ms_per_face(embed: Embed, chips: np.ndarray, batch: int, repeats: int) -> float:
    """Best of `repeats` runs embedding all chips in batches of `batch`, per face (least disturbed by
    the other jobs sharing the CPUs; the JSON records the load average)."""
    embed(chips[:batch])  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(chips), batch):
            embed(chips[i : i + batch])
        runs.append((time.perf_counter() - t0) * 1000 / len(chips))
    return min(runs)


def onnx_session(path: Path, threads: int, level: str = "ALL", spin: bool = False) -> Embed:
    so = session_options(threads, spin)
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"chips": x})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=32, help="real chips to embed (multiple of 32)")
    parser.add_argument("--repeats", type=int, default=5, help="ONNX runs per setting (best is kept)")
    parser.add_argument("--dlib-repeats", type=int, default=1, help="dlib runs per batch size (slow)")
    parser.add_argument("--sweep", action="store_true", help="also time BASIC/EXTENDED levels and spinning")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    chips = lfw_chips(args.faces)
    dlib_embedder, onnx_embedder = DlibEmbedder(), OnnxEmbedder()
    ref, got = dlib_embedder.embed_chips(chips), onnx_embedder.embed_chips(chips)
    max_l2 = float(np.linalg.norm(ref - got, axis=1).max())
    flops = graph_flops(onnx_embedder.model_path)
    threads = onnx_embedder.threads

    dlib_ms = {b: ms_per_face(dlib_embedder.embed_chips, chips, b, args.dlib_repeats) for b in BATCHES}
    variants = {f"ALL, {threads} threads (default)": onnx_embedder.embed_chips}
    for t in sorted({1, 2} - {threads}):
        variants[f"ALL, {t} threads"] = onnx_session(onnx_embedder.model_path, t)
    if args.sweep:
        for level in ("BASIC", "EXTENDED"):
            variants[f"{level}, {threads} threads"] = onnx_session(onnx_embedder.model_path, threads, level)
        spinning = onnx_session(onnx_embedder.model_path, threads, spin=True)
        variants[f"ALL, {threads} threads, spinning"] = spinning
    onnx_ms = {k: {b: ms_per_face(f, chips, b, args.repeats) for b in BATCHES} for k, f in variants.items()}

    default = next(iter(onnx_ms))
    print(f"{len(chips)} LFW chips, {flops / 1e9:.3f} GFLOP/face (graph), max L2 vs dlib {max_l2:.2e}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'ms/face, speed-up, GFLOP/s':34s}" + "".join(f"{'batch ' + str(b):>26s}" for b in BATCHES))
    print(f"{'dlib (baseline)':34s}" + "".join(f"{dlib_ms[b]:9.2f} ms {'':15s}" for b in BATCHES))
    for name, row in onnx_ms.items():
        cells = "".join(
            f"{row[b]:9.2f} ms {dlib_ms[b] / row[b]:5.1f}x {flops / row[b] / 1e6:4.0f} GF/s" for b in BATCHES
        )
        print(f"{'onnx ' + name:34s}{cells}")
    ratio32 = dlib_ms[32] / onnx_ms[default][32]
    print(f"ratio dlib/onnx at batch 32: {ratio32:.1f}x (goal >= {GOAL_RATIO:.0f}x and <= 10 ms/face)")
    if args.json:
        result = {
            "bench": "embed",
            "faces": len(chips),
            "onnx_threads": threads,
            "gflop_per_face": round(flops / 1e9, 4),
            "max_l2_vs_dlib": max_l2,
            "dlib_ms_per_face": {str(b): round(v, 3) for b, v in dlib_ms.items()},
            "onnx_ms_per_face": {
                k: {str(b): round(v, 3) for b, v in row.items()} for k, row in onnx_ms.items()
            },
            "ratio_by_batch": {str(b): round(dlib_ms[b] / onnx_ms[default][b], 2) for b in BATCHES},
            "onnx_gflops_batch32": round(flops / onnx_ms[default][32] / 1e6, 1),
            "ratio": round(ratio32, 2),
            "goal_met": bool(ratio32 >= GOAL_RATIO and onnx_ms[default][32] <= 10.0),
            "loadavg_1min": os.getloadavg()[0],
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
