"""Convert a TensorFlow.js graph model (`model.json` + weight shards) into an equivalent ONNX model.

A TF.js graph model is a TensorFlow GraphDef written as JSON (`modelTopology.node`), with every constant's
value moved into binary shards described by `weightsManifest` (possibly quantised: float16, or uint8/uint16
with a scale and minimum). The converter reads both, keeps only the nodes the requested output depends on
(for faceres: the identity features `global_pooling/Mean`, never the age and gender heads), and translates
them op by op. It knows only the ops such graphs use (MobileNet-style convolutions, plain or grappler-fused
with their bias and ReLU; element-wise arithmetic including `Abs`, so PReLU written as
`relu(x) + a * (x - |x|)` translates; ReLU/ReLU6/sigmoid/tanh; mean pooling; the `Squeeze`, `Square`,
`Sum`, `Rsqrt` of an L2 normalisation) and refuses anything else by name. TensorFlow is not needed.

Activations are carried NCHW inside the graph (ONNX's `Conv` layout); the ONNX model keeps the TF.js input
(e.g. `input_1`, NHWC float32) and output names, so it is a drop-in for the original graph (an activation
asked for as the output is handed back NHWC). A `Relu` clipped by `Minimum`/`Maximum` (Keras' ReLU6) becomes
one `Clip`, which ONNX Runtime fuses into the convolution.

Command line: `python -m faceprint.models.faceres.tfjs_to_onnx MODEL.json OUT.onnx [--output NAME]`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.files import sha256_file, write_atomically

if TYPE_CHECKING:  # `onnx` is imported only to convert: running a converted model never needs it
    import onnx

CONVERTER_VERSION = "1"  # bump when the generated graph changes
OPSET = 17
DEFAULT_OUTPUT = "global_pooling/Mean"

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTISED = {"float16": np.dtype("<f2"), "uint8": np.dtype("u1"), "uint16": np.dtype("<u2")}
# NHWC axis -> NCHW axis, for reductions over activations carried NCHW
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class TfjsFormatError(ValueError):
    """The TF.js model is malformed, or uses an op or attribute the converter does not translate."""


# --------------------------------------------------------------------------- reading model.json + shards


@dataclass
class TfNode:
    """One GraphDef node: its op, inputs (data inputs only, `^control` ones dropped) and raw attributes."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any] = field(default_factory=dict)

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        value = self.attr.get(key, {}).get("list", {}).get("i")
        if value is None:
            if default is None:
                raise TfjsFormatError(f"{self.name}: missing attribute {key}")
            return default
        return [int(v) for v in value]

    def string(self, key: str, default: str | None = None) -> str:
        value = self.attr.get(key, {}).get("s")
        if value is None:
            if default is None:
                raise TfjsFormatError(f"{self.name}: missing attribute {key}")
            return default
        return base64.b64decode(value).decode()

    def flag(self, key: str) -> bool:
        return bool(self.attr.get(key, {}).get("b", False))


@dataclass
class TfjsGraph:
    """A TF.js graph model: its nodes by name, in file order, and its constants' values by name."""

    nodes: dict[str, TfNode]
    weights: dict[str, np.ndarray]

    def input_shape(self, name: str) -> list[int]:
        dims = self.nodes[name].attr.get("shape", {}).get("shape", {}).get("dim", [])
        return [int(d.get("size", -1)) for d in dims]


def _tensor_name(ref: str) -> str:
    """`node:0` and `node` name the same tensor (single-output ops only)."""
    name, _, index = ref.partition(":")
    if index not in ("", "0"):
        raise TfjsFormatError(f"output {index} of {name} is not supported (single-output ops only)")
    return name


def decode_weights(manifest: list[dict[str, Any]], read_shard: Any) -> dict[str, np.ndarray]:
    """Each manifest entry's value, dequantised to its declared dtype. `read_shard(path) -> bytes`."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join(read_shard(p) for p in group["paths"])
        pos = 0
        for spec in group["weights"]:
            name, shape = spec["name"], [int(s) for s in spec["shape"]]
            if spec["dtype"] not in _DTYPES:
                raise TfjsFormatError(f"weight {name}: dtype {spec['dtype']} is not supported")
            count = int(np.prod(shape, dtype=np.int64))
            quant = spec.get("quantization")
            stored = (
                _QUANTISED.get(quant["dtype"])
                if quant
                else np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
            )
            if stored is None:
                raise TfjsFormatError(f"weight {name}: quantisation {quant} is not supported")
            end = pos + count * stored.itemsize
            if end > len(data):
                raise TfjsFormatError(
                    f"weight {name} runs past the end of its shards ({end} > {len(data)} bytes)"
                )
            raw = np.frombuffer(data[pos:end], dtype=stored)
            pos = end
            if quant and quant["dtype"] != "float16":  # affine: value = q * scale + min
                values = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            else:
                values = raw
            weights[name] = values.astype(_DTYPES[spec["dtype"]]).reshape(shape)
        if pos != len(data):
            raise TfjsFormatError(
                f"{len(data) - pos} bytes of {group['paths']} are not described by the manifest"
            )
    return weights


def load_graph(model_json: Path) -> TfjsGraph:
    """Read a TF.js graph model: `model_json` and the weight shards its manifest names, beside it."""
    try:
        doc = json.loads(model_json.read_text())
        topology, manifest = doc["modelTopology"], doc["weightsManifest"]
        raw_nodes = topology["node"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TfjsFormatError(f"{model_json} is not a TF.js graph model: {exc}") from exc
    if doc.get("format", "graph-model") != "graph-model":
        raise TfjsFormatError(f"{model_json} is a {doc.get('format')}, not a graph-model")
    nodes: dict[str, TfNode] = {}
    for raw in raw_nodes:
        inputs = [_tensor_name(i) for i in raw.get("input", []) if not i.startswith("^")]
        nodes[raw["name"]] = TfNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))
    weights = decode_weights(manifest, lambda p: (model_json.parent / p).read_bytes())
    missing = [n.name for n in nodes.values() if n.op == "Const" and n.name not in weights]
    if missing:
        raise TfjsFormatError(f"constants without weights: {', '.join(missing[:5])}")
    return TfjsGraph(nodes, weights)


def needed_nodes(graph: TfjsGraph, output: str) -> list[TfNode]:
    """The nodes `output` depends on, inputs first (a depth-first topological order)."""
    if output not in graph.nodes:
        raise TfjsFormatError(f"the graph has no node {output!r}")
    order: list[TfNode] = []
    state: dict[str, int] = {}  # 1 = being visited, 2 = done
    stack: list[tuple[str, bool]] = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if expanded:
            state[name] = 2
            order.append(graph.nodes[name])
            continue
        if state.get(name) == 2:
            continue
        if state.get(name) == 1:
            raise TfjsFormatError(f"the graph has a cycle through {name}")
        if name not in graph.nodes:
            raise TfjsFormatError(f"input {name!r} is not a node of the graph")
        state[name] = 1
        stack.append((name, True))
        stack.extend((i, False) for i in reversed(graph.nodes[name].inputs) if state.get(i) != 2)
    return order


# --------------------------------------------------------------------------- ONNX graph


@dataclass
class _Value:
    """A translated tensor: ONNX name, rank, whether it is an NCHW activation, and its value if constant."""

    name: str
    rank: int
    nchw: bool = False
    const: np.ndarray | None = None


class _Builder:
    def __init__(self, graph: TfjsGraph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[str, _Value] = {}
        self.consumers: dict[str, int] = {}

    def init(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def emit(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def value(self, name: str) -> _Value:
        return self.values[name]

    def const_for(self, node: TfNode, tf_input: str, partner: _Value) -> str:
        """A constant operand, laid out to broadcast against `partner` the way it did against NHWC."""
        value = self.graph.weights[tf_input]
        if partner.nchw:
            if value.ndim == 1 and value.size > 1:
                value = value.reshape(-1, 1, 1)
            elif value.ndim == 4:
                value = value.transpose(0, 3, 1, 2)
            elif value.ndim not in (0, 1):
                raise TfjsFormatError(f"{node.name}: cannot broadcast a rank-{value.ndim} constant on NCHW")
        return self.init(f"{tf_input}/{'nchw' if partner.nchw else 'value'}", value.astype(np.float32))

    def operand(self, node: TfNode, i: int, partner: _Value | None) -> _Value:
        name = node.inputs[i]
        src = self.graph.nodes[name]
        if src.op == "Const":
            weight = self.graph.weights[name]
            if partner is None:
                return _Value(self.init(name, weight), weight.ndim, const=weight)
            return _Value(self.const_for(node, name, partner), weight.ndim, partner.nchw, const=weight)
        return self.values[name]


def _conv_attrs(node: TfNode) -> dict[str, Any]:
    if node.string("data_format", "NHWC") != "NHWC":
        raise TfjsFormatError(f"{node.name}: data_format {node.string('data_format')} is not supported")
    strides, dilations = node.ints("strides", [1, 1, 1, 1]), node.ints("dilations", [1, 1, 1, 1])
    if strides[0] != 1 or strides[3] != 1 or dilations[0] != 1 or dilations[3] != 1:
        raise TfjsFormatError(f"{node.name}: strides/dilations over batch or channels are not supported")
    padding = node.string("padding")
    if padding not in ("SAME", "VALID"):
        raise TfjsFormatError(f"{node.name}: padding {padding} is not supported")
    # TF's SAME puts the odd extra pixel at the end: ONNX's SAME_UPPER
    return {
        "strides": strides[1:3],
        "dilations": dilations[1:3],
        "auto_pad": "SAME_UPPER" if padding == "SAME" else "VALID",
    }


def _relu6_bound(b: _Builder, node: TfNode) -> float | None:
    """For `Maximum(Minimum(Relu(x), hi), 0)` (ReLU6), `hi`, when the inner nodes feed nothing else."""
    if node.op != "Maximum" or len(node.inputs) != 2:
        return None
    nodes, weights = b.graph.nodes, b.graph.weights
    inner, low = nodes[node.inputs[0]], nodes[node.inputs[1]]
    if low.op != "Const" or weights[low.name].size != 1 or float(weights[low.name]) != 0.0:
        return None
    if inner.op != "Minimum" or b.consumers.get(inner.name) != 1:
        return None
    relu, high = nodes[inner.inputs[0]], nodes[inner.inputs[1]]
    if relu.op != "Relu" or b.consumers.get(relu.name) != 1 or high.op != "Const":
        return None
    hi = weights[high.name]
    return float(hi) if hi.size == 1 and float(hi) >= 0 else None


def _translate(b: _Builder, node: TfNode) -> _Value | None:
    """Emit the ONNX nodes of one TF node; the value it produces (None: folded into a later node)."""
    op, out = node.op, node.name
    if op == "Placeholder":
        shape = b.graph.input_shape(node.name)
        if len(shape) != 4:
            return _Value(node.name, len(shape))
        return _Value(b.emit("Transpose", [node.name], f"{out}/nchw", perm=[0, 3, 1, 2]), 4, nchw=True)
    if op == "Const":
        return None  # materialised where used, laid out for its consumer
    if op == "Identity":
        return b.value(node.inputs[0])
    if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
        return _convolution(b, node)
    if op in ("Add", "AddV2", "BiasAdd", "Sub", "Mul", "Minimum", "Maximum", "RealDiv"):
        return _binary(b, node)
    if op in ("Relu", "Relu6", "Sigmoid", "Tanh", "Abs", "Square", "Rsqrt"):
        return _unary(b, node)
    if op in ("Mean", "Sum"):
        return _reduction(b, node)
    if op == "Squeeze":
        return _squeeze(b, node)
    raise TfjsFormatError(f"{node.name}: op {op} is not supported by this converter")


def _convolution(b: _Builder, node: TfNode) -> _Value:
    """Conv2D / DepthwiseConv2dNative, and their grappler-fused forms (`+ BiasAdd`, optionally `+ Relu`)."""
    op, out = node.op, node.name
    x = b.value(node.inputs[0])
    if not x.nchw or b.graph.nodes[node.inputs[1]].op != "Const":
        raise TfjsFormatError(f"{node.name}: only NHWC activations convolved with constant kernels")
    fused = _fused_ops(node)
    if fused is not None:
        op = "Conv2D" if op == "_FusedConv2D" else "DepthwiseConv2dNative"
    kernel = b.graph.weights[node.inputs[1]]
    if op == "Conv2D":  # HWIO -> OIHW
        w, group = kernel.transpose(3, 2, 0, 1), 1
    else:  # H, W, C, multiplier -> (C * multiplier), 1, H, W
        kh, kw, c, m = kernel.shape
        w, group = kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw), c
    wname = b.init(f"{node.inputs[1]}/oihw", w.astype(np.float32))
    inputs = [x.name, wname]
    if fused:  # BiasAdd: the third input, a constant of one value per output channel
        bias = b.graph.weights.get(node.inputs[2]) if b.graph.nodes[node.inputs[2]].op == "Const" else None
        if bias is None or bias.shape != (w.shape[0],):
            raise TfjsFormatError(f"{node.name}: the fused bias must be a constant of {w.shape[0]} values")
        inputs.append(b.init(f"{node.inputs[2]}/bias", bias.astype(np.float32)))
    conv_out = f"{out}/conv" if fused and "Relu" in fused else out
    b.emit("Conv", inputs, conv_out, kernel_shape=list(w.shape[2:]), group=group, **_conv_attrs(node))
    if conv_out != out:
        b.emit("Relu", [conv_out], out)
    return _Value(out, 4, nchw=True)


def _fused_ops(node: TfNode) -> list[str] | None:
    """The fused ops of a grappler-fused convolution (None for a plain one): `BiasAdd`, then maybe `Relu`."""
    if not node.op.startswith(("_Fused", "Fused")):
        return None
    raw = node.attr.get("fused_ops", {}).get("list", {}).get("s", [])
    fused = [base64.b64decode(v).decode() for v in raw]
    if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]) or len(node.inputs) != 3:
        raise TfjsFormatError(f"{node.name}: fused ops {fused} are not supported (BiasAdd[, Relu] only)")
    return fused


def _binary(b: _Builder, node: TfNode) -> _Value:
    """Element-wise arithmetic; `Maximum(Minimum(Relu(x), 6), 0)` (Keras' ReLU6) becomes one Clip."""
    op, out = node.op, node.name
    bound = _relu6_bound(b, node)
    if bound is not None:
        x = b.value(b.graph.nodes[b.graph.nodes[node.inputs[0]].inputs[0]].inputs[0])
        lo = b.init(f"{out}/min", np.array(0.0, dtype=np.float32))
        hi = b.init(f"{out}/max", np.array(bound, dtype=np.float32))
        return _Value(b.emit("Clip", [x.name, lo, hi], out), x.rank, x.nchw)
    if len(node.inputs) != 2:
        raise TfjsFormatError(f"{node.name}: {op} with {len(node.inputs)} inputs")
    consts = [b.graph.nodes[i].op == "Const" for i in node.inputs]
    if all(consts):
        raise TfjsFormatError(f"{node.name}: {op} of two constants is not folded")
    first = b.operand(node, 0, None) if not consts[0] else None
    second = b.operand(node, 1, None) if not consts[1] else None
    if first is None:
        assert second is not None
        first = b.operand(node, 0, second)
    elif second is None:
        second = b.operand(node, 1, first)
    if first.nchw != second.nchw and first.const is None and second.const is None:
        raise TfjsFormatError(f"{node.name}: {op} mixes activations of different layouts")
    onnx_op = {"AddV2": "Add", "BiasAdd": "Add", "Minimum": "Min", "Maximum": "Max", "RealDiv": "Div"}
    b.emit(onnx_op.get(op, op), [first.name, second.name], out)
    return _Value(out, max(first.rank, second.rank), first.nchw or second.nchw)


def _unary(b: _Builder, node: TfNode) -> _Value:
    """Activations and element-wise functions of one tensor (`Square` as `x * x`, `Rsqrt` as 1/sqrt)."""
    op, out = node.op, node.name
    x = b.value(node.inputs[0])
    if op == "Relu6":
        lo = b.init(f"{out}/min", np.array(0.0, dtype=np.float32))
        hi = b.init(f"{out}/max", np.array(6.0, dtype=np.float32))
        return _Value(b.emit("Clip", [x.name, lo, hi], out), x.rank, x.nchw)
    if op == "Square":
        return _Value(b.emit("Mul", [x.name, x.name], out), x.rank, x.nchw)
    if op == "Rsqrt":
        root = b.emit("Sqrt", [x.name], f"{out}/sqrt")
        return _Value(b.emit("Reciprocal", [root], out), x.rank, x.nchw)
    return _Value(b.emit(op, [x.name], out), x.rank, x.nchw)


def _reduction(b: _Builder, node: TfNode) -> _Value:
    """Mean (over height and width of an activation, or any axes of a flat tensor) and Sum (flat only)."""
    op, out = node.op, node.name
    x = b.value(node.inputs[0])
    if b.graph.nodes[node.inputs[1]].op != "Const":
        raise TfjsFormatError(f"{node.name}: reduction axes must be constant")
    axes = sorted(int(a) % x.rank for a in np.atleast_1d(b.graph.weights[node.inputs[1]]))
    keep = node.flag("keep_dims")
    if x.nchw:
        axes = sorted(_NHWC_TO_NCHW_AXIS[a] for a in axes)
        if op != "Mean" or keep or not {2, 3} <= set(axes) or 1 in axes:
            raise TfjsFormatError(f"{node.name}: only a mean over height and width of an activation")
    if op == "Mean":
        b.emit("ReduceMean", [x.name], out, axes=axes, keepdims=int(keep))
    else:  # opset 13+: ReduceSum takes its axes as an input
        axes_name = b.init(f"{out}/axes", np.array(axes, dtype=np.int64))
        b.emit("ReduceSum", [x.name, axes_name], out, keepdims=int(keep))
    return _Value(out, x.rank if keep else x.rank - len(axes))


def _squeeze(b: _Builder, node: TfNode) -> _Value:
    """Squeeze of the 1x1 spatial dimensions of an activation (or given axes of a flat tensor)."""
    x = b.value(node.inputs[0])
    dims = [int(d) % x.rank for d in node.ints("squeeze_dims")]
    if not dims:
        raise TfjsFormatError(f"{node.name}: a Squeeze without squeeze_dims is not supported")
    if x.nchw:
        dims = [_NHWC_TO_NCHW_AXIS[d] for d in dims]
        if sorted(dims) != [2, 3]:
            raise TfjsFormatError(f"{node.name}: only squeezing height and width of an activation")
    axes_name = b.init(f"{node.name}/axes", np.array(sorted(dims), dtype=np.int64))
    b.emit("Squeeze", [x.name, axes_name], node.name)
    return _Value(node.name, x.rank - len(dims))


def build_onnx(
    graph: TfjsGraph,
    output: str = DEFAULT_OUTPUT,
    graph_name: str = "tfjs",
    props: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """The ONNX model computing `output` of `graph` from its placeholders, under the same names."""
    import onnx
    from onnx import TensorProto, helper

    order = needed_nodes(graph, output)
    b = _Builder(graph)
    for node in order:
        for i in node.inputs:
            b.consumers[i] = b.consumers.get(i, 0) + 1
    for node in order:
        if node.op == "Identity" and graph.nodes[node.inputs[0]].op == "Const":
            raise TfjsFormatError(f"{node.name}: an identity of a constant is not supported")
        produced = _translate(b, node)
        if produced is not None:
            b.values[node.name] = produced
    if output not in b.values:
        raise TfjsFormatError(f"{output} is a constant, not a computed output")
    result = b.values[output]
    if result.nchw:  # hand the activation back in the graph's own layout, under the output's name
        inner = f"{output}/nchw"
        for n in b.nodes:
            n.output[:] = [inner if o == output else o for o in n.output]
            n.input[:] = [inner if i == output else i for i in n.input]
        source = inner if result.name == output else result.name
        to_nhwc = helper.make_node("Transpose", [source], [output], f"{output}/to_nhwc", perm=[0, 2, 3, 1])
        b.nodes.append(to_nhwc)
        result = _Value(output, result.rank)
    if result.name != output:
        b.emit("Identity", [result.name], output)
    # A fused ReLU6 leaves its Relu/Minimum nodes unused: drop them, and initializers nothing reads
    needed = {output}
    kept: list[onnx.NodeProto] = []
    for n in reversed(b.nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(n.input)
    kept.reverse()
    inits = [t for t in b.inits if t.name in needed]
    placeholders = [n for n in order if n.op == "Placeholder"]
    inputs = []
    for p in placeholders:
        dtype = p.attr.get("dtype", {}).get("type", "DT_FLOAT")
        if dtype != "DT_FLOAT":
            raise TfjsFormatError(f"input {p.name}: dtype {dtype} is not supported")
        dims = [d if d >= 0 else "batch" for d in graph.input_shape(p.name)]
        inputs.append(helper.make_tensor_value_info(p.name, TensorProto.FLOAT, dims))
    out_dims: list[int | str] = ["batch"] + [None] * (result.rank - 1)  # type: ignore[list-item]
    onnx_graph = helper.make_graph(
        kept,
        graph_name,
        inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_dims)],
        initializer=inits,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "faceprint.models.faceres.tfjs_to_onnx"
    model.doc_string = f"TF.js graph model converted op by op; output {output}"
    helper.set_model_props(model, {"converter_version": CONVERTER_VERSION, **(props or {})})
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------- files


def convert(model_json: Path, out_path: Path, output: str = DEFAULT_OUTPUT, name: str = "tfjs") -> Path:
    """Convert the TF.js graph model `model_json` into `out_path` (written atomically)."""
    graph = load_graph(model_json)
    props = {"source_model": model_json.name, "source_sha256": sha256_file(model_json), "output": output}
    model = build_onnx(graph, output, graph_name=name, props=props)
    return write_atomically(out_path, lambda fh: fh.write(model.SerializeToString()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a TF.js graph model to ONNX (no TensorFlow needed)."
    )
    parser.add_argument("model_json", type=Path, help="the TF.js model.json (its weight shards beside it)")
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"graph node to export (default {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)
    try:
        convert(args.model_json, args.out, args.output)
    except (TfjsFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes), output {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
