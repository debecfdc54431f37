"""The vector index is a cache of SQLite: a broken index folder never breaks search; a home the server
cannot write stops `faceprint serve` with one line (issue 11, item 7)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES
from faceprint.collections.service import Collections


@pytest.mark.parametrize("breakage", ["directory where the file belongs", "file where the folder belongs"])
def test_search_works_from_sqlite_when_the_index_cannot_be_written(
    home: Path, breakage: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Collections(home) as svc:
        svc.create_collection(CollectionId="c")
        for name in ("obama", "biden"):
            svc.index_faces(CollectionId="c", Image=EXAMPLES / f"{name}.jpg", ExternalImageId=name)
        folder = svc.indexes.folder
        if breakage.startswith("directory"):
            cid = svc.store.collection("c").id
            for seq in range(20):
                (folder / f"c{cid}-{seq}.index").mkdir(parents=True)
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.write_text("not a folder")
        with caplog.at_level(logging.WARNING, logger="faceprint.collections.index_cache"):
            for probe in ("obama2.jpg", "obama.jpg"):
                found = svc.search_faces_by_image(CollectionId="c", Image=EXAMPLES / probe)
                assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["obama"]
            svc.delete_faces(CollectionId="c", FaceIds=[found["FaceMatches"][0]["Face"]["FaceId"]])
            assert (
                svc.search_faces_by_image(CollectionId="c", Image=EXAMPLES / "obama.jpg")["FaceMatches"] == []
            )
            svc.indexes.flush()
        warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
        assert len(warnings) == 1, caplog.text


def _serve(home: Path, *wrap: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "faceprint", "serve", "--home", str(home), "--port", "1"]
    return subprocess.run([*wrap, *command], capture_output=True, text=True, timeout=60, check=False)


def test_serve_stops_with_one_line_on_a_home_it_cannot_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "server").write_text("a file where the keys and audit folder belongs")
    out = _serve(home)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"faceprint serve: cannot start: {home / 'server'} is not writable (File exists)"
    ]

    (home / "server").unlink()
    (home / "server").mkdir()
    (home / "server" / "audit.sqlite").write_bytes(b"garbage, not a database" * 200)
    out = _serve(home)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "audit log" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

    shutil.rmtree(home)
    home.mkdir()
    unshare = shutil.which("unshare")
    mount = f'mount --bind {home} {home} && mount -o remount,bind,ro {home} && exec "$@"'
    wrap = [unshare or "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh"]
    if unshare is None or subprocess.run([*wrap, "true"], capture_output=True, check=False).returncode:
        pytest.skip("no user namespaces here to mount the home read-only")
    out = _serve(home, *wrap)  # a read-only mount: even root cannot write it
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"faceprint serve: cannot start: {home} is not writable (Read-only file system)"
    ]
    assert os.listdir(home) == []
