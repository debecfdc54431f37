"""The optional parts of faceprint and the pip extras that install them: one place for the message a user
sees when an extra is missing (one line naming it, never an ImportError traceback)."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from faceprint.errors import FaceprintError

# extra -> how to install it
INSTALL = {
    "cluster": "pip install 'faceprint[cluster]'",
    # the bench extra's face_recognition resolves only with the two stand-ins beside it (pyproject.toml)
    "bench": "make install, or: pip install -e '.[bench]' "
    "./bench/shims/dlib ./bench/shims/face-recognition-models",
    "dev": "pip install -e '.[dev]'",
}


class MissingExtraError(FaceprintError):
    """An optional part was used without the extra that installs it (a server fault on the wire)."""

    code = "InternalServerError"
    status = 500

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: {INSTALL[extra]}")
        self.extra = extra
        self.feature = feature


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming `extra` if it (or a module it needs) is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(extra, feature) from exc


def available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
