"""Quantisation study of the embedder: int8 (static QDQ, dynamic) versions of the converted ResNet against
the float32 model, measured in the same run: ms per chip, and how far their vectors move.

Static quantisation is calibrated on chips of Congress portraits (never LFW, where accuracy is measured).
Speed: the same real LFW chips (5-point, padding 0.25) at batch 32 with 1 and 2 intra-op threads, best of
`--repeats`. Agreement: the model 2.0 descriptor (12 views averaged) of `--faces` LFW faces from each model,
L2 distance to the float32 descriptor, against the distance of LFW's same-person pairs (about 0.43 with
unit vectors) and the search thresholds' margins.

    .venv/bin/python bench/quantize.py [--faces 96] [--repeats 3] [--json]

The shipped int8 models (FaceModelVersions 2.1 and 2.2, `faceprint.embedders.quantized`) are also
measured. Three more modes:

    .venv/bin/python bench/quantize.py --fit-ranges [--faces 96]    # refit data/dlib_int8_ranges.json
    .venv/bin/python bench/quantize.py --fit-rounding [--faces 96]  # refit data/dlib_int8_rounding.npz
    .venv/bin/python bench/quantize.py --lfw --json                 # issue 13's rule, float vs int8

`--fit-ranges` measures activation ranges on the 12 views and mirrors of `--faces` Congress portraits of
members who are not LFW people (every 3rd chip); `--fit-rounding` chooses the weight codes by GPTQ on the
same chips (run it after `--fit-ranges`: the codes are fitted on the model those ranges make).
`--lfw` embeds every LFW image with models 2.0 and 2.2 and reports, for each, TAR at FMR 1e-3..1e-6 over
all pairs of all people (raw scores) and the change: the rule is a drop of at most 0.5 points at 1e-4 (and
`faceprint eval lfw --model dlib-int8` >= 99.2%).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from faceprint import config
from faceprint.embedders.dlib_to_onnx import INPUT_NAME, ensure_onnx_model
from faceprint.embedders.input_lut import LUT_INPUT, apply_table, table_of
from faceprint.embedders.onnx_resnet import session_options
from faceprint.embedders.quantized import ensure_int8_model, ensure_runtime_int8_model
from faceprint.engine import FaceEngine, unit_rows


def face_views(files: list[Path], n: int) -> np.ndarray:
    """(faces, 12, 150, 150, 3): the model 2.0 chips of the largest face of each image, up to `n` faces."""
    engine = FaceEngine.shared()
    views = []
    for path in files:
        faces = engine.detect(path, max_faces=1)
        if faces:
            views.append(faces[0].views)
        if len(views) == n:
            break
    return np.stack(views)


class ChipReader:
    """Calibration batches for `quantize_static`."""

    def __init__(self, chips: np.ndarray, batch: int = 16) -> None:
        self._batches = iter([chips[i : i + batch] for i in range(0, len(chips), batch)])

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def build_models(fp32: Path, calibration: np.ndarray, out: Path) -> dict[str, Path]:
    """The int8 models (static QDQ calibrated on `calibration`, dynamic), built once into `out`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out.mkdir(parents=True, exist_ok=True)
    pre = out / "pre.onnx"
    models = {"int8_static_qdq": out / "static.onnx", "int8_dynamic": out / "dynamic.onnx"}
    if all(p.exists() and p.stat().st_mtime > fp32.stat().st_mtime for p in models.values()):
        return models  # built by an earlier run from the same float32 model
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # the shapes are static but the batch
    quantize_static(
        str(pre),
        str(models["int8_static_qdq"]),
        ChipReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    quantize_dynamic(str(pre), str(models["int8_dynamic"]), weight_type=QuantType.QUInt8)
    return models


def feed(session: ort.InferenceSession, chips: np.ndarray) -> dict[str, np.ndarray]:
    """`session`'s input for `chips`: the chips, or their codes for a model whose input stage is folded
    into a lookup table (`faceprint.embedders.input_lut`; the table lookup is timed with the network)."""
    table = table_of(session.get_modelmeta().custom_metadata_map)
    return {INPUT_NAME: chips} if table is None else {LUT_INPUT: apply_table(chips, table)}


def ms_per_chip(session: ort.InferenceSession, chips: np.ndarray, repeats: int, batch: int = 32) -> float:
    session.run(None, feed(session, chips[:batch]))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(chips), batch):
            session.run(None, feed(session, chips[i : i + batch]))
        best = min(best, (time.perf_counter() - t0) * 1000 / len(chips))
    return best


def describe(session: ort.InferenceSession, views: np.ndarray) -> np.ndarray:
    """Model 2.0 descriptors (views and their mirrors averaged, unit length) with `session`."""
    n, cuts = views.shape[:2]
    chips = views.reshape(n * cuts, *views.shape[2:])
    chips = np.concatenate([chips, chips[:, :, ::-1]])
    vecs = np.concatenate(
        [session.run(None, feed(session, chips[i : i + 32]))[0] for i in range(0, len(chips), 32)]
    )
    return unit_rows(vecs.reshape(2, n, cuts, -1).mean(axis=(0, 2)))


def congress_chips(faces: int) -> np.ndarray:
    """The 12 views and mirrors of `faces` Congress portraits of members who are not LFW people, in bioguide
    order, every 3rd chip: what the shipped ranges and rounding are fitted on."""
    from faceprint.accuracy import congress, lfw

    data = config.data_dir()
    members = congress.read_members(data)
    mates = congress.lfw_mates(members, set(lfw.read_images(data).persons))
    strangers = [m for m in sorted(members, key=lambda m: m.bioguide) if m.bioguide not in mates]
    photos = [data / "congress" / m.photo for m in strangers]
    views = face_views(photos, faces).reshape(-1, 150, 150, 3)
    return np.concatenate([views, views[:, :, ::-1]])[::3].copy()


CHIPS_SOURCE = (
    "Congress portraits (US government works) of members not in LFW, in bioguide order: model 2.0's 12 views "
    "and their mirrors, every 3rd chip"
)


FIT_METHODS = {
    "ranges": "MinMax, per-channel int8 weights with reduce_range, uint8 activations, QDQ",
    "rounding": "GPTQ per Conv (inputs in decreasing Hessian diagonal order, damping 0.01 of the mean "
    "diagonal, blocks of 128), Hessians of the float32 model's inputs; scales of the quantiser kept",
}


def fit_shipped(what: str, faces: int) -> None:
    """Refit the shipped activation ranges (`what` = "ranges") or GPTQ weight codes ("rounding") on
    Congress portraits of members who are not LFW people."""
    from faceprint.embedders.quantized import fit_ranges, fit_rounding

    chips = congress_chips(faces)
    provenance = {
        "chips": len(chips),
        "faces": faces,
        "source": CHIPS_SOURCE,
        "method": FIT_METHODS[what],
        "command": f"bench/quantize.py --fit-{what}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print((fit_ranges if what == "ranges" else fit_rounding)(chips, provenance))


def lfw_rule(load: tuple[float, float, float]) -> dict:
    """TAR at FMR 1e-3..1e-6 on all LFW pairs (raw scores), models 2.0 and 2.1, and the change."""
    from faceprint.accuracy import lfw
    from faceprint.accuracy.embeddings import DETECTED, embed_dataset
    from faceprint.accuracy.normalised import all_pairs

    images = lfw.read_images()
    out: dict = {"bench": "quantize_lfw", "loadavg_before": load}
    for name in ("dlib", "dlib-int8"):
        engine = FaceEngine.shared().with_model(name)
        t0 = time.perf_counter()
        es = embed_dataset(engine, "lfw", lfw.lfw_root(), images.paths, policy="central", fallback=True)
        keep = es.status == DETECTED
        ids = np.unique(np.array(images.persons)[keep], return_inverse=True)[1]
        pairs = all_pairs(es.vectors[keep], ids)
        tar = {f"{f:g}": pairs.tar_at_fmr(f)[0] for f in (1e-3, 1e-4, 1e-5, 1e-6)}
        out[name] = {"images": int(keep.sum()), "tar_at_fmr": tar, "seconds": round(time.perf_counter() - t0)}
        print(name, engine.model.version, out[name], flush=True)
    base, q = out["dlib"]["tar_at_fmr"], out["dlib-int8"]["tar_at_fmr"]
    out["tar_change_points"] = {k: round(100 * (q[k] - base[k]), 2) for k in base}
    out["rule_met"] = out["tar_change_points"]["0.0001"] >= -0.5
    out["loadavg_after"] = os.getloadavg()
    print(f"TAR change at FMR 1e-4: {out['tar_change_points']['0.0001']:+.2f} points (rule: >= -0.5)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-ranges", action="store_true", help="refit the shipped int8 activation ranges")
    parser.add_argument("--fit-rounding", action="store_true", help="refit the shipped GPTQ weight codes")
    parser.add_argument("--lfw", action="store_true", help="issue 13's accuracy rule on all LFW pairs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    if args.fit_ranges or args.fit_rounding:
        fit_shipped("ranges" if args.fit_ranges else "rounding", args.faces)
        return
    if args.lfw:
        result = lfw_rule(load)
        if args.json:
            print(json.dumps(result))
        return
    data = config.data_dir()
    fp32 = ensure_onnx_model()
    congress = sorted((data / "congress" / "photos").glob("*.jpg"))[:24]
    calibration = face_views(congress, 24).reshape(-1, 150, 150, 3)
    lfw = sorted((data / "lfw" / "lfw-deepfunneled").glob("*/*_0001.jpg"))[::7][: args.faces * 2]
    views = face_views(lfw, args.faces)
    chips = views[:, 2].copy()  # the (5-point, 0.25) chip of each face: dlib's own
    chips = chips[: len(chips) // 32 * 32]
    paths = {
        "float32": fp32,
        **build_models(fp32, calibration, config.cache_dir() / "quantization-study"),
        "int8_2.1_round_to_nearest": ensure_int8_model(rounding=False),
        "int8_2.2_gptq": ensure_int8_model(),
        "int8_2.2_gptq_folded_input": ensure_runtime_int8_model(),  # what the default model runs
    }
    rows: dict[str, dict] = {}
    reference = None
    for name, path in paths.items():
        row: dict = {}
        for threads in (1, 2):
            session = ort.InferenceSession(
                str(path), session_options(threads), providers=["CPUExecutionProvider"]
            )
            row[f"ms_per_chip_{threads}_threads"] = round(ms_per_chip(session, chips, args.repeats), 3)
        vectors = describe(session, views)
        if reference is None:
            reference = vectors
        d = np.linalg.norm(vectors - reference, axis=1)
        row.update({"l2_to_float32_mean": float(d.mean()), "l2_to_float32_max": float(d.max())})
        rows[name] = row
    base = rows["float32"]
    for name, row in rows.items():
        row["speedup_2_threads"] = round(base["ms_per_chip_2_threads"] / row["ms_per_chip_2_threads"], 2)
        row["speedup_1_thread"] = round(base["ms_per_chip_1_threads"] / row["ms_per_chip_1_threads"], 2)
        print(
            f"{name:18s} {row['ms_per_chip_1_threads']:6.2f} ms/chip "
            f"(1 thread, {row['speedup_1_thread']:.2f}x) "
            f"{row['ms_per_chip_2_threads']:6.2f} ms/chip (2 threads, {row['speedup_2_threads']:.2f}x) | "
            f"descriptor L2 to float32 mean {row['l2_to_float32_mean']:.4f} "
            f"max {row['l2_to_float32_max']:.4f}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "quantize",
                    "faces": len(views),
                    "chips": len(chips),
                    "models": rows,
                    "loadavg_before": load,
                    "loadavg_after": os.getloadavg(),
                }
            )
        )


if __name__ == "__main__":
    main()
