"""`faceprint doctor` on real installs: a healthy home, a broken one (read-only home, ONNX cache removed),
configured services that do not answer, and a damaged key store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceprint.doctor import ERROR, NOT_CONFIGURED, OK, WARNING, run_checks
from faceprint.embedders.dlib_to_onnx import MODEL_FILE, ensure_onnx_model
from faceprint.server.launcher import free_port


def doctor(home: Path, cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("FACEPRINT_")}
    child.update(FACEPRINT_HOME=str(home), FACEPRINT_CACHE=str(cache), **env)
    return subprocess.run(
        [sys.executable, "-m", "faceprint", "doctor", *args],
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[Path, Path]:
    """A home with one access key (so a key store and an audit chain) and a cache holding the ONNX model."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir(mode=0o700)
    cache.mkdir()
    shutil.copy2(ensure_onnx_model(), cache / MODEL_FILE)  # a copy of the shared cache's model
    subprocess.run(
        [sys.executable, "-m", "faceprint", "keys", "create", "--name", "doctor"],
        env={**os.environ, "FACEPRINT_HOME": str(home)},
        capture_output=True,
        check=True,
        timeout=120,
    )
    return home, cache


@contextlib.contextmanager
def read_only(*folders: Path) -> Iterator[None]:
    """Make folders read-only for this process: mode a-w, and immutable when running as root (root
    ignores mode bits). Restored afterwards."""
    modes = {f: f.stat().st_mode for f in folders}
    immutable = os.geteuid() == 0
    try:
        for f in folders:
            f.chmod(0o555)
            if immutable:
                subprocess.run(["chattr", "+i", str(f)], check=True)
        with pytest.raises(OSError):
            (folders[0] / "probe").touch()
        yield
    finally:
        for f in folders:
            if immutable:
                subprocess.run(["chattr", "-i", str(f)], check=False)
            f.chmod(modes[f])


def test_a_healthy_deployment_is_ready(deployment: tuple[Path, Path]) -> None:
    home, cache = deployment
    out = doctor(home, cache, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)  # one object
    checks = {c["Name"]: c for c in report["Checks"]}
    assert report["Healthy"] is True and report["Errors"] == 0
    for name in ("models", "calibration", "onnx cache", "home", "key store", "audit chain"):
        assert checks[name]["Status"] == OK, checks[name]
    assert "1 active key(s)" in checks["key store"]["Detail"]
    assert "rows verified" in checks["audit chain"]["Detail"]
    assert checks["postgresql"]["Status"] == checks["milvus"]["Status"] == NOT_CONFIGURED


def test_read_only_home_and_removed_onnx_cache_get_a_readable_verdict(deployment: tuple[Path, Path]) -> None:
    home, cache = deployment
    (cache / MODEL_FILE).unlink()
    with read_only(home, home / "server"):
        text = doctor(home, cache)
        data = doctor(home, cache, "--json")
    assert text.returncode == data.returncode == 1
    lines = text.stdout.splitlines()
    home_line = next(line for line in lines if " home " in line and "read-only" in line)
    assert "ERROR" in home_line and str(home) in home_line
    onnx_line = next(line for line in lines if "onnx cache" in line)
    assert "WARN" in onnx_line and "is missing" in onnx_line
    assert any("fix: " in line and f"faceprint.embedders.dlib_to_onnx {cache}" in line for line in lines)
    assert any("fix: make " in line and "FACEPRINT_HOME" in line for line in lines)
    assert lines[-1].startswith("verdict: BROKEN")
    assert "Traceback" not in text.stdout + text.stderr
    checks = {c["Name"]: c for c in json.loads(data.stdout)["Checks"]}
    assert checks["home"]["Status"] == ERROR and checks["onnx cache"]["Status"] == WARNING
    assert checks["models"]["Status"] == checks["calibration"]["Status"] == OK


def test_configured_services_that_do_not_answer_are_errors(tmp_path: Path) -> None:
    closed = free_port()
    out = doctor(
        tmp_path / "home",
        tmp_path / "cache",
        "--json",
        FACEPRINT_DATABASE_URL=f"postgresql://faceprint:s3cret@127.0.0.1:{closed}/faceprint",
        FACEPRINT_MILVUS_URI=f"http://127.0.0.1:{closed}",
    )
    assert out.returncode == 1
    assert "s3cret" not in out.stdout
    checks = {c["Name"]: c for c in json.loads(out.stdout)["Checks"]}
    assert checks["postgresql"]["Status"] == ERROR and "does not answer" in checks["postgresql"]["Detail"]
    assert "faceprint:***@127.0.0.1" in checks["postgresql"]["Detail"]
    assert checks["milvus"]["Status"] == ERROR and "does not answer" in checks["milvus"]["Detail"]


def test_milvus_lite_backend_and_a_damaged_key_store(
    deployment: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, cache = deployment
    monkeypatch.setenv("FACEPRINT_HOME", str(home))
    monkeypatch.setenv("FACEPRINT_CACHE", str(cache))
    monkeypatch.setenv("FACEPRINT_VECTOR_BACKEND", "milvus")
    keys_json = home / "server" / "keys.json"
    keys_json.chmod(0o644)  # as an older faceprint left it
    checks = {c.name: c for c in run_checks().checks}
    assert checks["milvus"].status == OK and f"{home / 'milvus.db'}" in checks["milvus"].detail
    assert checks["key store"].status == WARNING and "now tightened" in checks["key store"].detail
    assert keys_json.stat().st_mode & 0o777 == 0o600
    (home / "server" / "master.key").unlink()
    checks = {c.name: c for c in run_checks().checks}
    assert checks["key store"].status == ERROR and "secrets cannot be derived" in checks["key store"].detail
    assert checks["key store"].fix
