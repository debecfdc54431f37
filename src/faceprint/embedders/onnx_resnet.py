"""dlib's 128-D ResNet run by ONNX Runtime: the same vectors as `DlibEmbedder`, many times faster."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from faceprint.embedders.base import CHIP_SIZE
from faceprint.embedders.dlib_to_onnx import MODEL_NAME, ensure_onnx_model
from faceprint.embedders.input_lut import apply_table, table_of

# Measured on this 2-core Xeon (AVX-512), idle, batch 32: ORT_ENABLE_ALL (NCHWc layout, fused Conv+Add+Relu)
# 2.2 ms/face vs 4.0 for EXTENDED; 2 intra-op threads 2.2 ms vs 4.1 for 1. Spinning idle worker threads saves
# 5% at batch 32 (18% at batch 1) but burns the CPU the rest of the server needs, so it is off by default.
DEFAULT_BATCH = 32


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


THREADS_ENV = "FACEPRINT_ONNX_THREADS"
_preferred_threads: int | None = None


def prefer_threads(threads: int) -> None:
    """Set this process's default intra-op threads for sessions created from now on (`FACEPRINT_ONNX_THREADS`
    still wins). A process that runs several embedder calls at once, like `faceprint index`, prefers 1."""
    global _preferred_threads
    _preferred_threads = max(1, threads)


def default_threads() -> int:
    """`FACEPRINT_ONNX_THREADS`, else the process's preference (`prefer_threads`), else its usable CPUs."""
    return int(os.environ.get(THREADS_ENV, "0") or 0) or _preferred_threads or _usable_cpus()


def session_options(threads: int | None = None, spin: bool = False) -> ort.SessionOptions:
    """ONNX Runtime options tuned for a small CPU: all graph optimizations, one op at a time.

    `threads` defaults to `default_threads()`.
    """
    if threads is None:
        threads = default_threads()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3  # errors only
    return so


class OnnxEmbedder:
    """Embeds aligned 150x150 RGB chips with the ONNX conversion of dlib's ResNet."""

    name = "onnx"
    model_version = MODEL_NAME  # the same network as DlibEmbedder: collections stay compatible
    dim = 128

    def __init__(
        self,
        model_path: str | Path | None = None,
        threads: int | None = None,
        spin: bool = False,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        """Load `model_path`, by default the cached conversion (generated on first use)."""
        self.model_path = Path(model_path) if model_path is not None else ensure_onnx_model()
        self.batch_size = batch_size
        options = session_options(threads, spin)
        self.threads = options.intra_op_num_threads
        providers = ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(self.model_path), options, providers=providers)
        self._input_name = self._session.get_inputs()[0].name
        self._input_table = table_of(self._session.get_modelmeta().custom_metadata_map)
        out = self._session.get_outputs()[0]
        if out.shape[-1] != self.dim:
            raise ValueError(f"{self.model_path} outputs {out.shape}, expected (batch, {self.dim})")

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips to (N, 128) float32 vectors, run in batches of `batch_size`."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 chips (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = (chips[i : i + self.batch_size] for i in range(0, len(chips), self.batch_size))
        parts = [self._session.run(None, {self._input_name: self._network_input(b)})[0] for b in batches]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _network_input(self, chips: np.ndarray) -> np.ndarray:
        """The chips themselves, or their codes when the model's input stage is a lookup table."""
        if self._input_table is None:
            return np.ascontiguousarray(chips)
        return apply_table(chips, self._input_table)
