"""Native threads per call, for processes that run several calls at once.

A process that runs one detection and one embedder call per worker thread, like `faceprint index`, uses
the CPUs best with one native thread per call: ONNX Runtime's and LiteRT's own thread pools would only
compete with the other workers (and with any other process) for the same cores. Measured in
bench/RESULTS.md ("Ingest throughput"): BlazeFace with one LiteRT thread returns the same boxes for 38%
less CPU per image than with two, and one ONNX intra-op thread per call wastes the least CPU.
"""

from __future__ import annotations


def prefer_one_thread_per_call() -> None:
    """From now on, sessions and interpreters created in this process use one native thread per call
    (`FACEPRINT_ONNX_THREADS` still sets ONNX Runtime's). Call it before the first face is analysed."""
    from faceprint.detectors.blazeface import shared_model
    from faceprint.embedders.onnx_resnet import prefer_threads

    prefer_threads(1)
    shared_model().num_threads = 1  # read when each thread creates its interpreter
