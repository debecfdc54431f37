"""The ONNX conversion of dlib's ResNet gives dlib's vectors on real LFW faces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dlib
import numpy as np
import onnx
import pytest

from faceprint import config, weights
from faceprint.embedders import get_embedder
from faceprint.embedders.base import CHIP_PADDING, CHIP_SIZE
from faceprint.embedders.dlib_resnet import DlibEmbedder
from faceprint.embedders.dlib_to_onnx import (
    MODEL_FILE,
    MODEL_NAME,
    DlibReader,
    default_source,
    ensure_onnx_model,
    model_props,
    parse_dlib_net,
)
from faceprint.embedders.onnx_resnet import OnnxEmbedder
from faceprint.images import load_image

N_PEOPLE = 105  # two images each: >= 200 faces after the few HOG misses


def _lfw_pairs() -> list[tuple[str, Path, Path]]:
    """Deterministic spread of LFW people with 2+ images: (person, first image, second image)."""
    root = config.data_dir() / "lfw" / "lfw-deepfunneled"
    if not root.is_dir():
        pytest.skip(f"LFW is not at {root}")
    people = [p for p in sorted(root.iterdir()) if (p / f"{p.name}_0002.jpg").is_file()]
    step = len(people) // N_PEOPLE
    return [(p.name, p / f"{p.name}_0001.jpg", p / f"{p.name}_0002.jpg") for p in people[::step][:N_PEOPLE]]


def _chip(path: Path) -> np.ndarray | None:
    """dlib's aligned chip of the largest HOG face (5-point landmarks, 150 px, 25% padding)."""
    rgb = load_image(path).pixels
    boxes = list(weights.hog_detector()(rgb, 0))
    if not boxes:
        return None
    box = max(boxes, key=lambda b: b.area())
    shapes = dlib.full_object_detections()
    shapes.append(weights.shape_predictor_5()(rgb, box))
    return dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)[0]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faceprint_cache")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache: Path) -> OnnxEmbedder:
    """Converts the installed .dat into a temporary cache (FACEPRINT_CACHE) once per session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEPRINT_CACHE", str(onnx_cache))
        return OnnxEmbedder()


@pytest.fixture(scope="session")
def lfw_chips() -> tuple[np.ndarray, np.ndarray]:
    """Chips of enrolment (image 1) and probe (image 2) faces, and each pair's person index."""
    chips, labels = [], []
    for i, (_, first, second) in enumerate(_lfw_pairs()):
        pair = [_chip(first), _chip(second)]
        if all(c is not None for c in pair):
            chips += pair
            labels += [i, i]
    return np.stack(chips), np.array(labels)


@pytest.fixture(scope="session")
def both_vectors(lfw_chips, onnx_embedder) -> tuple[np.ndarray, np.ndarray]:
    chips, _ = lfw_chips
    return DlibEmbedder().embed_chips(chips), onnx_embedder.embed_chips(chips)


def test_reader_decodes_dlib_primitives() -> None:
    r = DlibReader(bytes([0x01, 0x05, 0x02, 0x00, 0x01, 0x81, 0x07, 0x01, 0x10, 0x81, 0x04]) + b"10")
    assert (r.int(), r.int(), r.int(), r.float(), r.bool(), r.bool()) == (5, 256, -7, 1.0, True, False)


def test_parser_reads_the_whole_network() -> None:
    net = parse_dlib_net(default_source().read_bytes())
    assert net.input_size == (150, 150)
    assert np.allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.loss == pytest.approx({"margin": 0.04, "distance_threshold": 0.6}, abs=1e-6)
    convs = [layer for layer in net.layers if layer.kind == "con"]
    assert len(convs) == 29
    assert convs[0].params["weight"].shape == (32, 3, 7, 7)
    assert convs[-1].params["weight"].shape == (256, 256, 3, 3)
    fc = net.layers[-1]
    assert fc.params["weight"].shape == (256, 128) and fc.params["bias"] is None


def test_cached_model_records_source_hash_and_is_regenerated(onnx_embedder, onnx_cache: Path) -> None:
    path = onnx_cache / MODEL_FILE
    assert onnx_embedder.model_path == path
    source_hash = hashlib.sha256(default_source().read_bytes()).hexdigest()
    assert model_props(path)["source_sha256"] == source_hash
    mtime = path.stat().st_mtime_ns
    assert ensure_onnx_model(cache=onnx_cache) == path and path.stat().st_mtime_ns == mtime  # reused
    stale = onnx.load(str(path))
    next(p for p in stale.metadata_props if p.key == "source_sha256").value = "0" * 64
    tmp = onnx_cache / "stale" / path.name
    tmp.parent.mkdir()
    onnx.save(stale, str(tmp))
    ensure_onnx_model(cache=tmp.parent)
    assert model_props(tmp)["source_sha256"] == source_hash  # a changed source hash forces a rebuild


@pytest.mark.slow
def test_onnx_vectors_match_dlib(lfw_chips, both_vectors) -> None:
    chips, _ = lfw_chips
    ref, got = both_vectors
    assert len(chips) >= 200 and got.shape == ref.shape == (len(chips), 128) and got.dtype == np.float32
    cosine = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cosine.min() >= 0.9999
    assert np.linalg.norm(ref - got, axis=1).max() < 0.005


@pytest.mark.slow
def test_identification_is_the_same(lfw_chips, both_vectors) -> None:
    _, labels = lfw_chips
    nearest = []
    for vectors in both_vectors:
        enrolled, probes = vectors[0::2], vectors[1::2]
        dists = np.linalg.norm(probes[:, None, :] - enrolled[None, :, :], axis=2)
        nearest.append(dists.argmin(axis=1))
    assert np.array_equal(nearest[0], nearest[1])
    accuracy = np.mean(labels[0::2][nearest[1]] == labels[1::2])
    assert accuracy >= 0.9  # dlib's model identifies LFW people well; a broken graph would not


def test_batches_and_empty_input(lfw_chips, onnx_embedder) -> None:
    chips = lfw_chips[0][:40]
    whole = onnx_embedder.embed_chips(chips)
    singles = np.concatenate([onnx_embedder.embed_chips(chips[i : i + 1]) for i in range(0, 40, 13)])
    assert np.allclose(whole[::13], singles, atol=1e-5)
    assert onnx_embedder.embed_chips(chips[:0]).shape == (0, 128)
    with pytest.raises(ValueError):
        onnx_embedder.embed_chips(chips.astype(np.float32))


def test_get_embedder_prefers_onnx_with_dlib_model_version(onnx_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEPRINT_CACHE", str(onnx_cache))
    auto = get_embedder()
    assert auto is get_embedder("auto") is get_embedder("onnx")
    assert auto.name == "onnx" and auto.model_version == DlibEmbedder.model_version == MODEL_NAME
    with pytest.raises(ValueError):
        get_embedder("arcface")
