"""Local video sources that stand in for Kinesis Video Streams, and the ARNs that name them.

`faceprint serve --stream NAME=SOURCE` (or `FACEPRINT_STREAMS=NAME=SOURCE,...`) registers SOURCE under
NAME; a stream processor's `Input.KinesisVideoStream.Arn` `arn:aws:kinesisvideo:REGION:ACCOUNT:stream/
NAME/...` names it. SOURCE is an `rtsp://` or `http(s)://` URL (e.g. an MJPEG camera), a `/dev/video*`
device, or a video file, which is played at its own pace as a camera would deliver it. Output streams are
named the same way: `Output.KinesisDataStream.Arn` `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from faceprint.errors import InvalidParameterError
from faceprint.video.decode import URL_RE

STREAMS_ENV = "FACEPRINT_STREAMS"
NAME_RE = re.compile(r"[a-zA-Z0-9_.\-]{1,256}")  # Kinesis Video stream names
VIDEO_ARN_RE = re.compile(r"^arn:([a-z\d-]+):kinesisvideo:([a-z\d-]*):(\d{12}):stream/([^/]+)(/.*)?$")
DATA_ARN_RE = re.compile(r"^arn:([a-z\d-]+):kinesis:([a-z\d-]*):(\d{12}):stream/([a-zA-Z0-9_.\-]{1,128})$")
SOURCE_SCHEMES = ("rtsp", "rtsps", "http", "https")


def check_source(source: str) -> str:
    """A SOURCE as registered: a stream URL, a video device, or an existing file (made absolute)."""
    text = source.strip()
    if URL_RE.match(text):
        scheme = text.split(":", 1)[0].lower()
        if scheme not in SOURCE_SCHEMES:
            raise ValueError(f"stream URL scheme must be one of {', '.join(SOURCE_SCHEMES)}: {text!r}")
        return text
    if text.startswith("/dev/video"):
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"stream source {text!r} is not a URL, a /dev/video* device or a file")
    return str(path.resolve())


def parse_streams(spec: str) -> dict[str, str]:
    """`NAME=SOURCE,NAME=SOURCE` -> {NAME: SOURCE}; ValueError with a clear message otherwise."""
    streams: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, source = item.partition("=")
        name = name.strip()
        if not sep or not source.strip():
            raise ValueError(f"expected NAME=SOURCE, got {item!r}")
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"stream name {name!r} must be 1-256 characters of [a-zA-Z0-9_.-]")
        streams[name] = check_source(source)
    return streams


def streams_from_env() -> dict[str, str]:
    return parse_streams(os.environ.get(STREAMS_ENV, ""))


def is_file_source(source: str) -> bool:
    return not URL_RE.match(source) and not source.startswith("/dev/video")


def video_stream_name(arn: str) -> str:
    """NAME of `arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME/...`."""
    match = VIDEO_ARN_RE.match(arn)
    if match is None:
        raise InvalidParameterError(
            f"Input.KinesisVideoStream.Arn {arn!r} is not arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME/..."
        )
    return match.group(4)


def data_stream_name(arn: str) -> str:
    """NAME of `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`."""
    match = DATA_ARN_RE.match(arn)
    if match is None:
        raise InvalidParameterError(
            f"Output.KinesisDataStream.Arn {arn!r} is not arn:aws:kinesis:REGION:ACCOUNT:stream/NAME "
            "(NAME: 1-128 characters of [a-zA-Z0-9_.-])"
        )
    return match.group(4)
