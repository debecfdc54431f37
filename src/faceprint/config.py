"""Settings read from the environment, with the defaults a user expects."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Folder of real face data (`FACEPRINT_DATA_DIR`, default `../shared/data` beside the project)."""
    env = os.environ.get("FACEPRINT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return (_PROJECT_ROOT.parent / "shared" / "data").resolve()


def home_dir() -> Path:
    """Folder that holds collections, keys and logs (`FACEPRINT_HOME`, default `~/.faceprint`)."""
    return Path(os.environ.get("FACEPRINT_HOME", "~/.faceprint")).expanduser()


def cache_dir() -> Path:
    """Folder for generated artefacts such as the converted ONNX model (`FACEPRINT_CACHE`)."""
    env = os.environ.get("FACEPRINT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(xdg).expanduser() / "faceprint"


def cohort_file() -> Path | None:
    """A cohort file from `faceprint cohort build` (`FACEPRINT_COHORT`); None: the shipped cohort."""
    env = os.environ.get("FACEPRINT_COHORT")
    return Path(env).expanduser() if env else None


@dataclass(frozen=True)
class ImageLimits:
    """Input limits; the defaults are Rekognition's."""

    max_bytes: int = 5 * 1024 * 1024
    min_side: int = 80
    max_pixels: int = 40_000_000  # decompression-bomb guard (about 7,700 x 5,200)

    @classmethod
    def from_env(cls) -> ImageLimits:
        return cls(
            max_bytes=int(os.environ.get("FACEPRINT_MAX_IMAGE_BYTES", cls.max_bytes)),
            min_side=int(os.environ.get("FACEPRINT_MIN_IMAGE_SIDE", cls.min_side)),
            max_pixels=int(os.environ.get("FACEPRINT_MAX_IMAGE_PIXELS", cls.max_pixels)),
        )


@dataclass
class Settings:
    """Everything that can be configured, gathered in one place."""

    home: Path = field(default_factory=home_dir)
    data: Path = field(default_factory=data_dir)
    limits: ImageLimits = field(default_factory=ImageLimits.from_env)
