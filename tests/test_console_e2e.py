"""The web console end to end: real `faceprint serve`, real headless Chromium (Debian's), real photos.

Starts two servers on free loopback ports with fresh homes (one whose sessions live 2 seconds), creates an
admin key, and runs `node tests/e2e/console.mjs`, which drives the console through playwright-core and
saves a screenshot per test under this test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DATA, EXAMPLES
from faceprint.server.keys import KeyStore
from faceprint.server.launcher import start_server

pytestmark = pytest.mark.slow

E2E = Path(__file__).parent / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
VIDEO = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"


def test_console_in_headless_chromium(tmp_path: Path) -> None:
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run `make install` (npm ci in tests/e2e)")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: apt-get install chromium (.ci/run does it)")
    home, short_home = tmp_path / "home", tmp_path / "short-home"
    home.mkdir()
    key, secret = KeyStore(home).create("console-e2e")
    reports = home / "reports"  # where `faceprint audit --out "$FACEPRINT_HOME/reports"` writes
    reports.mkdir()
    shutil.copy(EXAMPLES / "lin-manuel-miranda.png", reports / "figure.png")
    (reports / "audit.html").write_text(
        "<!doctype html><title>faceprint audit</title><style>h1{color:rgb(11,92,173)}</style>"
        '<h1>faceprint demographic audit</h1><img src="figure.png" alt="figure">'
    )
    short_home.mkdir(mode=0o700)
    (short_home / "server").mkdir(mode=0o700)
    for name in ("keys.json", "master.key"):  # the same key works on both servers
        shutil.copy2(home / "server" / name, short_home / "server" / name)
    shots = tmp_path / "screenshots"
    with (
        start_server(home) as server,
        start_server(short_home, env={"FACEPRINT_SESSION_TTL": "2"}) as short,
    ):
        run = subprocess.run(
            ["node", str(E2E / "console.mjs")],
            env={
                **os.environ,
                "CONSOLE_URL": server.url,
                "CONSOLE_SHORT_URL": short.url,
                "CONSOLE_KEY_ID": key.access_key_id,
                "CONSOLE_SECRET": secret,
                "CONSOLE_EXAMPLES": str(EXAMPLES),
                "CONSOLE_VIDEO": str(VIDEO),
                "CONSOLE_OUT": str(shots),
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
        print(run.stdout, run.stderr)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.log()[-3000:]}"
    assert "console: 12 passed, 0 failed" in run.stdout, run.stdout
    for name in (
        "01-signed-in",
        "03-search-two-people",
        "05-video-timeline",
        "06-audit",
        "09-expired-session",
    ):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
