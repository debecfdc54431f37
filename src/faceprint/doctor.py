"""`faceprint doctor`: check, in one pass, what a deployment needs, and say how to fix what is wrong.

Each check returns a `Check` with a status: `ok`, `warning` (works, but degraded or not set up yet),
`error` (something required is broken: the command exits non-zero) or `not configured` (an optional
service that no setting asks for). Doctor never creates the home, the cache or a file; opening the key
store and the audit log tightens their modes, as every faceprint command does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from faceprint import config
from faceprint.extras import INSTALL, available
from faceprint.files import sha256_file

OK, WARNING, ERROR, NOT_CONFIGURED = "ok", "warning", "error", "not configured"
DLIB_MODELS = (
    "mmod_human_face_detector",
    "shape_predictor_5_face_landmarks",
    "shape_predictor_68_face_landmarks",
    "dlib_face_recognition_resnet_model_v1",
)
SERVICE_TIMEOUT = 3  # seconds a configured PostgreSQL or Milvus server gets to answer
REINSTALL = "pip install --force-reinstall faceprint (or make install in a checkout)"


@dataclass(frozen=True)
class Check:
    """The verdict on one part of a deployment."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k[0].upper() + k[1:]: v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Report:
    """All checks, with the settings they looked at."""

    version: str
    home: Path
    cache: Path
    checks: list[Check]

    @property
    def errors(self) -> int:
        return sum(c.status == ERROR for c in self.checks)

    @property
    def warnings(self) -> int:
        return sum(c.status == WARNING for c in self.checks)

    @property
    def healthy(self) -> bool:
        return self.errors == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "Version": self.version,
            "Home": str(self.home),
            "Cache": str(self.cache),
            "Healthy": self.healthy,
            "Errors": self.errors,
            "Warnings": self.warnings,
            "Checks": [c.as_dict() for c in self.checks],
        }


def run_checks() -> Report:
    """Run every check against the current settings (environment)."""
    home, cache = config.home_dir(), config.cache_dir()
    checks: list[Callable[[], Check]] = [
        check_models,
        check_calibration,
        lambda: check_onnx_cache(cache),
        lambda: check_home(home),
        check_npm,
        check_postgresql,
        lambda: check_milvus(home),
        lambda: check_key_store(home),
        lambda: check_audit_chain(home),
    ]
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a check that cannot even run is itself the finding
            name = getattr(check, "__name__", "check").removeprefix("check_")
            results.append(Check(name, ERROR, f"the check failed: {type(exc).__name__}: {exc}", REINSTALL))
    return Report(metadata.version("faceprint"), home, cache, results)


# --- models -------------------------------------------------------------------------------------------


def check_models() -> Check:
    """dlib's four model files, the shipped BlazeFace file (sha256) and the runtimes that load them."""
    from faceprint.weights import blazeface_checksums, blazeface_dir, dlib_model_path

    problems = []
    for name in DLIB_MODELS:
        try:
            dlib_model_path(name)
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            problems.append(str(exc))
    for name, digest in blazeface_checksums().items():
        path = blazeface_dir() / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path} does not match its sha256 in SHA256SUMS")
    for module in ("dlib", "onnxruntime", "ai_edge_litert"):
        if not available(module):
            problems.append(f"the Python module {module} is not installed")
    if problems:
        return Check("models", ERROR, "; ".join(problems), REINSTALL)
    import dlib

    return Check(
        "models",
        OK,
        f"dlib {dlib.__version__} with its {len(DLIB_MODELS)} model files; "
        f"BlazeFace full range (sha256 verified)",
    )


def check_calibration() -> Check:
    """The default model's shipped calibration table loads and gives the 1:1 default threshold."""
    from faceprint import calibration
    from faceprint.models import get_model

    try:
        table = calibration.table(str(get_model().calibration_files()[0]))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return Check("calibration", ERROR, f"cannot load the calibration table: {exc}", REINSTALL)
    threshold = table.threshold_for_fmr(1e-4)
    return Check(
        "calibration",
        OK,
        f"{len(table.similarity)} points for model {table.model_version or '?'}; "
        f"FMR 1e-4 at Similarity {threshold:.2f}",
    )


def check_onnx_cache(cache: Path) -> Check:
    """The ONNX conversion of dlib's ResNet in the cache: present and made from the installed model."""
    from faceprint.embedders.dlib_to_onnx import CONVERTER_VERSION, MODEL_FILE, default_source, model_props

    path = cache / MODEL_FILE
    generate = f"python -m faceprint.embedders.dlib_to_onnx {path}"
    props = model_props(path)
    if props:
        stale = props.get("source_sha256") != sha256_file(default_source()) or (
            props.get("converter_version") != CONVERTER_VERSION
        )
        if not stale:
            return Check("onnx cache", OK, f"{path} is up to date")
        state = f"{path} was made from another model or converter version"
    else:
        state = f"{path} is missing" if not path.exists() else f"{path} is unreadable"
    if _writable(path.parent):
        return Check(
            "onnx cache",
            WARNING,
            f"{state}: the first embedding converts dlib's ResNet (about 2 s) and writes it",
            f"generate it now: {generate}",
        )
    return Check(
        "onnx cache",
        WARNING,
        f"{state} and {_nearest_existing(path.parent)} is not writable: embeddings fall back to dlib's "
        "own network (same vectors, about 15x slower)",
        "set FACEPRINT_CACHE to a writable folder, then: " + generate,
    )


# --- the home -----------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(folder: Path) -> bool:
    """Whether this process can create a file in `folder` (or create `folder`); tried for real, since
    permission bits do not tell (root ignores them; read-only mounts and immutable folders don't)."""
    target = folder if folder.exists() else _nearest_existing(folder)
    if not target.is_dir():
        return False
    try:
        fd, name = tempfile.mkstemp(prefix=".faceprint-doctor-", dir=target)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_home(home: Path) -> Check:
    """The home exists (or can be created), is writable (with the folders faceprint writes in it), and is
    private to its owner."""
    fix_rw = (
        f"make {home} writable by uid {os.geteuid()} (chown/chmod u+w), "
        "or point FACEPRINT_HOME (--home) at a writable folder"
    )
    if not home.exists():
        if _writable(home):
            return Check("home", OK, f"{home} does not exist yet; it is created (mode 0700) on first use")
        return Check("home", ERROR, f"{home} does not exist and cannot be created", fix_rw)
    if not home.is_dir():
        return Check("home", ERROR, f"{home} is not a folder", "point FACEPRINT_HOME at a folder")
    from faceprint.audit import key_path
    from faceprint.files import unwritable

    # the folders `faceprint serve` needs (the same rule: a real temporary file in each), existing ones only
    folders = [home, *(home / sub for sub in ("server", "collections", "collections/index", "video"))]
    problem = unwritable([p for p in dict.fromkeys([*folders, key_path(home).parent]) if p.is_dir()])
    if problem:
        return Check(
            "home",
            ERROR,
            f"{problem}: this process cannot write collections, keys or the audit log (read-only home)",
            fix_rw,
        )
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        return Check(
            "home",
            WARNING,
            f"{home} is writable but mode {mode:04o}: other users can look into a folder holding faces",
            f"chmod 700 {home}",
        )
    return Check("home", OK, f"{home} is writable and private (mode {mode:04o})")


# --- tools and services -------------------------------------------------------------------------------
def check_npm() -> Check:
    """npm, which installs model packs (npm packages holding model files)."""
    npm = shutil.which("npm")
    if npm is None:
        return Check(
            "npm",
            WARNING,
            "npm is not on PATH: model packs cannot be installed (everything else works)",
            "install Node.js and npm (e.g. apt-get install npm)",
        )
    try:
        out = subprocess.run([npm, "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("npm", WARNING, f"{npm} does not run: {exc}", "reinstall Node.js and npm")
    return Check("npm", OK, f"npm {out.stdout.strip()} at {npm}")


def redact(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_postgresql() -> Check:
    """`FACEPRINT_DATABASE_URL`, if set: the driver is installed and the server answers."""
    url = (config.database_url() or "").strip()
    if not url:
        return Check("postgresql", NOT_CONFIGURED, "FACEPRINT_DATABASE_URL is not set (SQLite in the home)")
    shown = redact(url)
    if not available("psycopg"):
        return Check(
            "postgresql",
            ERROR,
            f"FACEPRINT_DATABASE_URL is {shown} but the PostgreSQL driver (psycopg) is not installed",
            INSTALL["cluster"],
        )
    import psycopg

    from faceprint.migrations import latest
    from faceprint.postgres import components

    try:
        with psycopg.connect(url, connect_timeout=SERVICE_TIMEOUT, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            behind = []
            for schema, migrations in components():
                have = conn.execute(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND table_name='meta'",
                    (schema,),
                ).fetchone()
                row = (
                    conn.execute(f"SELECT value FROM {schema}.meta WHERE key='schema_version'").fetchone()
                    if have
                    else None
                )
                at = int(bytes(row[0]).decode()) if row else 0
                if at != latest(migrations):
                    behind.append(f"{schema} at {at} of {latest(migrations)}")
    except Exception as exc:
        return Check(
            "postgresql",
            ERROR,
            f"{shown} does not answer: {_first_line(exc)}",
            "start the server or correct FACEPRINT_DATABASE_URL (postgresql://user:password@host:port/db)",
        )
    server = f"PostgreSQL {version[0] if version else '?'}"
    if behind:
        return Check(
            "postgresql",
            ERROR,
            f"{shown} answers ({server}) but its faceprint schemas are not current: {', '.join(behind)}",
            "run `faceprint db upgrade`",
        )
    return Check("postgresql", OK, f"{shown} answers ({server}); faceprint schemas are current")


def check_milvus(home: Path) -> Check:
    """`FACEPRINT_MILVUS_URI` or `FACEPRINT_VECTOR_BACKEND=milvus`: the client is there, Milvus answers."""
    from faceprint.config import vector_backend as backend

    try:
        name = backend()
    except ValueError as exc:
        return Check("milvus", ERROR, str(exc), "set FACEPRINT_VECTOR_BACKEND to faiss or milvus")
    uri = os.environ.get("FACEPRINT_MILVUS_URI", "").strip()
    if not uri and name != "milvus":
        return Check("milvus", NOT_CONFIGURED, "FACEPRINT_MILVUS_URI is not set (vector indexes use FAISS)")
    uri = uri or str(home / "milvus.db")
    used = "new indexes go to Milvus" if name == "milvus" else "new indexes use FAISS"
    if not available("pymilvus"):
        return Check(
            "milvus", ERROR, f"Milvus at {redact(uri)}, but pymilvus is not installed", INSTALL["cluster"]
        )
    if urlsplit(uri).scheme.lower() not in ("unix", "http", "https", "tcp", "grpc"):
        if not available("milvus_lite"):
            return Check(
                "milvus",
                ERROR,
                f"{uri} is a milvus-lite file but milvus-lite is not installed",
                INSTALL["cluster"],
            )
        state = "exists" if Path(uri).is_file() else "is created on first use"
        return Check("milvus", OK, f"milvus-lite file {uri} {state}; {used}")
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri=uri, timeout=SERVICE_TIMEOUT)
        version = client.get_server_version()
        client.close()
    except Exception as exc:
        return Check(
            "milvus",
            ERROR,
            f"{redact(uri)} does not answer: {_first_line(exc)}",
            "start Milvus or correct FACEPRINT_MILVUS_URI (http://host:19530)",
        )
    return Check("milvus", OK, f"{redact(uri)} answers (Milvus {version}); {used}")


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # pymilvus wraps its text as <MilvusException: (code, message)>
    text = (message if isinstance(message, str) else str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0]


# --- the server's key store and audit chain -----------------------------------------------------------
def _private(path: Path) -> bool:
    return not stat.S_IMODE(path.stat().st_mode) & 0o077


def check_key_store(home: Path) -> Check:
    """The access keys: readable, with the master key that derives their secrets, private to the owner.

    Opening the store tightens its files to 0600 (as every faceprint command does); that is reported."""
    from faceprint.server.keys import KeyStore

    folder = home / "server"
    files = [folder / "keys.json", folder / "master.key"]
    loose = [p for p in files if p.exists() and not _private(p)]
    create = "faceprint keys create --name NAME (the server refuses every request without a key)"
    try:
        store = KeyStore(home)
        keys = store.list() if store.path.exists() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check(
            "key store",
            ERROR,
            f"{folder} cannot be opened: {_first_line(exc)}",
            "make the home writable (see home); if keys.json is damaged, restore it from a backup",
        )
    if keys is None:
        return Check("key store", WARNING, f"no access keys yet ({store.path} does not exist)", create)
    active = sum(k.active for k in keys)
    if keys and not store.master_path.is_file():
        return Check(
            "key store",
            ERROR,
            f"{len(keys)} key(s) but {store.master_path} is missing: their secrets cannot be derived",
            "restore master.key from a backup, or move keys.json away and create new keys",
        )
    still_loose = [p for p in files if p.exists() and not _private(p)]
    if still_loose:
        return Check(
            "key store",
            ERROR,
            f"{', '.join(map(str, still_loose))} can be read by other users (they reveal every secret)",
            "chmod 600 " + " ".join(map(str, still_loose)),
        )
    if loose:
        return Check(
            "key store",
            WARNING,
            f"{', '.join(map(str, loose))} could be read by other users: now tightened to 0600; "
            "anyone who read them can derive every secret",
            "revoke and re-create the keys if other users could log in here (faceprint keys revoke ID)",
        )
    if not active:
        return Check("key store", WARNING, f"{len(keys)} key(s), none active", create)
    return Check("key store", OK, f"{active} active key(s), {len(keys) - active} revoked; files mode 0600")


def check_audit_chain(home: Path) -> Check:
    """The audit log (HMAC-chained) verifies from its first row to its head."""
    from faceprint.audit import AuditLog, AuditLogError

    path = home / "server" / "audit.sqlite"
    if not path.exists():
        return Check(
            "audit chain", OK, f"no audit log yet ({path} is created by the first audited operation)"
        )
    try:
        log = AuditLog.for_home(home)
        try:
            result = log.verify()
        finally:
            log.close()
    except (AuditLogError, OSError, sqlite3.Error) as exc:
        return Check(
            "audit chain",
            ERROR,
            f"the audit log cannot be opened: {_first_line(exc)}",
            "the audit log needs its folder writable (see home); restore it from a backup if it is damaged",
        )
    if not result.ok:
        return Check(
            "audit chain",
            ERROR,
            f"chain BROKEN at row {result.bad_seq}: {result.reason} ({result.rows} rows verified)",
            "keep the file as evidence; compare it with a backup (faceprint audit-log --verify)",
        )
    legacy = f" ({result.legacy_rows} older sha256-only rows)" if result.legacy_rows else ""
    return Check("audit chain", OK, f"{result.rows} rows verified{legacy}, head {result.head[:16]}")
