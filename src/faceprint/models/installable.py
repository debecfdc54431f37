"""What the models installed on demand (`faceprint models install NAME`) share: their files in the home's
`models/<name>/` folder, the `models list` entry of one that is not installed, and removal."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from faceprint.errors import ResourceNotFoundError


class NotInstalledError(ResourceNotFoundError):
    """The model is not installed in this home."""


def folder(name: str) -> Path:
    """The model's folder in the home (its network, install record and calibration)."""
    from faceprint.models.onnx_file import models_dir

    return models_dir() / name


def is_installed(name: str) -> bool:
    where = folder(name)
    return (where / "install.json").is_file() and (where / "model.onnx").is_file()


def catalogue_entry(name: str, version: str, dim: int, description: str, load: Callable[[], object]) -> dict:
    """What `faceprint models list` shows: the installed model's `info()`, else how to install it."""
    if is_installed(name):
        return load().info()  # type: ignore[attr-defined]
    return {
        "Name": name,
        "FaceModelVersion": version,
        "Kind": "installable",
        "Dimension": dim,
        "Calibration": None,
        "Installed": False,
        "Install": f"faceprint models install {name}",
        "Description": description,
    }


def uninstall(name: str) -> Path:
    """Delete the installed files (and the home's calibration of the model). Collections keep their faces."""
    where = folder(name)
    if not where.is_dir():
        raise NotInstalledError(f"face model {name!r} is not installed")
    shutil.rmtree(where)
    return where
