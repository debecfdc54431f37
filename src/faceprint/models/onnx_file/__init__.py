"""User-added ONNX face models (`faceprint models add NAME --onnx PATH ...`).

Each lives in `<home>/models/<NAME>/` (a private folder): `model.onnx` (a private copy of the file),
`model.json` (its settings, below), and once `faceprint calibrate --model NAME` has run, `calibration.json`,
`calibration_raw.json` and `cohort.npz`. Settings: input size and template (the shared `arcface5` or `box`
aligner), layout (`nhwc` or `nchw`), pixel normalisation `(x - mean) / std` on 0-255 values, channel order
(RGB, or BGR with `--bgr`), and whether the mirror image is averaged in. Outputs of 128 to 512 values are
scaled to unit length and compared by cosine.

FaceModelVersion: `100.<k>`, k = 1, 2, ... in the order models are added to a home; a removed model's
number is never given again, so a collection of a removed model can never be read with another one.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceprint.errors import InvalidParameterError, ResourceAlreadyExistsError, ResourceNotFoundError
from faceprint.files import sha256_file
from faceprint.models.aligners import TEMPLATES, aligner
from faceprint.models.base import FolderCalibrated

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LAYOUTS = ("nhwc", "nchw")
MIN_DIM, MAX_DIM = 128, 512
ADDED_MAJOR = 100  # FaceModelVersion of added models: 100.k
SPEC_FORMAT = "faceprint-onnx-model-1"
BATCH = 32


class ModelFileError(InvalidParameterError):
    """An ONNX file that cannot serve as a face model with the given settings."""


@dataclass(frozen=True)
class OnnxSpec:
    """How to run one ONNX face-identity file."""

    name: str
    version: str
    input_size: int
    template: str
    layout: str = "nhwc"
    mean: float = 0.0
    std: float = 1.0
    bgr: bool = False
    mirror: bool = False
    sha256: str = ""
    dim: int = 0
    input_name: str = ""
    output_name: str = ""
    added: float = 0.0
    source: str = ""  # file name it was added from (no folder)

    def to_json(self) -> dict:
        return {"format": SPEC_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> OnnxSpec:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


def models_dir() -> Path:
    from faceprint.config import home_dir

    return home_dir() / "models"


def model_dir(name: str) -> Path:
    return models_dir() / name


class OnnxFileEmbedder:
    """Runs an added ONNX file on aligned RGB views (N, size, size, 3) uint8."""

    def __init__(self, path: Path, spec: OnnxSpec, threads: int | None = None) -> None:
        import onnxruntime as ort

        from faceprint.embedders.onnx_resnet import session_options

        self.name = f"onnx:{spec.name}"
        self.spec = spec
        try:
            self._session = ort.InferenceSession(
                str(path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            raise ModelFileError(f"{path.name} is not a loadable ONNX model ({_first_line(exc)})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{path.name} has {len(inputs)} inputs; a face model takes one image batch")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self._check_input_shape(inputs[0].shape, path.name)
        self.dim = spec.dim

    def _check_input_shape(self, shape: list, file: str) -> None:
        s, size = self.spec, self.spec.input_size
        if len(shape) != 4:
            raise ModelFileError(
                f"{file} takes a {len(shape)}-D input {shape}; a face model takes 4-D images"
            )
        want = [size, size, 3] if s.layout == "nhwc" else [3, size, size]
        got = shape[1:]
        other = [3, size, size] if s.layout == "nhwc" else [size, size, 3]
        static = [d for d in got if isinstance(d, int)]
        if len(static) == 3 and got != want:
            hint = (
                f"; it looks like --layout {'nchw' if s.layout == 'nhwc' else 'nhwc'}"
                if got == other
                else f"; the file expects input {shape}"
            )
            raise ModelFileError(
                f"{file} takes input {shape}, not --input-size {size} --layout {s.layout} ({want}){hint}"
            )

    def prepare(self, chips: np.ndarray) -> np.ndarray:
        """uint8 RGB views to the network's float32 input (channel order, normalisation, layout)."""
        x = np.asarray(chips, dtype=np.float32)
        if self.spec.bgr:
            x = x[..., ::-1]
        if self.spec.mean != 0.0 or self.spec.std != 1.0:
            x = (x - np.float32(self.spec.mean)) / np.float32(self.spec.std)
        if self.spec.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, chips: np.ndarray) -> np.ndarray:
        """Raw network outputs (N, ...) as float32."""
        out = self._session.run([self.output_name], {self.input_name: self.prepare(chips)})[0]
        return np.asarray(out, dtype=np.float32)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) uint8 views to (N, dim) float32 vectors, in batches."""
        chips = np.asarray(chips)
        size = self.spec.input_size
        if chips.ndim != 4 or chips.shape[1:] != (size, size, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected uint8 views (N, {size}, {size}, 3), got {chips.dtype} {chips.shape}")
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self.run(chips[i : i + BATCH]).reshape(len(chips[i : i + BATCH]), -1)
            for i in range(0, len(chips), BATCH)
        ]
        return np.concatenate(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class OnnxFileModel(FolderCalibrated):
    """A model from `faceprint models add`: its folder's `model.onnx` run with its `model.json`."""

    def __init__(self, folder: Path, spec: OnnxSpec) -> None:
        self.folder = folder
        self.spec = spec
        super().__init__(
            name=spec.name,
            version=spec.version,
            dim=spec.dim,
            aligner=aligner(spec.template, spec.input_size),
            mirror=spec.mirror,
            load_embedder=lambda: OnnxFileEmbedder(folder / "model.onnx", spec),
            kind="onnx-file",
            description=f"ONNX file {spec.source or 'model.onnx'} (sha256 {spec.sha256[:12]}...)",
            cache_salt=json.dumps(spec.to_json() | {"added": 0}, sort_keys=True),
        )

    def info(self) -> dict:
        out = super().info()
        s = self.spec
        out["Onnx"] = {
            "Sha256": s.sha256,
            "InputSize": s.input_size,
            "Template": s.template,
            "Layout": s.layout,
            "Mean": s.mean,
            "Std": s.std,
            "Bgr": s.bgr,
            "Input": s.input_name,
            "Output": s.output_name,
        }
        return out


# -- the home's added models ---------------------------------------------------------------------------


def _versions_file() -> Path:
    return models_dir() / "versions.json"


def assigned_versions() -> dict[str, str]:
    """Every FaceModelVersion ever given in this home -> `identity(spec)` of the model it was given to."""
    f = _versions_file()
    if not f.is_file():
        return {}
    return dict(json.loads(f.read_text()).get("assigned", {}))


def identity(spec: OnnxSpec) -> str:
    """What makes two added models the same model: name, file and every setting that shapes a vector."""
    s = spec
    return f"{s.name}:{s.sha256}:{s.template}:{s.input_size}:{s.layout}:{s.mean}:{s.std}:{s.bgr}:{s.mirror}"


def _version_for(spec: OnnxSpec) -> str:
    """The version this exact model had before (re-adding a removed model brings its collections back),
    else the next unused `100.k`."""
    assigned = assigned_versions()
    for version, ident in assigned.items():
        if ident == identity(spec):
            return version
    used = [int(v.split(".")[1]) for v in assigned]
    return f"{ADDED_MAJOR}.{max(used, default=0) + 1}"


def version_owner(version: str) -> str | None:
    """Name of the (possibly removed) added model that was given `version` in this home."""
    ident = assigned_versions().get(version)
    return ident.split(":", 1)[0] if ident else None


def _record_version(version: str, spec: OnnxSpec) -> None:
    from faceprint.files import private_dir, write_atomically

    private_dir(models_dir())
    data = {"assigned": {**assigned_versions(), version: identity(spec)}}
    write_atomically(_versions_file(), lambda fh: fh.write(json.dumps(data, indent=1).encode()))


def load(name: str) -> OnnxFileModel | None:
    """The added model `name` of this home, or None."""
    spec_file = model_dir(name) / "model.json"
    if not NAME_PATTERN.match(name) or not spec_file.is_file():
        return None
    return OnnxFileModel(model_dir(name), OnnxSpec.from_json(json.loads(spec_file.read_text())))


def added_names() -> list[str]:
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if (p / "model.json").is_file() and NAME_PATTERN.match(p.name)
    )


def add(
    name: str,
    onnx: Path,
    input_size: int,
    template: str,
    layout: str = "nhwc",
    mean: float = 0.0,
    std: float = 1.0,
    bgr: bool = False,
    mirror: bool = False,
    reserved: tuple[str, ...] = (),
) -> tuple[OnnxFileModel, dict]:
    """Validate `onnx` with a real forward pass on real faces, then copy it into the home (private)."""
    from faceprint.files import PRIVATE_FILE_MODE, private_dir, write_atomically
    from faceprint.models.validate import validate

    if not NAME_PATTERN.match(name):
        raise InvalidParameterError(
            f"model name {name!r} must be 1-32 lowercase letters, digits, '-' or '_', starting with a letter"
        )
    if name in reserved:
        raise ResourceAlreadyExistsError(f"model {name!r} is built in; choose another name")
    if load(name) is not None:
        raise ResourceAlreadyExistsError(
            f"model {name!r} already exists; `faceprint models remove {name}` first"
        )
    if template not in TEMPLATES:
        raise InvalidParameterError(f"unknown --template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if layout not in LAYOUTS:
        raise InvalidParameterError(f"unknown --layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not 32 <= int(input_size) <= 512:
        raise InvalidParameterError(f"--input-size {input_size} must be between 32 and 512 pixels")
    if not std or not np.isfinite(std):
        raise InvalidParameterError("--std must be a non-zero number")
    onnx = Path(onnx)
    if not onnx.is_file():
        raise ResourceNotFoundError(f"ONNX file {onnx} does not exist")
    spec = OnnxSpec(
        name=name,
        version="",
        input_size=int(input_size),
        template=template,
        layout=layout,
        mean=float(mean),
        std=float(std),
        bgr=bool(bgr),
        mirror=bool(mirror),
        sha256=sha256_file(onnx),
        added=round(time.time(), 3),
        source=onnx.name,
    )
    embedder = OnnxFileEmbedder(onnx, spec, threads=1)
    dim, check = validate(embedder, spec)
    spec = OnnxSpec(
        **{
            **asdict(spec),
            "dim": dim,
            "version": "",
            "input_name": embedder.input_name,
            "output_name": embedder.output_name,
        }
    )
    spec = OnnxSpec(**{**asdict(spec), "version": _version_for(spec)})
    folder = private_dir(model_dir(name))
    tmp = folder / ".model.onnx.part"
    shutil.copyfile(onnx, tmp)
    tmp.chmod(PRIVATE_FILE_MODE)
    tmp.replace(folder / "model.onnx")
    _record_version(spec.version, spec)
    write_atomically(
        folder / "model.json", lambda fh: fh.write(json.dumps(spec.to_json(), indent=1).encode())
    )
    model = load(name)
    assert model is not None
    return model, check


def remove(name: str) -> Path:
    """Delete an added model's folder (its file, settings and calibration). Collections built with it keep
    their faces; they answer a clear error until the same file is added again with the same settings (it
    gets its old version back) or they are migrated to another model."""
    folder = model_dir(name)
    if load(name) is None:
        raise ResourceNotFoundError(f"model {name!r} is not an added model of this home")
    shutil.rmtree(folder)
    return folder
