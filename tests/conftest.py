"""Shared fixtures: the real data folder and well-known images in it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from faceprint.config import data_dir

DATA = data_dir()
EXAMPLES = DATA / "known_identities" / "face_recognition_examples" / "examples"
KNN = EXAMPLES / "knn_examples"
CROWD = DATA / "crowd"
LFW = DATA / "lfw" / "lfw-deepfunneled"

if not DATA.is_dir():
    raise RuntimeError(f"real face data not found at {DATA}; set FACEPRINT_DATA_DIR")

T = TypeVar("T")


def installed_model_home(
    tmp_path_factory: pytest.TempPathFactory, name: str, forget_too: tuple[str, ...] = ()
) -> Iterator[tuple[Path, dict]]:
    """A home with the installable model `name` installed through the CLI (`faceprint models install`), as
    FACEPRINT_HOME for as long as the caller's fixture lives; yields the home and the install's JSON."""
    import json

    from click.testing import CliRunner

    from faceprint.cli import cli
    from faceprint.models import forget

    home = tmp_path_factory.mktemp(f"{name}-home")
    saved = os.environ.get("FACEPRINT_HOME")
    os.environ["FACEPRINT_HOME"] = str(home)
    result = CliRunner().invoke(cli, ["models", "install", name, "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    yield home, json.loads(result.output)
    if saved is not None:
        os.environ["FACEPRINT_HOME"] = saved
    for model in (name, *forget_too):
        forget(model)


def once_back(call: Callable[[], T], error: type[Exception], within: float, pause: float) -> T:
    """`call()` as soon as it stops failing with `error` (a restarted server that is not answering yet),
    retried every `pause` seconds for at most `within`; then the error itself."""
    deadline = time.monotonic() + within
    while True:
        try:
            return call()
        except error:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's ~/.faceprint: the session gets its own FACEPRINT_HOME."""
    saved = os.environ.get("FACEPRINT_HOME")
    os.environ["FACEPRINT_HOME"] = str(tmp_path_factory.mktemp("session-home"))
    yield
    if saved is None:
        os.environ.pop("FACEPRINT_HOME", None)
    else:
        os.environ["FACEPRINT_HOME"] = saved


@pytest.fixture(autouse=True)
def _restore_home_setting() -> Iterator[None]:
    """In-process CLI calls with `--home` set FACEPRINT_HOME for the process (as the CLI should): undo it."""
    saved = os.environ.get("FACEPRINT_HOME")
    yield
    if saved is not None:
        os.environ["FACEPRINT_HOME"] = saved


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FACEPRINT_HOME for one test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("FACEPRINT_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A throw-away PostgreSQL 15 cluster for the session (tests/pg_server.py), always stopped."""
    from pg_server import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def milvus() -> Iterator[object]:
    """A real Milvus standalone server for the session (tests/milvus_server.py): started once (~45 s),
    always stopped (SIGKILL of its process group after a short grace)."""
    from milvus_server import milvus_server

    with milvus_server() as server:
        yield server


@pytest.fixture
def milvus_home(milvus: object, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose collections keep their vectors in the session's Milvus server, under a prefix of its
    own (every test's store numbers its collections from 1)."""
    import uuid

    monkeypatch.setenv("FACEPRINT_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("FACEPRINT_MILVUS_URI", milvus.uri)  # type: ignore[attr-defined]
    monkeypatch.setenv("FACEPRINT_MILVUS_PREFIX", f"t{uuid.uuid4().hex[:12]}")
    return home
