"""Fold a quantised network's input stage into a 256-entry lookup table per colour channel.

dlib's int8 ResNet begins with per-channel elementwise work on every pixel before its first convolution:
uint8 -> float, minus the channel mean, quantise, dequantise, times 1/256, quantise again. Each output code
depends only on one input byte and its channel, so the whole stage is a table of 256 x 3 codes. ONNX Runtime
ran it as six passes over the batch in its NHWC layout; OpenCV's `LUT` does it in one (the network 3-8%
faster, bench/RESULTS.md). The table is computed by running the stage itself in ONNX
Runtime on every byte value, so the folded network's vectors are bit-identical to the unfolded one's
(tests/test_int8_model.py checks it on real faces).

The folded model takes `LUT_INPUT` (the table's uint8 codes, NHWC) and carries the table in its metadata
under `LUT_KEY`; `OnnxEmbedder` applies it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceprint.files import write_atomically

LUT_KEY = "faceprint.input_lut"  # model metadata: the (256, 3) table as a JSON list of rows
LUT_INPUT = "codes"
_ELEMENTWISE = {"Cast", "Sub", "Mul", "Add", "Div", "QuantizeLinear", "DequantizeLinear"}


def _per_channel(dims: list[int]) -> bool:
    """A scalar, or one value per channel of an NCHW tensor ((3, 1, 1) or (1, 3, 1, 1))."""
    size = int(np.prod(dims)) if dims else 1
    return size == 1 or (size == 3 and len(dims) >= 3 and dims[-3] == 3)


def _front(graph, input_name: str) -> tuple[list, str]:
    """The nodes from `input_name` (NHWC uint8) to the first convolution's quantised input, and that
    tensor's name: a Transpose to NCHW, then only elementwise ops whose constants are per channel."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    chain, tensor = [], input_name
    while True:
        users = consumers.get(tensor, [])
        if len(users) != 1:
            raise ValueError(f"input stage tensor {tensor!r} has {len(users)} consumers")
        node = users[0]
        if node.op_type == "DequantizeLinear" and chain[-1:] and chain[-1].op_type == "QuantizeLinear":
            after = consumers.get(node.output[0], [])
            if len(after) == 1 and after[0].op_type == "Conv":
                return chain, tensor
        if not chain:
            perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
            if node.op_type != "Transpose" or perm != [[0, 3, 1, 2]]:
                raise ValueError("the input stage does not start with an NHWC -> NCHW Transpose")
        elif node.op_type not in _ELEMENTWISE:
            raise ValueError(f"{node.op_type} in the input stage is not elementwise")
        for name in node.input[1:]:
            if name and name not in constants:  # a constant stored quantised: its DequantizeLinear joins
                source = producers.get(name)
                if (
                    source is None
                    or source.op_type != "DequantizeLinear"
                    or not set(source.input) <= set(constants)
                ):
                    raise ValueError(f"{node.op_type}'s operand {name!r} is not a constant")
                chain.append(source)
                name = source.input[0]
            if name and not _per_channel(list(constants[name].dims)):
                raise ValueError(f"{node.op_type}'s operand {name!r} is not a per-channel constant")
        chain.append(node)
        tensor = node.output[0]


def _table(model, input_name: str, chain: list, out_name: str) -> np.ndarray:
    """(256, 3) uint8: the code the input stage `chain` of `model` (a ModelProto) gives each byte, per
    channel, computed by running that stage in ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model_input = next(i for i in model.graph.input if i.name == input_name)
    shape = [d.dim_value for d in model_input.type.tensor_type.shape.dim]
    height, width = shape[1], shape[2]
    stage = helper.make_model(
        helper.make_graph(
            chain,
            "input_stage",
            [model_input],
            [helper.make_tensor_value_info(out_name, onnx.TensorProto.UINT8, None)],
            [i for i in model.graph.initializer if any(i.name in n.input for n in chain)],
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    session = ort.InferenceSession(stage.SerializeToString(), providers=["CPUExecutionProvider"])
    ramp = np.zeros((1, height * width, 3), np.uint8)
    ramp[0, :256] = np.arange(256, dtype=np.uint8)[:, None]
    codes = session.run(None, {input_name: ramp.reshape(1, height, width, 3)})[0]  # NCHW
    return np.ascontiguousarray(codes[0].reshape(3, -1)[:, :256].T)


def fold_input_stage(source: Path, out: Path, input_name: str) -> None:
    """Write `source` with its input stage replaced by a lookup table (see the module docstring)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    chain, out_name = _front(model.graph, input_name)
    table = _table(model, input_name, chain, out_name)
    dropped = {id(n) for n in chain}
    kept = [n for n in model.graph.node if id(n) not in dropped]
    old_input = next(i for i in model.graph.input if i.name == input_name)
    new_input = onnx.ValueInfoProto()
    new_input.CopyFrom(old_input)
    new_input.name = LUT_INPUT
    del model.graph.node[:]
    model.graph.node.extend([helper.make_node("Transpose", [LUT_INPUT], [out_name], perm=[0, 3, 1, 2])])
    model.graph.node.extend(kept)
    model.graph.input.remove(old_input)
    model.graph.input.insert(0, new_input)
    used = {name for n in model.graph.node for name in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    helper.set_model_props(model, {LUT_KEY: json.dumps(table.tolist())})
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    write_atomically(out, lambda fh: fh.write(data))


def table_of(metadata: dict[str, str]) -> np.ndarray | None:
    """The (256, 1, 3) table OpenCV's `LUT` takes, from a folded model's metadata (None when unfolded)."""
    text = metadata.get(LUT_KEY)
    if text is None:
        return None
    table = np.asarray(json.loads(text), dtype=np.uint8)
    if table.shape != (256, 3):
        raise ValueError(f"{LUT_KEY} holds a {table.shape} table, expected (256, 3)")
    return table.reshape(256, 1, 3)


def apply_table(chips: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The codes a folded model takes for (N, H, W, 3) uint8 `chips`, from its `table_of` table."""
    import cv2

    chips = np.ascontiguousarray(chips)
    n, height, width, _ = chips.shape
    return cv2.LUT(chips.reshape(n * height, width, 3), table).reshape(chips.shape)
