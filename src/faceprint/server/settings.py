"""Server settings, read from the environment so that every uvicorn worker sees the same ones."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from faceprint.config import home_dir

log = logging.getLogger("faceprint.server")
OFF_VALUES = frozenset({"off", "false", "no", "0"})
ON_VALUES = frozenset({"on", "true", "yes", "1"})


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


def auth_from_env() -> bool:
    """`FACEPRINT_AUTH`: only an explicit off value (`off`, `false`, `no`, `0`, any case, nothing around it)
    turns authentication off. Unset, empty or anything else keeps it on; an unrecognised value is logged."""
    value = os.environ.get("FACEPRINT_AUTH")
    if value is None:
        return True
    if value.lower() in OFF_VALUES:
        return False
    if value.lower() not in ON_VALUES:
        log.warning("FACEPRINT_AUTH=%r is not on/off; authentication stays ON", value)
    return True


def header_timeout_from_env() -> float:
    """`FACEPRINT_SERVER_HEADER_TIMEOUT`: seconds a request's headers may take (default 10)."""
    return float(os.environ.get("FACEPRINT_SERVER_HEADER_TIMEOUT", "10"))


@dataclass(frozen=True)
class ServerSettings:
    """`FACEPRINT_HOME`, `FACEPRINT_AUTH` (default on), `FACEPRINT_SERVER_THREADS`, ..."""

    home: Path = field(default_factory=home_dir)
    auth: bool = True
    threads: int = max(2, os.cpu_count() or 1)
    max_inflight: int = 64  # authenticated requests at once; beyond this, ThrottlingException
    max_body_bytes: int = 24 * 1024 * 1024  # two 5 MB images as base64 fit easily
    # Bytes of request bodies read before their request is authenticated, summed over all connections
    # (each reserves its Content-Length); beyond this, ThrottlingException. Bounds what anyone without a
    # key can make the server hold.
    max_unauthenticated_bytes: int = 4 * 24 * 1024 * 1024
    body_timeout: float = 30.0  # seconds to receive a whole body, else RequestTimeoutException
    header_timeout: float = 10.0  # seconds to receive a request's headers (`faceprint serve` only)
    video_worker: bool = True  # run queued video jobs in this process (FACEPRINT_VIDEO_WORKER=0: elsewhere)
    allowed_origins: tuple[str, ...] = ()  # browser origins besides the server's own that may write
    stream_runner: bool = True  # run stream processors in this process (FACEPRINT_STREAM_RUNNER=0: not)
    session_ttl: int = 3600  # seconds a console session token lives (FACEPRINT_SESSION_TTL)

    @classmethod
    def from_env(cls) -> ServerSettings:
        defaults = cls()
        env = os.environ.get
        max_body = int(env("FACEPRINT_SERVER_MAX_BODY", defaults.max_body_bytes))
        unauthenticated = int(
            env("FACEPRINT_SERVER_MAX_UNAUTHENTICATED_BYTES", defaults.max_unauthenticated_bytes)
        )
        return cls(
            home=home_dir(),
            auth=auth_from_env(),
            threads=int(env("FACEPRINT_SERVER_THREADS", defaults.threads)),
            max_inflight=int(env("FACEPRINT_SERVER_MAX_INFLIGHT", defaults.max_inflight)),
            max_body_bytes=max_body,
            max_unauthenticated_bytes=max(unauthenticated, max_body),  # else a full body never fits
            body_timeout=float(env("FACEPRINT_SERVER_BODY_TIMEOUT", defaults.body_timeout)),
            header_timeout=header_timeout_from_env(),
            video_worker=_env_bool("FACEPRINT_VIDEO_WORKER", True),
            allowed_origins=tuple(o for o in env("FACEPRINT_ALLOWED_ORIGINS", "").split(",") if o.strip()),
            stream_runner=_env_bool("FACEPRINT_STREAM_RUNNER", True),
            session_ttl=int(env("FACEPRINT_SESSION_TTL", defaults.session_ttl)),
        )
