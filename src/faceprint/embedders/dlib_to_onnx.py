"""Convert dlib's serialized face-recognition ResNet (`.dat`) into an equivalent ONNX model.

dlib's stream is read directly (its variable-length ints, portable floats and raw float tensors).
A dlib network is a C++ type, so the stream does not name tag and skip layers: the converter
walks it with the architecture of `dlib_face_recognition_resnet_model_v1` (`resnet_v1_layers`)
and checks every layer it meets against that description. Each `affine_` (dlib's test-time
batch-norm) is folded into the convolution before it; the input mean subtraction and /256
scaling of `input_rgb_image_sized` run inside the graph, which takes uint8 RGB chips NHWC.

Generated on first use into `config.cache_dir()`, keyed by the sha256 of the source `.dat`.
Command line: `python -m faceprint.embedders.dlib_to_onnx OUT.onnx [--dat PATH]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint import config
from faceprint.files import sha256_file, write_atomically

if TYPE_CHECKING:  # `onnx` itself is imported only to convert: loading a converted model never needs it
    import onnx

log = logging.getLogger(__name__)

MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
CONVERTER_VERSION = "2"  # bump when the generated graph changes: cached models are then rebuilt
# The cached conversion's file name carries the converter version: processes of different versions sharing
# one cache (several checkouts, an upgrade) each keep their own file instead of rewriting each other's.
MODEL_FILE = f"{MODEL_NAME}.c{CONVERTER_VERSION}.onnx"
INPUT_NAME = "chips"
OUTPUT_NAME = "embeddings"
OPSET = 17

_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002  # float_details' special exponents
_lock = threading.Lock()


class DlibFormatError(ValueError):
    """The `.dat` stream does not match the expected dlib network."""


# --------------------------------------------------------------------------- dlib stream reader


class DlibReader:
    """Sequential reader of dlib's serialization primitives."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of stream at byte {self.pos} (wanted {n} bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        """dlib's packed integer: a control byte (size in the low 4 bits, 0x80 = negative), then LE bytes."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        """dlib's portable float: an int64 mantissa and an int16 exponent, value = mantissa * 2**exponent."""
        mantissa, exponent = self.int(), self.int()
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        """dlib writes a bool as the character '1' or '0'."""
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def string(self) -> str:
        return self._take(self.int()).decode("ascii")

    def expect_string(self, *allowed: str) -> str:
        at = self.pos
        name = self.string()
        if name not in allowed:
            raise DlibFormatError(f"expected {' or '.join(allowed)} at byte {at}, found {name!r}")
        return name

    def expect_int(self, allowed: int, what: str) -> None:
        at = self.pos
        value = self.int()
        if value != allowed:
            raise DlibFormatError(f"{what}: expected {allowed} at byte {at}, found {value}")

    def tensor(self) -> np.ndarray:
        """A `resizable_tensor`: version, n, k, nr, nc, then the values (raw LE float32 in version 2)."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        count = math.prod(shape)
        if version == 2:
            values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:
            values = np.array([self.float() for _ in range(count)], dtype=np.float32)
        else:
            raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An `alias_tensor` (a view into a layer's params): version 1, then n, k, nr, nc."""
        self.expect_int(1, "alias_tensor version")
        n, k, nr, nc = (self.int() for _ in range(4))
        return n, k, nr, nc


# --------------------------------------------------------------------------- architecture


@dataclass
class Layer:
    """One dlib layer; `params` is filled in from the stream for computational layers."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    tag: int = 0  # tag id of tag/skip/add_prev layers
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_add_layer(self) -> bool:
        return self.kind not in ("tag", "skip")


def resnet_v1_layers() -> list[Layer]:
    """The layers of dlib's `anet_type` (dnn_face_recognition_ex.cpp), input side first."""

    def block(n: int, stride: int) -> list[Layer]:
        del n, stride  # filter counts and strides are read from the stream
        return [Layer("con"), Layer("affine"), Layer("relu"), Layer("con"), Layer("affine")]

    def ares(n: int) -> list[Layer]:  # relu<add_prev1<block<tag1<x>>>>
        return [Layer("tag", 1), *block(n, 1), Layer("add_prev", 1), Layer("relu")]

    def ares_down(n: int) -> list[Layer]:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>>
        return [
            Layer("tag", 1),
            *block(n, 2),
            Layer("tag", 2),
            Layer("skip", 1),
            Layer("avg_pool"),
            Layer("add_prev", 2),
            Layer("relu"),
        ]

    layers = [Layer("con"), Layer("affine"), Layer("relu"), Layer("max_pool")]
    layers += [*ares(32), *ares(32), *ares(32)]  # alevel4
    layers += [*ares_down(64), *ares(64), *ares(64), *ares(64)]  # alevel3
    layers += [*ares_down(128), *ares(128), *ares(128)]  # alevel2
    layers += [*ares_down(256), *ares(256), *ares(256)]  # alevel1
    layers += ares_down(256)  # alevel0
    layers += [Layer("avg_pool"), Layer("fc")]  # avg_pool_everything, fc_no_bias<128>
    return [Layer(x.kind, x.tag) for x in layers]  # fresh objects (list repetition shares them)


@dataclass
class DlibNet:
    """A parsed dlib network: input preprocessing, layers (input side first) and loss settings."""

    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[Layer]
    loss: dict[str, float]


def _read_details(r: DlibReader, layer: Layer) -> None:
    """Read one layer's details (the part named by a string such as `con_4`) into `layer.params`."""
    p = layer.params
    if layer.kind == "con":
        r.expect_string("con_4", "con_5")
        params = r.tensor().ravel()
        num_filters, nr, nc = r.int(), r.int(), r.int()
        p["stride"] = (r.int(), r.int())
        p["padding"] = (r.int(), r.int())
        fshape, bshape = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        if fshape[0] != num_filters or fshape[2:] != (nr, nc):
            raise DlibFormatError(f"con_ filter shape {fshape} does not match {num_filters}x{nr}x{nc}")
        nw = math.prod(fshape)
        p["weight"] = params[:nw].reshape(fshape)
        p["bias"] = params[nw : nw + math.prod(bshape)].reshape(num_filters)
    elif layer.kind == "affine":
        r.expect_string("affine_")
        params = r.tensor().ravel()
        gshape, bshape = r.alias(), r.alias()
        mode = r.int()
        if mode != 0:  # CONV_MODE (0): one gamma/beta per channel; FC_MODE (1) is per element
            raise DlibFormatError(f"affine_ mode {mode} is not supported (expected CONV_MODE)")
        ng = math.prod(gshape)
        p["gamma"] = params[:ng]
        p["beta"] = params[ng : ng + math.prod(bshape)]
    elif layer.kind in ("max_pool", "avg_pool"):
        r.expect_string(f"{layer.kind}_2")
        p["kernel"] = (r.int(), r.int())
        p["stride"] = (r.int(), r.int())
        p["padding"] = (r.int(), r.int())
    elif layer.kind == "relu":
        r.expect_string("relu_")
    elif layer.kind == "add_prev":
        r.expect_string("add_prev_")
    elif layer.kind == "fc":
        r.expect_string("fc_2")
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().ravel()
        wshape, bshape = r.alias(), r.alias()
        p["bias_mode"] = r.int()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
        for _ in range(4):
            r.float()
        nw = num_inputs * num_outputs
        if wshape[:2] != (num_inputs, num_outputs):
            raise DlibFormatError(f"fc_ weight shape {wshape} does not match {num_inputs}x{num_outputs}")
        p["weight"] = params[:nw].reshape(num_inputs, num_outputs)
        p["bias"] = params[nw : nw + num_outputs] if p["bias_mode"] == 0 else None
    else:
        raise DlibFormatError(f"no reader for layer kind {layer.kind}")


def _skip_layer_state(r: DlibReader) -> None:
    """The training state after each add_layer's details: 3 bools and 3 (empty at test time) tensors."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()


def parse_dlib_net(data: bytes, layers: list[Layer] | None = None) -> DlibNet:
    """Parse a serialized `loss_metric<...>` network whose layers are `layers` (input side first)."""
    layers = resnet_v1_layers() if layers is None else layers
    r = DlibReader(data)
    r.expect_int(1, "add_loss_layer version")
    r.expect_string("loss_metric_2")
    loss = {"margin": r.float(), "distance_threshold": r.float()}
    # Versions nest outermost first: add_layer 2, tag/skip 1, and 3 for the add_layer on the input.
    for i, layer in enumerate(reversed(layers)):
        innermost = i == len(layers) - 1
        version = (3 if innermost else 2) if layer.is_add_layer else 1
        r.expect_int(version, f"{layer.kind} layer version (layer {len(layers) - i} from the input)")
    r.expect_string("input_rgb_image_sized")
    mean_rgb = (r.float(), r.float(), r.float())
    input_size = (r.int(), r.int())
    # Then each add_layer's details and state, innermost (input side) first.
    for i, layer in enumerate(layers):
        if not layer.is_add_layer:
            continue
        _read_details(r, layer)
        _skip_layer_state(r)
        if i == 0:
            r.expect_int(1, "sample expansion factor")
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} trailing bytes after the network")
    return DlibNet(mean_rgb=mean_rgb, input_size=input_size, layers=layers, loss=loss)


# --------------------------------------------------------------------------- ONNX graph


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers while tracking each value's (C, H, W) shape."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int] | None, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        if shape is not None:
            self.shapes[out] = shape
        return out


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def _conv(g: _GraphBuilder, x: str, con: Layer, affine: Layer | None) -> str:
    """A convolution, with the following affine_ (y = gamma * x + beta) folded into its weights."""
    w = con.params["weight"].astype(np.float64)
    b = con.params["bias"].astype(np.float64)
    if affine is not None:
        gamma = affine.params["gamma"].astype(np.float64)
        w = w * gamma[:, None, None, None]
        b = b * gamma + affine.params["beta"].astype(np.float64)
    (sy, sx), (py, px) = con.params["stride"], con.params["padding"]
    c, h, wd = g.shapes[x]
    if w.shape[1] != c:
        raise DlibFormatError(f"conv expects {w.shape[1]} input channels, gets {c}")
    shape = (w.shape[0], _out_size(h, w.shape[2], sy, py), _out_size(wd, w.shape[3], sx, px))
    return g.node(
        "Conv",
        [x, g.const("w", w.astype(np.float32)), g.const("b", b.astype(np.float32))],
        shape,
        kernel_shape=list(w.shape[2:]),
        strides=[sy, sx],
        pads=[py, px, py, px],
    )


def _pool(g: _GraphBuilder, x: str, layer: Layer) -> str:
    (ky, kx), (sy, sx), (py, px) = layer.params["kernel"], layer.params["stride"], layer.params["padding"]
    c, h, w = g.shapes[x]
    if layer.kind == "avg_pool" and ky == 0 and kx == 0:  # avg_pool_everything
        return g.node("GlobalAveragePool", [x], (c, 1, 1))
    if layer.kind == "avg_pool" and (py or px):
        raise DlibFormatError("padded average pooling is not supported")
    op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
    shape = (c, _out_size(h, ky, sy, py), _out_size(w, kx, sx, px))
    return g.node(op, [x], shape, kernel_shape=[ky, kx], strides=[sy, sx], pads=[py, px, py, px])


def _pad_to(g: _GraphBuilder, x: str, shape: tuple[int, int, int]) -> str:
    """Zero-pad at the end of C, H and W, as dlib's `add_prev` does when its inputs differ in size."""
    c, h, w = g.shapes[x]
    if (c, h, w) == shape:
        return x
    pads = np.array([0, 0, 0, 0, 0, shape[0] - c, shape[1] - h, shape[2] - w], dtype=np.int64)
    return g.node("Pad", [x, g.const("pads", pads)], shape, mode="constant")


def build_onnx(net: DlibNet, source_sha256: str = "") -> onnx.ModelProto:
    """The ONNX graph of a parsed network: uint8 RGB chips (N, H, W, 3) in, float32 (N, dim) out."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    nr, nc = net.input_size
    # Transposed to NCHW while still uint8, then (x - mean) / 256 per channel: the same float operations on
    # every element as casting and subtracting in NHWC (so the same vectors, bit for bit), but a quarter of
    # the bytes moved by the transpose, and a per-channel broadcast that ONNX Runtime runs fast where the
    # innermost-axis broadcast of a 3-vector took 10% of the whole network's time (converter version 2).
    x = g.node("Transpose", [INPUT_NAME], (3, nr, nc), perm=[0, 3, 1, 2])
    x = g.node("Cast", [x], (3, nr, nc), to=TensorProto.FLOAT)
    mean = np.array(net.mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", [x, g.const("mean", mean)], (3, nr, nc))
    x = g.node("Mul", [x, g.const("scale", np.array(1 / 256, dtype=np.float32))], (3, nr, nc))
    tags: dict[int, str] = {}
    layers = net.layers
    dim = 0
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind == "con":
            nxt = layers[i + 1] if i + 1 < len(layers) and layers[i + 1].kind == "affine" else None
            x = _conv(g, x, layer, nxt)
            i += 1 if nxt is not None else 0
        elif layer.kind == "affine":  # an affine_ not after a con_: a per-channel scale and shift
            c = g.shapes[x][0]
            gamma = layer.params["gamma"].reshape(1, c, 1, 1)
            beta = layer.params["beta"].reshape(1, c, 1, 1)
            x = g.node("Mul", [x, g.const("gamma", gamma)], g.shapes[x])
            x = g.node("Add", [x, g.const("beta", beta)], g.shapes[x])
        elif layer.kind == "relu":
            x = g.node("Relu", [x], g.shapes[x])
        elif layer.kind in ("max_pool", "avg_pool"):
            x = _pool(g, x, layer)
        elif layer.kind == "tag":
            tags[layer.tag] = x
        elif layer.kind == "skip":
            x = tags[layer.tag]
        elif layer.kind == "add_prev":
            other = tags[layer.tag]
            shape = tuple(max(a, b) for a, b in zip(g.shapes[x], g.shapes[other], strict=True))
            x = g.node("Add", [_pad_to(g, x, shape), _pad_to(g, other, shape)], shape)
        elif layer.kind == "fc":
            weight = layer.params["weight"]
            x = g.node("Flatten", [x], None, axis=1)
            x = g.node("MatMul", [x, g.const("fc_w", weight)], None)
            if layer.params["bias"] is not None:
                x = g.node("Add", [x, g.const("fc_b", layer.params["bias"])], None)
            dim = weight.shape[1]
        else:
            raise DlibFormatError(f"cannot convert layer kind {layer.kind}")
        i += 1
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        g.nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", nr, nc, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", dim])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "faceprint.embedders.dlib_to_onnx"
    model.doc_string = f"dlib {MODEL_NAME} converted layer by layer; input uint8 RGB NHWC chips"
    helper.set_model_props(
        model,
        {"source_model": MODEL_NAME, "source_sha256": source_sha256, "converter_version": CONVERTER_VERSION},
    )
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------- files and cache


def default_source() -> Path:
    from faceprint.weights import dlib_model_path

    return dlib_model_path(MODEL_NAME)


def convert(dat_path: Path, out_path: Path) -> Path:
    """Convert `dat_path` into `out_path` (written atomically) and return `out_path`."""
    data = dat_path.read_bytes()
    model = build_onnx(parse_dlib_net(data), hashlib.sha256(data).hexdigest())
    return write_atomically(out_path, lambda fh: fh.write(model.SerializeToString()))


def model_props(path: Path) -> dict[str, str]:
    """The metadata properties of an ONNX file (empty if it is missing or unreadable)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _stamp(dat_path: Path, out: Path) -> dict[str, Any]:
    """What the cached model was made from, cheap to check: sizes and mtimes of source and model."""
    src, model = dat_path.stat(), out.stat() if out.exists() else None
    return {
        "converter_version": CONVERTER_VERSION,
        "source": [src.st_size, src.st_mtime_ns],
        "onnx": [model.st_size, model.st_mtime_ns] if model else None,
    }


def stamp_path(model: Path) -> Path:
    """The stamp beside a generated model (`<model>.json`): what it was generated from."""
    return model.with_name(model.name + ".json")


def ensure_onnx_model(dat_path: Path | None = None, cache: Path | None = None) -> Path:
    """Path of the converted model in the cache, (re)generating it if missing or stale.

    A stamp file beside the model (`<model>.json`) records what it was converted from: when the source's
    size and mtime match it, the model is used without hashing the source or parsing the model (both
    cost about a tenth of a second at every start); otherwise the sha256 and the model's own metadata
    decide, as they always did.
    """
    dat_path = dat_path or default_source()
    out = (cache or config.cache_dir()) / MODEL_FILE
    stamp_file = stamp_path(out)
    with _lock:
        try:
            if json.loads(stamp_file.read_text()) == _stamp(dat_path, out):
                return out
        except (OSError, ValueError):
            pass
        want = {"source_sha256": sha256_file(dat_path), "converter_version": CONVERTER_VERSION}
        props = model_props(out)
        if not all(props.get(k) == v for k, v in want.items()):
            log.info("converting %s to ONNX at %s", dat_path.name, out)
            convert(dat_path, out)
        stamp = json.dumps(_stamp(dat_path, out)).encode()
        write_atomically(stamp_file, lambda fh: fh.write(stamp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert dlib's face-recognition ResNet to ONNX.")
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument("--dat", type=Path, default=None, help="dlib .dat file (default: the installed one)")
    args = parser.parse_args(argv)
    src = args.dat or default_source()
    convert(src, args.out)
    props = model_props(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) from {src} sha256={props['source_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
