"""Server settings, read from the environment so that every uvicorn worker sees the same ones."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from faceprint.config import home_dir


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ServerSettings:
    """`FACEPRINT_HOME`, `FACEPRINT_AUTH` (default on), `FACEPRINT_SERVER_THREADS`, ..."""

    home: Path = field(default_factory=home_dir)
    auth: bool = True
    threads: int = max(2, os.cpu_count() or 1)
    max_inflight: int = 64  # beyond this, ThrottlingException (bounds memory held by queued bodies)
    max_body_bytes: int = 24 * 1024 * 1024  # two 5 MB images as base64 fit easily
    video_worker: bool = True  # run queued video jobs in this process (FACEPRINT_VIDEO_WORKER=0: elsewhere)

    @classmethod
    def from_env(cls) -> ServerSettings:
        defaults = cls()
        return cls(
            home=home_dir(),
            auth=_env_bool("FACEPRINT_AUTH", True),
            threads=int(os.environ.get("FACEPRINT_SERVER_THREADS", defaults.threads)),
            max_inflight=int(os.environ.get("FACEPRINT_SERVER_MAX_INFLIGHT", defaults.max_inflight)),
            max_body_bytes=int(os.environ.get("FACEPRINT_SERVER_MAX_BODY", defaults.max_body_bytes)),
            video_worker=_env_bool("FACEPRINT_VIDEO_WORKER", True),
        )
