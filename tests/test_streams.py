"""Stream processors through boto3 alone: a `rekognition` client drives them, a `kinesis` client reads them.

One real server for the module, with the Hamilton clip registered as a stream played at real-time pace and
an HTTP MJPEG stream served by this test. Every raw response is checked against botocore's model. The
latency is measured from the frame in which a person first appears, as an offline StartFaceSearch of the
same clip (same detector and matcher) finds it, to the moment this test reads the record naming them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from conftest import DATA, EXAMPLES
from faceprint.audit import AuditLog
from faceprint.server.launcher import RunningServer, start_server
from test_server_boto3 import Key, create_key, faceprint

pytestmark = pytest.mark.slow
HAMILTON = DATA / "video" / "face_recognition_short_hamilton_clip.mp4"
PEOPLE = ("lin-manuel-miranda", "alex-lacamoire")
VIDEO_ARN = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/{}/1700000000000"
DATA_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/{}"
ROLE = "arn:aws:iam::000000000000:role/faceprint"


# --- botocore's model, applied to raw responses ------------------------------------------------------
def _check_shape(shape: Any, value: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a structure, got {type(value).__name__}")
            return
        for member in value:
            if member not in shape.members:
                problems.append(f"{path}.{member}: not a member of {shape.name}")
        for member in shape.required_members:
            if member not in value:
                problems.append(f"{path}.{member}: required member missing")
        for member, item in value.items():
            if member in shape.members:
                _check_shape(shape.members[member], item, f"{path}.{member}", problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check_shape(shape.member, item, f"{path}[{i}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string")
        elif shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in {shape.enum}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer")
    elif kind in ("float", "double", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected a number")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean")
    elif kind == "blob" and not isinstance(value, str):
        problems.append(f"{path}: expected base64 text")


def model_checked(client: Any) -> Any:
    """Fail the test if any successful raw response is not what botocore's model describes."""
    problems: list[str] = []

    def check(http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code == 200 and model.output_shape is not None:
            body = json.loads(http_response.content or b"{}")
            _check_shape(model.output_shape, body, model.name, problems)

    client.meta.events.register(f"after-call.{client.meta.service_model.service_name}", check)
    client.model_problems = problems
    return client


# --- an MJPEG camera: the clip's frames as multipart/x-mixed-replace ---------------------------------
class MjpegCamera:
    """Serves the Hamilton clip at real-time pace, looping, as HTTP MJPEG cameras `/<name>.mjpg`."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        with av.open(str(HAMILTON)) as container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate)
            for frame in container.decode(stream):
                buf = io.BytesIO()
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(buf, "JPEG", quality=85)
                self.frames.append(buf.getvalue())
        self.dead: set[str] = set()
        self.drops: dict[str, int] = {}
        self.connections: dict[str, int] = {}
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").removesuffix(".mjpg")
                if name in camera.dead:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                camera.connections[name] = camera.connections.get(name, 0) + 1
                generation = camera.drops.get(name, 0)
                start = time.monotonic()
                for i, jpeg in enumerate(camera.frames * 20):
                    if name in camera.dead or camera.drops.get(name, 0) != generation:
                        return  # the connection drops
                    delay = start + i / camera.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode()
                            + b"\r\n\r\n"
                            + jpeg
                            + b"\r\n"
                        )
                    except OSError:
                        return

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}.mjpg"

    def drop(self, name: str) -> None:
        """Camera `name` drops its open connection (and accepts the next)."""
        self.drops[name] = self.drops.get(name, 0) + 1

    def kill(self, name: str) -> None:
        """Camera `name` goes away: its open connection ends, new ones get 404."""
        self.dead.add(name)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the server --------------------------------------------------------------------------------------
@dataclass
class Env:
    home: Path
    server: RunningServer
    admin: Key
    camera: MjpegCamera
    args: tuple[str, ...]

    def client(self, service: str = "rekognition", key: Key | None = None) -> Any:
        key = key or self.admin
        return model_checked(
            boto3.client(
                service,
                endpoint_url=self.server.url,
                region_name="us-east-1",
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=key.secret,
            )
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("streams-home")
    admin = create_key(home, "--name", "admin")
    camera = MjpegCamera()
    args = (
        "--stream",
        f"hamilton={HAMILTON}",
        "--stream",
        f"camera={camera.url('camera')}",
        "--stream",
        f"desk={camera.url('desk')}",
        "--bucket",
        f"clips={HAMILTON.parent}",
    )
    retries = {"FACEPRINT_STREAM_RETRIES": "2", "FACEPRINT_STREAM_BACKOFF": "0.5"}
    server = start_server(home, *args, env=retries)
    state = Env(home, server, admin, camera, args)
    try:
        yield state
    finally:
        state.server.stop()
        camera.close()


def wait_status(rek: Any, name: str, wanted: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = rek.describe_stream_processor(Name=name)
        if described["Status"] in wanted or time.monotonic() > deadline:
            return described
        time.sleep(0.1)


def create_processor(rek: Any, name: str, stream: str, output: str, **settings: Any) -> str:
    return rek.create_stream_processor(
        Input={"KinesisVideoStream": {"Arn": VIDEO_ARN.format(stream)}},
        Output={"KinesisDataStream": {"Arn": DATA_ARN.format(output)}},
        Name=name,
        Settings={"FaceSearch": {"CollectionId": "hamilton", **settings}},
        RoleArn=ROLE,
    )["StreamProcessorArn"]


def read_all(kinesis: Any, output: str, iterator_type: str = "TRIM_HORIZON") -> list[dict]:
    iterator = kinesis.get_shard_iterator(
        StreamName=output, ShardId="shardId-000000000000", ShardIteratorType=iterator_type
    )["ShardIterator"]
    out: list[dict] = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator)
        out += page["Records"]
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            return out


def names_in(record: dict) -> set[str]:
    document = json.loads(record["Data"])
    return {m["Face"]["ExternalImageId"] for f in document["FaceSearchResponse"] for m in f["MatchedFaces"]}


@pytest.fixture(scope="module")
def collection(env: Env) -> dict[str, int]:
    """The collection, and when each person first appears in the clip (ms), found by an offline
    StartFaceSearch at the same default threshold the processors use."""
    rek = env.client()
    rek.create_collection(CollectionId="hamilton")
    for person in PEOPLE:
        rek.index_faces(
            CollectionId="hamilton",
            Image={"Bytes": (EXAMPLES / f"{person}.png").read_bytes()},
            ExternalImageId=person,
        )
    job = rek.start_face_search(
        Video={"S3Object": {"Bucket": "clips", "Name": HAMILTON.name}}, CollectionId="hamilton"
    )
    deadline = time.monotonic() + 120
    while (result := rek.get_face_search(JobId=job["JobId"]))["JobStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert result["JobStatus"] == "SUCCEEDED", result.get("StatusMessage")
    first: dict[str, int] = {}
    for person in result["Persons"]:
        for match in person["FaceMatches"]:
            name = match["Face"]["ExternalImageId"]
            first[name] = min(first.get(name, 10**9), person["Timestamp"])
    assert set(first) == set(PEOPLE), first
    return first


# --- the test: create, start, read both names, stop, delete ------------------------------------
def test_processor_finds_both_people_within_two_seconds(env: Env, collection: dict[str, int]) -> None:
    rek, kinesis = env.client(), env.client("kinesis")
    arn = create_processor(rek, "stage", "hamilton", "stage-matches")
    assert arn.endswith(":streamprocessor/stage")
    assert rek.describe_stream_processor(Name="stage")["Status"] == "STOPPED"
    shard = kinesis.list_shards(StreamName="stage-matches")["Shards"]
    assert [s["ShardId"] for s in shard] == ["shardId-000000000000"]
    summary = kinesis.describe_stream_summary(StreamARN=DATA_ARN.format("stage-matches"))
    assert summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    iterator = kinesis.get_shard_iterator(
        StreamName="stage-matches", ShardId="shardId-000000000000", ShardIteratorType="LATEST"
    )["ShardIterator"]

    session = rek.start_stream_processor(Name="stage")["SessionId"]
    assert session
    seen: dict[str, float] = {}
    records: list[dict] = []
    deadline = time.monotonic() + 60
    while set(seen) != set(PEOPLE) and time.monotonic() < deadline:
        page = kinesis.get_records(ShardIterator=iterator, Limit=100)
        now = time.time()
        iterator = page["NextShardIterator"]
        for record in page["Records"]:
            records.append(record)
            for name in names_in(record):
                seen.setdefault(name, now)
        time.sleep(0.05)
    assert set(seen) == set(PEOPLE), f"named: {sorted(seen)}; {rek.describe_stream_processor(Name='stage')}"
    assert rek.describe_stream_processor(Name="stage")["Status"] == "RUNNING"

    first = json.loads(records[0]["Data"])
    video = first["InputInformation"]["KinesisVideo"]
    assert video["StreamArn"] == VIDEO_ARN.format("hamilton")
    assert first["StreamProcessorInformation"] == {"Status": "RUNNING"}
    face = first["FaceSearchResponse"][0]
    assert set(face["DetectedFace"]) >= {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    assert all(0 <= m["Similarity"] <= 100 and m["Face"]["FaceId"] for m in face["MatchedFaces"])
    playback_start = video["ProducerTimestamp"] - int(video["FragmentNumber"])
    latency = {name: seen[name] - (playback_start + collection[name] / 1000.0) for name in PEOPLE}
    print(f"\nfirst appearance (ms) {collection}; record latency (s) {latency}")
    assert all(0 < value < 2.0 for value in latency.values()), latency
    numbers = [int(r["SequenceNumber"]) for r in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)

    rek.stop_stream_processor(Name="stage")
    assert wait_status(rek, "stage", {"STOPPED"})["Status"] == "STOPPED"
    rek.delete_stream_processor(Name="stage")
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.describe_stream_processor(Name="stage")
    assert len(read_all(kinesis, "stage-matches")) >= len(records)  # the output outlives its processor
    log = AuditLog.for_home(env.home)
    searches = [
        r
        for r in log.records()
        if r.operation == "StreamProcessorFaceSearch" and '"stage"' in (r.detail or "")
    ]
    log.close()
    assert searches and all(r.collection == "hamilton" and r.request_id == session for r in searches)
    assert sum(r.matches or 0 for r in searches) >= 2  # every match is audited, with the matched face ids
    assert stat.S_IMODE((env.home / "streams" / "streams.db").stat().st_mode) == 0o600
    assert not rek.model_problems and not kinesis.model_problems, rek.model_problems + kinesis.model_problems


# --- bad input -----------------------------------------------------------------------------------------
def test_bad_input_gets_modeled_exceptions(env: Env, collection: dict[str, int]) -> None:
    rek, kinesis = env.client(), env.client("kinesis")

    def code(call: Any, **params: Any) -> str:
        with pytest.raises(ClientError) as exc:
            call(**params)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return exc.value.response["Error"]["Code"]

    base = {
        "Input": {"KinesisVideoStream": {"Arn": VIDEO_ARN.format("hamilton")}},
        "Output": {"KinesisDataStream": {"Arn": DATA_ARN.format("bad-out")}},
        "RoleArn": ROLE,
    }
    face_search = {"FaceSearch": {"CollectionId": "hamilton"}}
    unknown_stream = {**base, "Input": {"KinesisVideoStream": {"Arn": VIDEO_ARN.format("nowhere")}}}
    assert (
        code(rek.create_stream_processor, **unknown_stream, Name="x", Settings=face_search)
        == "InvalidParameterException"
    )
    no_collection = {"FaceSearch": {"CollectionId": "missing"}}
    assert (
        code(rek.create_stream_processor, **base, Name="x", Settings=no_collection)
        == "ResourceNotFoundException"
    )
    for settings in (
        {"FaceSearch": {"CollectionId": "hamilton", "FaceMatchThreshold": 150}},
        {"ConnectedHome": {"Labels": ["PERSON"]}},
        {},
    ):
        assert (
            code(rek.create_stream_processor, **base, Name="x", Settings=settings)
            == "InvalidParameterException"
        )
    assert (
        code(rek.create_stream_processor, **base, Name="bad name!", Settings=face_search)
        == "InvalidParameterException"
    )

    create_processor(rek, "idle", "hamilton", "bad-out")
    assert (
        code(rek.create_stream_processor, **base, Name="idle", Settings=face_search)
        == "ResourceInUseException"
    )
    assert code(rek.stop_stream_processor, Name="idle") == "ResourceInUseException"  # not running
    assert code(rek.start_stream_processor, Name="ghost") == "ResourceNotFoundException"
    rek.update_stream_processor(
        Name="idle",
        RegionsOfInterestForUpdate=[{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1}}],
    )
    assert rek.describe_stream_processor(Name="idle")["RegionsOfInterest"][0]["BoundingBox"]["Width"] == 1
    update = {"SettingsForUpdate": {"ConnectedHomeForUpdate": {"MinConfidence": 50}}}
    assert code(rek.update_stream_processor, Name="idle", **update) == "InvalidParameterException"
    create_processor(rek, "idle-2", "hamilton", "bad-out")
    pages = list(rek.get_paginator("list_stream_processors").paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) >= 2 and {"idle", "idle-2"} <= {
        p["Name"] for page in pages for p in page["StreamProcessors"]
    }
    assert code(rek.list_stream_processors, NextToken="forged") == "InvalidPaginationTokenException"

    assert code(kinesis.get_records, ShardIterator="not-an-iterator") == "InvalidArgumentException"
    assert code(kinesis.describe_stream_summary, StreamName="no-such-stream") == "ResourceNotFoundException"
    assert (
        code(
            kinesis.get_shard_iterator,
            StreamName="bad-out",
            ShardId="shardId-000000000000",
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber="999999",
        )
        == "InvalidArgumentException"
    )
    for name in ("idle", "idle-2"):
        rek.delete_stream_processor(Name=name)
    assert not rek.model_problems and not kinesis.model_problems


def test_key_policy_applies_to_the_processors_collection(env: Env, collection: dict[str, int]) -> None:
    rek = env.client()
    create_processor(rek, "guarded", "hamilton", "guarded-out")
    outsider = create_key(env.home, "--name", "outsider", "--collections", "other-*")
    other, other_kinesis = env.client(key=outsider), env.client("kinesis", key=outsider)
    with pytest.raises(other.exceptions.AccessDeniedException):
        other.start_stream_processor(Name="guarded")
    with pytest.raises(other.exceptions.AccessDeniedException):
        other.describe_stream_processor(Name="guarded")
    assert "guarded" not in {p["Name"] for p in other.list_stream_processors()["StreamProcessors"]}
    with pytest.raises(other_kinesis.exceptions.AccessDeniedException):
        other_kinesis.get_shard_iterator(
            StreamName="guarded-out", ShardId="shardId-000000000000", ShardIteratorType="LATEST"
        )
    reader = create_key(
        env.home, "--name", "reader", "--allow", "kinesis:*Shard*,GetRecords", "--collections", "hamilton"
    )
    reader_kinesis = env.client("kinesis", key=reader)
    it = reader_kinesis.get_shard_iterator(
        StreamName="guarded-out", ShardId="shardId-000000000000", ShardIteratorType="LATEST"
    )
    assert reader_kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"] == []
    with pytest.raises(ClientError) as denied:
        env.client(key=reader).start_stream_processor(Name="guarded")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    rek.delete_stream_processor(Name="guarded")


# --- an HTTP camera that dies ---------------------------------------------------------------------------
def test_http_mjpeg_camera_that_drops_is_reconnected_and_one_that_dies_fails_the_processor(
    env: Env, collection: dict[str, int]
) -> None:
    rek, kinesis = env.client(), env.client("kinesis")
    create_processor(rek, "lobby", "camera", "lobby-matches")
    rek.start_stream_processor(Name="lobby")
    started = wait_status(rek, "lobby", {"RUNNING", "FAILED"})
    assert started["Status"] == "RUNNING", started
    deadline = time.monotonic() + 30
    while not read_all(kinesis, "lobby-matches") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(names_in(r) for r in read_all(kinesis, "lobby-matches")), "no match over the HTTP stream"
    whole_frame = [{"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 1.0, "Height": 1.0}}]
    rek.update_stream_processor(Name="lobby", RegionsOfInterestForUpdate=whole_frame)
    assert rek.describe_stream_processor(Name="lobby")["Status"] in ("UPDATING", "RUNNING")
    updated = wait_status(rek, "lobby", {"RUNNING"})
    assert updated["Status"] == "RUNNING" and updated["RegionsOfInterest"] == whole_frame
    before = len(read_all(kinesis, "lobby-matches"))
    env.camera.drop("camera")  # a network hiccup: the processor reconnects and goes on
    deadline = time.monotonic() + 30
    while env.camera.connections["camera"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.camera.connections["camera"] >= 2, "the processor did not reconnect"
    assert wait_status(rek, "lobby", {"RUNNING"})["Status"] == "RUNNING"
    deadline = time.monotonic() + 30
    while len(read_all(kinesis, "lobby-matches")) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(read_all(kinesis, "lobby-matches")) > before, "no record after reconnecting"
    env.camera.kill("camera")
    failed = wait_status(rek, "lobby", {"FAILED"}, timeout=60)
    assert failed["Status"] == "FAILED", failed
    assert "dropped" in failed["StatusMessage"] and "2 reconnection attempt" in failed["StatusMessage"]
    rek.delete_stream_processor(Name="lobby")


# --- kill -9 while running -----------------------------------------------------------------------------
def test_running_processor_survives_kill_9_without_losing_records(
    env: Env, collection: dict[str, int]
) -> None:
    rek, kinesis = env.client(), env.client("kinesis")
    create_processor(rek, "survivor", "hamilton", "survivor-matches")
    rek.start_stream_processor(Name="survivor")
    deadline = time.monotonic() + 40
    acknowledged: list[dict] = []
    while len(acknowledged) < 3 and time.monotonic() < deadline:
        acknowledged = read_all(kinesis, "survivor-matches")
        time.sleep(0.1)
    assert acknowledged, "no record before the kill"
    os.kill(env.server.process.pid, signal.SIGKILL)
    env.server.process.wait(10)
    env.server = start_server(
        env.home, *env.args, port=env.server.port, env={"FACEPRINT_STREAM_RETRIES": "2"}
    )
    rek, kinesis = env.client(), env.client("kinesis")
    assert wait_status(rek, "survivor", {"RUNNING"}, timeout=60)["Status"] == "RUNNING"
    after = {r["SequenceNumber"]: r["Data"] for r in read_all(kinesis, "survivor-matches")}
    for record in acknowledged:
        assert after.get(record["SequenceNumber"]) == record["Data"]
    rek.stop_stream_processor(Name="survivor")
    assert wait_status(rek, "survivor", {"STOPPED"})["Status"] == "STOPPED"
    rek.delete_stream_processor(Name="survivor")


# --- the command line ------------------------------------------------------------------------------------
def test_streams_command_line(env: Env, collection: dict[str, int]) -> None:
    def cli(*args: str) -> str:
        return faceprint(env.home, "streams", *args).stdout

    created = json.loads(cli("create", "desk", "--stream", "desk", "--collection", "hamilton", "--json"))
    assert created["StreamProcessorArn"].endswith(":streamprocessor/desk")
    assert json.loads(cli("start", "desk", "--json"))["SessionId"]
    line = cli("tail", "desk", "--json", "--from-start", "--max-records", "1").strip()
    document = json.loads(line)
    assert document["FaceSearchResponse"] and "InputInformation" in document
    assert {"Name": "desk", "Status": "RUNNING"} in json.loads(cli("list", "--json"))["StreamProcessors"]

    # the REST API's server-sent events, for the web console
    url = f"{env.server.url}/v1/stream-processors/desk/records?from=trim_horizon"
    auth = (env.admin.access_key_id, env.admin.secret)
    with httpx.stream("GET", url, auth=auth, timeout=30) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        event = {}
        for text in lines:
            if not text and "data" in event:
                break
            field, _, value = text.partition(": ")
            event[field] = value
    assert event["event"] == "record" and int(event["id"]) >= 1
    assert json.loads(event["data"])["FaceSearchResponse"]
    assert httpx.get(url.replace("desk", "nobody"), auth=auth).status_code == 404
    cli("stop", "desk")
    rek = env.client()
    assert wait_status(rek, "desk", {"STOPPED"})["Status"] == "STOPPED"
    described = json.loads(cli("describe", "desk", "--json"))
    assert described["Status"] == "STOPPED" and described["Settings"]["FaceSearch"] == {
        "CollectionId": "hamilton"
    }
    assert json.loads(cli("delete", "desk", "--json")) == {}
    failed = faceprint(env.home, "streams", "start", "desk", check=False)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ResourceNotFoundException")
