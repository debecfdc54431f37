"""`faceprint video detect|search` on stored files, and `faceprint video search --live` on an HTTP stream."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceprint.cli import cli
from faceprint.collections.service import Collections
from faceprint.config import data_dir

DATA = data_dir()
EXAMPLES = DATA / "known_identities" / "face_recognition_examples" / "examples"
HAMILTON = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"
ENROLLED = {
    "lin-manuel-miranda": EXAMPLES / "lin-manuel-miranda.png",
    "alex-lacamoire": EXAMPLES / "alex-lacamoire.png",
    "biden": EXAMPLES / "biden.jpg",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("video-cli-home")
    with Collections(home) as collections:
        collections.create_collection(CollectionId="hamilton")
        for name, path in ENROLLED.items():
            collections.index_faces(CollectionId="hamilton", Image=path, ExternalImageId=name)
    return home


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one file with HTTP Range support (what FFmpeg's http protocol uses to read an mp4)."""

    path_to_serve: Path = HAMILTON

    def do_GET(self) -> None:
        data = self.path_to_serve.read_bytes()
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = (int(match[1]), int(match[2] or len(data) - 1)) if match else (0, len(data) - 1)
        end = min(end, len(data) - 1)
        self.send_response(206 if match else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the reader may stop early
            self.wfile.write(data[start : end + 1])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stream_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hamilton.mp4"
    finally:
        server.shutdown()
        server.server_close()


def test_video_search_prints_a_timeline(home: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["video", "search", "hamilton", str(HAMILTON), "--threshold", "80"],
        env={"FACEPRINT_HOME": str(home), "COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    lin = [line for line in lines if "lin-manuel-miranda" in line]
    alex = [line for line in lines if "alex-lacamoire" in line]
    assert lin and alex and not any("biden" in line for line in lines), result.output
    assert any("00:02.8-00:07.0" in line for line in lin), result.output  # the medium shot
    assert any("00:00.0-00:00.6" in line for line in alex), result.output  # at the piano


def test_video_detect_json_is_the_get_face_detection_response(home: Path) -> None:
    result = CliRunner().invoke(
        cli, ["video", "detect", str(HAMILTON), "--json", "--fps", "2"], env={"FACEPRINT_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    response = json.loads(result.output[result.output.index("{") :])
    assert response["JobStatus"] == "SUCCEEDED" and "NextToken" not in response
    assert set(response) == {"JobStatus", "VideoMetadata", "JobId", "Faces"}
    stamps = sorted({face["Timestamp"] for face in response["Faces"]})
    assert stamps[:3] == [0, 501, 1001] and len(stamps) >= 15  # 2 samples a second (frames at 29.97 fps)


def test_video_detect_rejects_a_file_that_is_not_a_video(home: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    result = CliRunner().invoke(cli, ["video", "detect", str(bogus)], env={"FACEPRINT_HOME": str(home)})
    assert result.exit_code == 2 and "Unsupported codec/format" in result.output


def test_live_search_on_a_loopback_stream(home: Path, stream_url: str) -> None:
    """A real `faceprint` process reads the clip over loopback HTTP and prints matches as they come."""
    command = [
        "video",
        "search",
        "hamilton",
        stream_url,
        "--live",
        "--no-realtime",
        "--json",
        "--threshold",
        "80",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "faceprint", *command],
        env={**os.environ, "FACEPRINT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    names = {m["Face"]["ExternalImageId"]: e["Timestamp"] for e in events for m in e["FaceMatches"]}
    assert {"lin-manuel-miranda", "alex-lacamoire"} <= set(names) and "biden" not in names, events
    assert all(set(e) == {"Timestamp", "Person", "FaceMatches"} for e in events)
    assert names["alex-lacamoire"] <= 2800  # reported while he is on screen, not at the end
