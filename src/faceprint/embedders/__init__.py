"""Face embedders and `get_embedder`, the per-process factory that picks one by name."""

from __future__ import annotations

import logging
import threading

from faceprint.embedders.base import Embedder

log = logging.getLogger(__name__)

EMBEDDER_NAMES = ("auto", "onnx", "dlib", "int8", "int8-rtn")
_cache: dict[str, Embedder] = {}
_lock = threading.RLock()


def _load(name: str) -> Embedder:
    if name == "dlib":
        from faceprint.embedders.dlib_resnet import DlibEmbedder

        return DlibEmbedder()
    from faceprint.embedders.onnx_resnet import OnnxEmbedder

    if name in ("int8", "int8-rtn"):  # their own vectors (2.2 and 2.1): no fallback to the float32 network
        from faceprint.embedders.quantized import ensure_runtime_int8_model

        embedder = OnnxEmbedder(ensure_runtime_int8_model(rounding=name == "int8"))
        embedder.name = embedder.model_version = name
        return embedder

    return OnnxEmbedder()


def get_embedder(name: str = "auto") -> Embedder:
    """The process-wide embedder `name`: "onnx", "dlib", "auto" (onnx when it loads, else dlib), "int8" or
    "int8-rtn".

    The first three run the same float32 network, so their vectors are interchangeable; "int8" and
    "int8-rtn" run its quantised versions (`faceprint.embedders.quantized`: GPTQ-rounded weights, and
    rounded to nearest), whose vectors are other model versions'.
    """
    if name not in EMBEDDER_NAMES:
        raise ValueError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDER_NAMES)}")
    with _lock:
        if name not in _cache:
            if name == "auto":
                try:
                    _cache[name] = get_embedder("onnx")
                except Exception as exc:  # any failure to convert or load: fall back to the reference
                    log.warning(
                        "ONNX embedder unavailable (%s: %s); using dlib's, ~15x slower",
                        type(exc).__name__,
                        exc,
                    )
                    _cache[name] = get_embedder("dlib")
            else:
                _cache[name] = _load(name)
        return _cache[name]


__all__ = ["EMBEDDER_NAMES", "Embedder", "get_embedder"]
