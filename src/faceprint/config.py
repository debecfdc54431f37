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


def default_model() -> str:
    """The default face model: of collections created without one, and of comparisons outside a collection
    (`FACEPRINT_MODEL`, default the built-in `dlib-int8`, FaceModelVersion 2.2; `dlib` is the float32 2.0)."""
    return os.environ.get("FACEPRINT_MODEL", "").strip() or "dlib-int8"


def keep_chips() -> bool:
    """Whether IndexFaces keeps each face's wide crop for re-embedding (`FACEPRINT_KEEP_CHIPS=1`; the CLI's
    `index --keep-chips`). Off by default: a crop is a photograph of the face."""
    return os.environ.get("FACEPRINT_KEEP_CHIPS", "").strip().lower() in ("1", "true", "yes", "on")


def cohort_file() -> Path | None:
    """A cohort file from `faceprint cohort build` (`FACEPRINT_COHORT`); None: the shipped cohort."""
    env = os.environ.get("FACEPRINT_COHORT")
    return Path(env).expanduser() if env else None


def database_url() -> str | None:
    """`FACEPRINT_DATABASE_URL` (`postgresql://...`): PostgreSQL is then the source of truth of
    collections, video jobs, the audit log and access keys; None: the embedded SQLite files."""
    return os.environ.get("FACEPRINT_DATABASE_URL") or None


def master_key_file(home: Path | None = None) -> Path:
    """The key that derives access-key secrets and signs session tokens (`FACEPRINT_MASTER_KEY_FILE`,
    default `<home>/server/master.key`); nodes of a cluster share one file."""
    env = os.environ.get("FACEPRINT_MASTER_KEY_FILE")
    if env:
        return Path(env).expanduser()
    return (home if home is not None else home_dir()) / "server" / "master.key"


def key_cache_seconds() -> float:
    """How long a node trusts its cached copy of the access keys stored in PostgreSQL
    (`FACEPRINT_KEY_CACHE_SECONDS`, default 2): a key created or revoked on one node takes effect on
    every node within this time."""
    return float(os.environ.get("FACEPRINT_KEY_CACHE_SECONDS", "2"))


@dataclass(frozen=True)
class PostgresSettings:
    """Bounds on every PostgreSQL call, in seconds (`FACEPRINT_DB_*`). A request that meets a down or
    stuck database fails within about `connect_timeout + pool_timeout` (connecting) or
    `statement_timeout` (a query), never hangs."""

    connect_timeout: float = 3.0  # FACEPRINT_DB_CONNECT_TIMEOUT: a new connection
    pool_timeout: float = 5.0  # FACEPRINT_DB_POOL_TIMEOUT: waiting for a pooled connection
    statement_timeout: float = 10.0  # FACEPRINT_DB_STATEMENT_TIMEOUT: one statement, on the server
    lock_timeout: float = 10.0  # FACEPRINT_DB_LOCK_TIMEOUT: waiting for a row or write lock
    pool_min: int = 1  # FACEPRINT_DB_POOL_MIN: connections kept open per schema and process
    pool_max: int = 8  # FACEPRINT_DB_POOL_MAX

    @classmethod
    def from_env(cls) -> PostgresSettings:
        env = os.environ.get
        return cls(
            connect_timeout=float(env("FACEPRINT_DB_CONNECT_TIMEOUT", cls.connect_timeout)),
            pool_timeout=float(env("FACEPRINT_DB_POOL_TIMEOUT", cls.pool_timeout)),
            statement_timeout=float(env("FACEPRINT_DB_STATEMENT_TIMEOUT", cls.statement_timeout)),
            lock_timeout=float(env("FACEPRINT_DB_LOCK_TIMEOUT", cls.lock_timeout)),
            pool_min=int(env("FACEPRINT_DB_POOL_MIN", cls.pool_min)),
            pool_max=int(env("FACEPRINT_DB_POOL_MAX", cls.pool_max)),
        )


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


VECTOR_BACKENDS = ("faiss", "milvus")


def vector_backend() -> str:
    """Where collections keep their vectors (`FACEPRINT_VECTOR_BACKEND`): `faiss` (default: an in-process
    index cached under the home folder) or `milvus` (a Milvus server shared by every node)."""
    name = os.environ.get("FACEPRINT_VECTOR_BACKEND", "faiss").strip().lower()
    if name not in VECTOR_BACKENDS:
        raise ValueError(f"FACEPRINT_VECTOR_BACKEND must be faiss or milvus, not {name!r}")
    return name


MILVUS_INDEX_TYPES = ("IVF_PQ", "HNSW", "IVF_FLAT", "FLAT")


@dataclass(frozen=True)
class MilvusSettings:
    """The Milvus vector backend (`FACEPRINT_VECTOR_BACKEND=milvus`).

    uri: `FACEPRINT_MILVUS_URI`, a server (`http://host:19530`) or, without a server, a milvus-lite file
      (default `<home>/milvus.db`; milvus-lite is one process's local file, never shared by nodes).
    prefix: `FACEPRINT_MILVUS_PREFIX`, the start of every Milvus collection name (default `faceprint`):
      deployments sharing one Milvus server use different prefixes.
    index_type: `FACEPRINT_MILVUS_INDEX`, the ANN index of new Milvus collections (default IVF_PQ, chosen on
      bench/cluster.py's numbers; milvus-lite files always use FLAT, the only type it builds honestly).
    timeout: `FACEPRINT_MILVUS_TIMEOUT`, seconds one Milvus call may take before the request fails.
    """

    uri: str
    prefix: str = "faceprint"
    index_type: str = "IVF_PQ"
    timeout: float = 5.0

    @classmethod
    def from_env(cls, home: Path | None = None) -> MilvusSettings:
        uri = os.environ.get("FACEPRINT_MILVUS_URI") or str((home or home_dir()) / "milvus.db")
        prefix = os.environ.get("FACEPRINT_MILVUS_PREFIX", cls.prefix).strip()
        if not prefix or not prefix.replace("_", "a").isalnum() or not prefix[0].isalpha():
            raise ValueError(f"FACEPRINT_MILVUS_PREFIX must be letters, digits and _, not {prefix!r}")
        index_type = os.environ.get("FACEPRINT_MILVUS_INDEX", cls.index_type).strip().upper()
        if index_type not in MILVUS_INDEX_TYPES:
            raise ValueError(f"FACEPRINT_MILVUS_INDEX must be one of {', '.join(MILVUS_INDEX_TYPES)}")
        timeout = float(os.environ.get("FACEPRINT_MILVUS_TIMEOUT", cls.timeout))
        if not timeout > 0:
            raise ValueError("FACEPRINT_MILVUS_TIMEOUT must be a positive number of seconds")
        return cls(uri=uri, prefix=prefix, index_type=index_type, timeout=timeout)
