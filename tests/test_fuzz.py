"""Fuzzing (hypothesis, bounded): the wire decoder, parameter validation, the image loader, the video opener,
and a real server. Any exception that is not a modeled 4xx FaceprintError, any crash, any 5xx fails.

Seeds: the request templates in `tests/fuzz_corpus/requests.json`, real photos and a real video from
`../shared/data` (read at run time, never committed). Each target stops generating after
`FACEPRINT_FUZZ_SECONDS` (default 8) or `FACEPRINT_FUZZ_EXAMPLES` (default 300) examples.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import DATA, EXAMPLES, KNN
from faceprint.config import ImageLimits
from faceprint.errors import FaceprintError
from faceprint.images import decode_image_bytes
from faceprint.server import schema, wire
from faceprint.server.launcher import RunningServer, start_server
from faceprint.video.decode import VideoReader

pytestmark = pytest.mark.slow
SECONDS = float(os.environ.get("FACEPRINT_FUZZ_SECONDS", "8"))
EXAMPLES_MAX = int(os.environ.get("FACEPRINT_FUZZ_EXAMPLES", "300"))
CORPUS = json.loads((Path(__file__).parent / "fuzz_corpus" / "requests.json").read_text())
FUZZ = settings(
    max_examples=EXAMPLES_MAX,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def budget() -> Callable[[], bool]:
    """True once this target's `SECONDS` are spent (the remaining examples then do nothing)."""
    end = time.monotonic() + SECONDS
    return lambda: time.monotonic() > end


def modeled_only(func: Callable[[], Any]) -> None:
    try:
        func()
    except FaceprintError as exc:
        assert exc.status < 500, f"{exc.code}: {exc.message}"


# --- seeds -----------------------------------------------------------------------------------------------
def _real_images() -> list[bytes]:
    """Real photos in every format the loader accepts: JPEG as stored, and PNG, WebP, MPO made from them."""
    jpeg = (KNN / "train" / "obama" / "obama.jpg").read_bytes()
    photo = Image.open(io.BytesIO(jpeg)).convert("RGB")
    small = photo.resize((photo.width // 4, photo.height // 4))
    out = [jpeg, (EXAMPLES / "biden.jpg").read_bytes()]
    for fmt, extra in (("PNG", {}), ("WEBP", {}), ("MPO", {"save_all": True, "append_images": [photo]})):
        buf = io.BytesIO()
        small.save(buf, fmt, **extra)
        out.append(buf.getvalue())
    return out


IMAGES = _real_images()
IMAGE_B64 = base64.b64encode((EXAMPLES / "biden.jpg").read_bytes()).decode()
VIDEO = (DATA / "video" / "face_recognition_short_hamilton_clip.mp4").read_bytes()
HOSTILE = [b"NaN", b"-Infinity", b"1e309", b"9" * 5000, b"[" * 1000, b'"\\ud800"', b'"\\u0000"', b"\xff\xfe"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def _members(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _members(item, (*path, key))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(operation, body): a corpus template with members replaced or removed, then maybe bytes spliced."""
    template = draw(st.sampled_from(CORPUS))
    body = json.loads(json.dumps(template["body"]).replace("$IMAGE", IMAGE_B64))
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_members(body))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        else:
            del parent[path[-1]]
    raw = json.dumps(body).encode()
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        splice = draw(st.sampled_from(HOSTILE) | st.binary(max_size=8))
        raw = raw[:at] + splice + raw[at + draw(st.integers(0, 8)) :]
    return template["target"], raw


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], region: int | None = None) -> bytes:
    """A seed truncated and/or with a few bytes overwritten (within its first `region` bytes)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    span = min(len(data), region or len(data))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, span - 1))
        data[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


# --- in-process targets ----------------------------------------------------------------------------------
def test_fuzz_wire_decoder_and_validation() -> None:
    expired = budget()

    @FUZZ
    @given(requests())
    def run(request: tuple[str, bytes]) -> None:
        if expired():
            return
        target, raw = request

        def decode_and_validate() -> None:
            params = wire.decode_body(raw)
            if target in schema.REQUESTS:
                schema.validate(target, params)

        modeled_only(decode_and_validate)

    run()


def test_fuzz_image_loader() -> None:
    expired = budget()
    limits = ImageLimits()

    @FUZZ
    @given(mutated(IMAGES))
    def run(data: bytes) -> None:
        if not expired():
            modeled_only(lambda: decode_image_bytes(data, limits))

    run()


def test_fuzz_video_opener(tmp_path: Path) -> None:
    expired = budget()
    path = tmp_path / "fuzzed.mp4"

    @FUZZ
    @given(mutated([VIDEO], region=65536))
    def run(data: bytes) -> None:
        if expired():
            return
        path.write_bytes(data)

        def open_and_read() -> None:
            with VideoReader(path, sample_fps=1.0, live=False) as reader:
                for i, _ in enumerate(reader.frames()):
                    if i == 1:
                        break

        modeled_only(open_and_read)

    run()


# --- a real server ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Credentials]]:
    from faceprint.server.keys import KeyStore

    home = tmp_path_factory.mktemp("fuzz-home")
    key, secret = KeyStore(home).create("fuzz")
    with start_server(home) as running:
        yield running, Credentials(key.access_key_id, secret)


def test_fuzz_server_answers_modeled_4xx(server: tuple[RunningServer, Credentials]) -> None:
    running, credentials = server
    expired = budget()
    http = httpx.Client(base_url=running.url, timeout=120)

    @settings(FUZZ, max_examples=min(EXAMPLES_MAX, 60))
    @given(requests(), st.booleans())
    def run(request: tuple[str, bytes], sign: bool) -> None:
        if expired():
            return
        target, raw = request
        headers = {
            "X-Amz-Target": f"RekognitionService.{target}",
            "Content-Type": "application/x-amz-json-1.1",
        }
        if sign:
            req = AWSRequest(method="POST", url=running.url + "/", data=raw, headers=headers)
            SigV4Auth(credentials, "rekognition", "us-east-1").add_auth(req)
            headers = dict(req.headers.items())
        resp = http.post("/", content=raw, headers=headers)
        assert resp.status_code < 500 or resp.json()["__type"] == "ThrottlingException", resp.text
        if resp.status_code >= 400:
            assert resp.json()["__type"], resp.text

    run()
    http.close()
