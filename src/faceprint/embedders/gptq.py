"""GPTQ rounding of a QDQ model's convolution weights: the same int8 grid, better-chosen codes.

Round-to-nearest gives each weight the closest code on its channel's grid; the errors of one output
channel then add up in every activation. GPTQ (Frantar et al., 2022) quantises the weights of an output
channel one input position at a time and moves the weights not yet quantised so that the layer's outputs
on real inputs change least: it minimises `|| X (W_q - W) ||^2` with the Hessian `H = X^T X` of the
layer's (im2col) inputs. Scales stay those of the quantiser, so the model runs the same int8 kernels.

Used by maintainers (`bench/quantize.py --fit-rounding`) to fit the codes that ship with faceprint; the
int8 model of every installation applies the shipped codes, so its vectors are the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _attributes(node) -> tuple[list[int], list[int], int]:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (
        list(attrs.get("pads", [0, 0, 0, 0])),
        list(attrs.get("strides", [1, 1])),
        int(attrs.get("group", 1)),
    )


def im2col(x: np.ndarray, kernel: tuple[int, int], pads: list[int], strides: list[int]) -> np.ndarray:
    """(N, C, H, W) activations to (N * out positions, C * kh * kw) patches, in ONNX Conv weight order."""
    kh, kw = kernel
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, :: strides[0], :: strides[1]]
    n, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def conv_hessians(fp32: Path, feed: str, chips: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
    """The mean `X^T X` of every Conv's input patches when the float model `fp32` runs on `chips`."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from faceprint.embedders.onnx_resnet import session_options

    model = onnx.load(str(fp32))
    weights = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inputs = list(dict.fromkeys(n.input[0] for n in convs))
    for name in inputs:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )
    sums: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for start in range(0, len(chips), batch):
        acts = dict(zip(inputs, session.run(inputs, {feed: chips[start : start + batch]}), strict=True))
        for node in convs:
            pads, strides, group = _attributes(node)
            if group != 1:
                raise ValueError(f"{node.name}: grouped convolutions are not supported")
            kernel = numpy_helper.to_array(weights[node.input[1]]).shape[2:]
            patches = im2col(acts[node.input[0]], kernel, pads, strides).astype(np.float32)
            sums[node.name] = sums.get(node.name, 0) + (patches.T @ patches).astype(np.float64)
            rows[node.name] = rows.get(node.name, 0) + len(patches)
    return {name: total / rows[name] for name, total in sums.items()}


def gptq_codes(
    weights: np.ndarray,
    scale: np.ndarray,
    hessian: np.ndarray,
    qmax: int,
    damp: float = 0.01,
    block: int = 128,
) -> np.ndarray:
    """Integer codes (same shape as `weights`) on the symmetric grid `scale[c] * [-qmax, qmax]` of each
    output channel c, chosen by GPTQ with `hessian` (input positions in decreasing order of activity)."""
    w = weights.reshape(len(weights), -1).astype(np.float64).copy()
    d = w.shape[1]
    h = hessian.copy()
    dead = np.diag(h) == 0  # inputs that are always zero here: rounded to nearest, nothing to compensate
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices(d)] += damp * np.mean(np.diag(h))
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    s = scale.astype(np.float64)
    codes = np.zeros_like(w)
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        part, errors, hb = w[:, i1:i2].copy(), np.zeros((len(w), i2 - i1)), hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            q = np.clip(np.round(part[:, j] / s), -qmax, qmax)
            codes[:, i1 + j] = q
            err = (part[:, j] - q * s) / hb[j, j]
            part[:, j:] -= np.outer(err, hb[j, j:])
            errors[:, j] = err
        w[:, i2:] -= errors @ hinv[i1:i2, i2:]
    out = np.empty_like(codes)
    out[:, order] = codes
    return out.reshape(weights.shape)


def conv_weight_dequantizers(model) -> dict[str, object]:
    """Each quantised Conv of a QDQ ONNX `model`, by node name: the DequantizeLinear node feeding its
    weights (its first input names the int8 codes, its second their per-channel scales)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    return {
        node.name: producer[node.input[1]]
        for node in model.graph.node
        if node.op_type == "Conv"
        and node.input[1] in producer
        and producer[node.input[1]].op_type == "DequantizeLinear"
    }


def round_qdq_model(qdq: Path, fp32: Path, feed: str, chips: np.ndarray) -> dict[str, np.ndarray]:
    """GPTQ codes of every quantised Conv weight of `qdq` (the quantisation of `fp32`), by the name of the
    weight's int8 initializer, with Hessians measured on `chips`."""
    import onnx
    from onnx import numpy_helper

    hessians = conv_hessians(fp32, feed, chips)
    float_weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(fp32)).graph.initializer}
    float_convs = {n.name: n for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"}
    model = onnx.load(str(qdq))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    codes = {}
    for name, dq in conv_weight_dequantizers(model).items():
        if name not in hessians:
            continue
        rtn, scale = init[dq.input[0]], init[dq.input[1]]
        if rtn.dtype != np.int8 or (len(dq.input) > 2 and np.any(init[dq.input[2]] != 0)):
            raise ValueError(f"{name}: expected symmetric int8 weights")
        qmax = int(np.abs(rtn).max())
        w = float_weights[float_convs[name].input[1]]
        codes[dq.input[0]] = gptq_codes(w, scale, hessians[name], qmax).astype(np.int8)
    return codes
