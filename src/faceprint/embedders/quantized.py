"""dlib's ResNet quantised to int8: the ONNX conversion with static QDQ quantisation, built once per machine.

How it is made (issue 13, measured in bench/RESULTS.md):
- weights int8 per output channel, activations uint8 per tensor, from activation ranges shipped in
  `faceprint/data/dlib_int8_ranges.json`;
- the last layer (the fully connected MatMul that makes the 128-D vector from the pooled features) stays
  float32: quantising it moved descriptors by a third more, for no measurable speed;
- `reduce_range`: weights use 7 bits. On AVX2 CPUs without VNNI, ONNX Runtime's u8s8 kernels add pairs of
  products in 16 bits, which saturate with 8-bit weights; that moved descriptors by up to 0.245 (L2, unit
  vectors). With 7 bits the largest movement measured was 0.04;
- the weights' codes are not rounded to nearest but chosen by GPTQ (`faceprint.embedders.gptq`), which
  halved the descriptors' movement; the codes ship as their differences from round-to-nearest in
  `faceprint/data/dlib_int8_rounding.npz`, checked by a hash of the result, so every installation runs the
  same network;
- the ranges and the codes were fitted on the 12 views and mirrors of Congress portraits (US government
  works) of members who are not LFW people, so no LFW face, where accuracy is measured, shaped them.

The int8 model is derived from the float32 conversion (itself derived from the installed dlib weights), the
shipped ranges and the shipped rounding, and cached beside it; a stamp records them, so a change of any
rebuilds it. `rounding=False` builds FaceModelVersion 2.1's round-to-nearest network, kept so that
collections of 2.1 keep working.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np

from faceprint import config
from faceprint.embedders.dlib_to_onnx import INPUT_NAME, MODEL_NAME, ensure_onnx_model, stamp_path
from faceprint.files import sha256_file, write_atomically

RANGES_VERSION = "1"
QUANTIZER_VERSION = "2"  # bump when the quantisation settings change: cached int8 models are then rebuilt
ROUNDING_VERSION = "1"
RTN_FILE = f"{MODEL_NAME}.int8-r{RANGES_VERSION}-q{QUANTIZER_VERSION}.onnx"  # FaceModelVersion 2.1
INT8_FILE = f"{MODEL_NAME}.int8-r{RANGES_VERSION}-q{QUANTIZER_VERSION}-g{ROUNDING_VERSION}.onnx"  # 2.2
_lock = threading.Lock()


def _data(name: str) -> Path:
    return Path(str(resources.files("faceprint") / "data" / name))


def ranges_path() -> Path:
    """The shipped activation ranges (package data)."""
    return _data("dlib_int8_ranges.json")


def rounding_path() -> Path:
    """The shipped GPTQ codes, as differences from round-to-nearest (package data)."""
    return _data("dlib_int8_rounding.npz")


def _codes_digest(codes: dict[str, np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(codes):
        digest.update(name.encode() + b"\0" + np.ascontiguousarray(codes[name], dtype=np.int8).tobytes())
    return digest.hexdigest()


def _weight_codes(model) -> dict[str, np.ndarray]:
    """The int8 weight initializers of a QDQ model's Conv nodes, by name."""
    from onnx import numpy_helper

    from faceprint.embedders.gptq import conv_weight_dequantizers

    names = {dq.input[0] for dq in conv_weight_dequantizers(model).values()}
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in names}


def _apply_rounding(path: Path, rounding: Path) -> None:
    """Replace the round-to-nearest weight codes of the QDQ model at `path` by the shipped ones."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    rtn = _weight_codes(model)
    with np.load(rounding) as shipped:
        meta = json.loads(str(shipped["meta"]))
        diffs = {k.removeprefix("diff:"): shipped[k] for k in shipped.files if k.startswith("diff:")}
    if set(diffs) != set(rtn):
        raise ValueError(f"{rounding.name} does not match this int8 model's layers; refit it")
    codes = {k: (rtn[k].astype(np.int16) + diffs[k]).astype(np.int8) for k in rtn}
    if _codes_digest(codes) != meta["codes_sha256"]:
        raise ValueError(
            f"{rounding.name} was fitted on another round-to-nearest int8 model (another float32 conversion "
            "or ONNX Runtime quantiser); refit it with bench/quantize.py --fit-rounding"
        )
    for init in model.graph.initializer:
        if init.name in codes:
            init.CopyFrom(numpy_helper.from_array(codes[init.name], init.name))
    data = model.SerializeToString()
    write_atomically(path, lambda fh: fh.write(data))


@contextmanager
def _root_logger_errors_only() -> Iterator[None]:
    """The quantiser warns on the root logger about the uint8 input it leaves alone: keep that quiet."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(fp32: Path, out: Path, ranges: dict | None = None, chips: np.ndarray | None = None) -> dict:
    """Quantise `fp32` into `out`, from `ranges` (ORT's calibration-cache dict) or by measuring them on
    `chips`; returns the ranges used."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[np.ndarray]) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="faceprint-int8-") as tmp, _root_logger_errors_only():
        pre, cache = Path(tmp) / "pre.onnx", Path(tmp) / "ranges.json"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        outputs = {o.name for o in graph.output}
        float_nodes = [n.name for n in graph.node if n.op_type == "MatMul" and set(n.output) & outputs]
        reader = None
        if ranges is not None:
            cache.write_text(json.dumps(ranges))
        else:
            assert chips is not None
            reader = Reader([chips[i : i + 16] for i in range(0, len(chips), 16)])
        quantize_static(
            str(pre),
            str(Path(tmp) / "int8.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibration_cache_path=cache,
            nodes_to_exclude=float_nodes,
        )
        data = (Path(tmp) / "int8.onnx").read_bytes()
        write_atomically(out, lambda fh: fh.write(data))
        return json.loads(cache.read_text())


def fit_ranges(chips: np.ndarray, provenance: dict, out: Path | None = None) -> Path:
    """Measure activation ranges on `chips` ((N, 150, 150, 3) uint8) and write the ranges file (maintainers
    run this through `bench/quantize.py --fit-ranges`; the result ships as package data)."""
    out = out or ranges_path()
    fp32 = ensure_onnx_model()
    with tempfile.TemporaryDirectory(prefix="faceprint-int8-") as tmp:
        ranges = _quantize(fp32, Path(tmp) / "int8.onnx", chips=chips)
    doc = {
        "ranges_version": RANGES_VERSION,
        "float_model_sha256": sha256_file(fp32),
        "provenance": provenance,
        "ort_calibration": ranges,
    }
    text = json.dumps(doc, indent=1, sort_keys=True).encode()
    return write_atomically(out, lambda fh: fh.write(text))


def fit_rounding(chips: np.ndarray, provenance: dict, out: Path | None = None) -> Path:
    """Choose the weight codes by GPTQ with Hessians measured on `chips` and write the rounding file
    (maintainers run this through `bench/quantize.py --fit-rounding`; the result ships as package data)."""
    import onnx

    from faceprint.embedders.gptq import round_qdq_model

    out = out or rounding_path()
    fp32 = ensure_onnx_model()
    with tempfile.TemporaryDirectory(prefix="faceprint-int8-") as tmp:
        rtn_path = Path(tmp) / "rtn.onnx"
        _quantize(fp32, rtn_path, ranges=json.loads(ranges_path().read_text())["ort_calibration"])
        rtn = _weight_codes(onnx.load(str(rtn_path)))
        codes = round_qdq_model(rtn_path, fp32, INPUT_NAME, chips)
    meta = {
        "rounding_version": ROUNDING_VERSION,
        "float_model_sha256": sha256_file(fp32),
        "ranges_sha256": sha256_file(ranges_path()),
        "codes_sha256": _codes_digest(codes),
        "provenance": provenance,
    }
    diffs = {f"diff:{k}": (codes[k].astype(np.int16) - rtn[k]).astype(np.int8) for k in codes}

    def write(fh) -> None:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta, sort_keys=True)), **diffs)

    return write_atomically(out, write)


def ensure_int8_model(cache: Path | None = None, rounding: bool = True) -> Path:
    """Path of the int8 model in the cache, built (about 10 s) when missing or stale: with the shipped GPTQ
    codes (FaceModelVersion 2.2), or rounded to nearest with `rounding=False` (2.1)."""
    fp32 = ensure_onnx_model(cache=cache)
    out = (cache or config.cache_dir()) / (INT8_FILE if rounding else RTN_FILE)
    source = ranges_path()
    stamp = {
        "float_model": json.loads(stamp_path(fp32).read_text()),
        "ranges_size": source.stat().st_size,
        "ranges_mtime_ns": source.stat().st_mtime_ns,
    }
    if rounding:
        stamp["rounding_size"] = rounding_path().stat().st_size
        stamp["rounding_mtime_ns"] = rounding_path().stat().st_mtime_ns

    def build() -> None:
        doc = json.loads(source.read_text())
        if doc.get("float_model_sha256") != sha256_file(fp32):
            raise ValueError(
                f"{source.name} was fitted on another float32 conversion of {MODEL_NAME}; "
                "refit it with bench/quantize.py --fit-ranges"
            )
        _quantize(fp32, out, ranges=doc["ort_calibration"])
        if rounding:
            _apply_rounding(out, rounding_path())

    return _built_once(out, stamp, build)


def _built_once(out: Path, stamp: dict, build: Callable[[], None]) -> Path:
    """`out`, first built by `build()` unless its stamp file already records `stamp` (written after the
    build, so an interrupted build is redone)."""
    stamp_file = stamp_path(out)
    with _lock:
        try:
            if out.is_file() and json.loads(stamp_file.read_text()) == stamp:
                return out
        except (OSError, ValueError):
            pass
        build()
        text = json.dumps(stamp).encode()
        write_atomically(stamp_file, lambda fh: fh.write(text))
    return out


FOLD_VERSION = "1"  # bump when `faceprint.embedders.input_lut` changes what it writes


def ensure_runtime_int8_model(cache: Path | None = None, rounding: bool = True) -> Path:
    """The int8 model the embedder runs: `ensure_int8_model`'s, with its input stage folded into a lookup
    table (`faceprint.embedders.input_lut`; the same vectors, 3-8% faster), cached beside it."""
    from faceprint.embedders.input_lut import fold_input_stage

    qdq = ensure_int8_model(cache=cache, rounding=rounding)
    out = qdq.with_name(f"{qdq.stem}.lut{FOLD_VERSION}.onnx")
    stamp = {"qdq_model": json.loads(stamp_path(qdq).read_text()), "qdq_mtime_ns": qdq.stat().st_mtime_ns}
    return _built_once(out, stamp, lambda: fold_input_stage(qdq, out, INPUT_NAME))
