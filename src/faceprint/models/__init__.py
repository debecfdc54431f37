"""The face models: one sub-folder per model, and the registry that names them.

- `dlib/`: the built-in default, dlib's ResNet, FaceModelVersion 2.0;
- `onnx_file/`: ONNX files a user adds (`faceprint models add`), FaceModelVersion 100.k;
- `aligners.py`: aligners shared by models (ArcFace five-point template, detector box).

`get_model(name)` returns the process-wide instance of a model (its embedder loads on first use);
`model_for_version(version)` the model whose vectors a collection of that FaceModelVersion holds.
Detection and landmarks are shared by all models (`faceprint.engine`).
"""

from __future__ import annotations

import threading

from faceprint.errors import InvalidParameterError, ResourceNotFoundError
from faceprint.models.base import Calibration, FaceGeometry, FaceModel, unit_rows

DEFAULT_MODEL = "dlib"
BUILTIN = ("dlib",)
# FaceModelVersion of every model faceprint knows by name (added models get 100.k, see onnx_file).
BUILTIN_VERSIONS = {"dlib": "2.0"}
_models: dict[str, FaceModel] = {}
_lock = threading.Lock()


class ModelNotFoundError(ResourceNotFoundError):
    """No model of that name or version in this installation and home."""


def _load(name: str) -> FaceModel:
    if name == "dlib":
        from faceprint.models.dlib import DlibModel

        return DlibModel()
    from faceprint.models import onnx_file

    model = onnx_file.load(name)
    if model is None:
        known = ", ".join(n for n in (*BUILTIN, *onnx_file.added_names()))
        raise ModelNotFoundError(f"face model {name!r} is not installed or added; models: {known}")
    return model


def get_model(name: str | None = None) -> FaceModel:
    """The face model `name` (default "dlib"), loaded once per process."""
    name = name or DEFAULT_MODEL
    with _lock:
        model = _models.get(name)
        if model is None:
            model = _models[name] = _load(name)
        elif name not in BUILTIN:  # an added model may have been removed or re-added since
            from faceprint.models import onnx_file

            fresh = onnx_file.load(name)
            if fresh is None:
                _models.pop(name, None)
                raise ModelNotFoundError(f"face model {name!r} was removed from this home")
            if fresh.spec != model.spec:  # type: ignore[attr-defined]
                model = _models[name] = fresh
        return model


def list_models() -> list[FaceModel]:
    """Every usable model: the built-in ones, then the home's added ONNX models."""
    from faceprint.models import onnx_file

    return [get_model(n) for n in (*BUILTIN, *onnx_file.added_names())]


def model_for_version(version: str) -> FaceModel:
    """The model computing FaceModelVersion `version`; a clear error when it is not (or no longer) here."""
    for name, v in BUILTIN_VERSIONS.items():
        if v == version:
            return get_model(name)
    from faceprint.models import onnx_file

    for name in onnx_file.added_names():
        model = get_model(name)
        if model.version == version:
            return model
    owner = onnx_file.version_owner(version)
    if owner:
        raise ModelNotFoundError(
            f"face model {owner!r} (FaceModelVersion {version}) was removed; its collections keep their "
            "faces: "
            f"add the same file again with `faceprint models add {owner} ...` or migrate them with "
            "`faceprint collections migrate`"
        )
    raise ModelNotFoundError(f"no face model of FaceModelVersion {version} in this installation")


def check_model_name(name: str) -> str:
    """`name` if it names a usable model, else InvalidParameterError."""
    try:
        get_model(name)
    except ResourceNotFoundError as exc:
        raise InvalidParameterError(exc.message) from None
    return name


def forget(name: str) -> None:
    """Drop a cached model (after `models remove`)."""
    with _lock:
        _models.pop(name, None)


__all__ = [
    "BUILTIN",
    "DEFAULT_MODEL",
    "Calibration",
    "FaceGeometry",
    "FaceModel",
    "ModelNotFoundError",
    "check_model_name",
    "get_model",
    "list_models",
    "model_for_version",
    "unit_rows",
]
