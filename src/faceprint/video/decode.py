"""Video decoding with PyAV: metadata in Rekognition's VideoMetadata shape and RGB frames sampled at a rate.

Any container and codec FFmpeg reads works (mp4, mov, mkv, avi, webm, ...), and so do live sources: a
webcam device (`/dev/video0`, or an index such as `0`) or a stream URL (rtsp://, http://, ...).
Timestamps are milliseconds from the video's first frame.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from faceprint.errors import InvalidParameterError, InvalidS3ObjectError, VideoTooLargeError

MAX_VIDEO_BYTES = 10 * 1024**3  # Rekognition Video: 10 GB ...
MAX_VIDEO_MILLIS = 6 * 3600 * 1000  # ... and 6 hours
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
OPEN_TIMEOUT_SECONDS = 10.0


# Stored videos: Rekognition documents MP4 and MOV (H.264); faceprint also reads MKV and WebM.
STORED_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm"})


class UnsupportedVideoError(InvalidParameterError):
    """The file is not a video FFmpeg can decode (a job on it fails with this message)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: codec, container, duration, frame rate and size."""

    codec: str
    format: str
    duration_ms: int | None  # None for live sources
    frame_rate: float
    width: int
    height: int
    color_range: str  # FULL or LIMITED

    def metadata(self) -> dict:
        """Rekognition `VideoMetadata`."""
        out: dict = {
            "Codec": self.codec,
            "DurationMillis": int(self.duration_ms or 0),
            "Format": self.format,
            "FrameRate": self.frame_rate,
            "FrameHeight": self.height,
            "FrameWidth": self.width,
            "ColorRange": self.color_range,
        }
        return out


@dataclass
class Frame:
    """One decoded frame: its position and RGB pixels (H, W, 3) uint8."""

    index: int  # frame number in decoding order, from 0
    timestamp_ms: int
    pixels: np.ndarray


def is_live_source(source: str | Path) -> bool:
    """True for URLs, webcam devices and device indexes (not for ordinary files)."""
    text = str(source)
    return bool(URL_RE.match(text)) or text.startswith("/dev/video") or text.isdigit()


def _open(source: str | Path, live: bool) -> av.container.InputContainer:
    text = str(source)
    try:
        if text.isdigit() or text.startswith("/dev/video"):
            device = f"/dev/video{text}" if text.isdigit() else text
            return av.open(device, format="v4l2", timeout=OPEN_TIMEOUT_SECONDS)
        if URL_RE.match(text):
            options = {"rtsp_transport": "tcp"} if text.lower().startswith("rtsp") else {}
            return av.open(text, options=options, timeout=OPEN_TIMEOUT_SECONDS)
        path = Path(text)
        if not path.is_file():
            raise InvalidS3ObjectError(f"video not found: {path.name}")
        return av.open(str(path), timeout=OPEN_TIMEOUT_SECONDS if live else None)
    except av.FFmpegError as exc:
        shown = text if URL_RE.match(text) or text.startswith("/dev/") else Path(text).name
        raise UnsupportedVideoError(
            f"Unsupported codec/format: cannot open {shown!r} ({_reason(exc)})"
        ) from None


def _reason(exc: av.FFmpegError) -> str:
    """FFmpeg's reason without the file name it appends (a server path must not reach the caller)."""
    return str(exc.strerror or type(exc).__name__)


def _color_range(stream: av.video.stream.VideoStream) -> str:
    ctx = stream.codec_context
    full = int(getattr(ctx, "color_range", 0) or 0) == 2 or str(ctx.pix_fmt or "").startswith("yuvj")
    return "FULL" if full else "LIMITED"


def _info(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, live: bool
) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(0)
    duration_ms: int | None = None
    if not live:
        if stream.duration is not None and stream.time_base is not None:
            duration_ms = round(float(stream.duration * stream.time_base) * 1000)
        elif container.duration is not None:
            duration_ms = round(container.duration / 1000)
        elif stream.frames and rate:
            duration_ms = round(stream.frames / float(rate) * 1000)
    return VideoInfo(
        codec=stream.codec_context.name,
        format=container.format.long_name or container.format.name,
        duration_ms=duration_ms,
        frame_rate=float(rate),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        color_range=_color_range(stream),
    )


class VideoReader:
    """Decode a video or live source and yield frames sampled at `sample_fps` (every frame when None).

    `realtime` paces a file at its own speed, as a live source would deliver it; for live sources, frames
    that arrive while the caller is still busy are dropped (the newest one is kept), so results keep up.
    """

    def __init__(
        self,
        source: str | Path,
        sample_fps: float | None = None,
        live: bool | None = None,
        realtime: bool = False,
    ) -> None:
        if sample_fps is not None and sample_fps <= 0:
            raise InvalidParameterError(f"sample rate must be positive, got {sample_fps}")
        self.source = source
        self.live = is_live_source(source) if live is None else live
        self.sample_fps = sample_fps
        self.realtime = realtime
        self._container = _open(source, self.live)
        name = Path(str(source)).name
        if not self._container.streams.video:
            self._container.close()
            raise UnsupportedVideoError(f"Unsupported codec/format: {name} has no video stream")
        self._stream = self._container.streams.video[0]
        self.container_format = str(self._container.format.name or "")  # FFmpeg's demuxer names
        self._stream.thread_type = "AUTO"
        self.info = _info(self._container, self._stream, self.live)
        if not self.info.width or not self.info.height:
            self.close()
            raise UnsupportedVideoError(f"Unsupported codec/format: {name} has no frame size")

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self) -> Iterator[Frame]:
        """Sampled frames in presentation order; raises UnsupportedVideoError if decoding fails midway.

        A live source read in real time is decoded by a background thread that keeps only the newest
        sampled frame, so a slow consumer skips frames instead of falling behind the source.
        """
        if self.live and self.realtime:
            return self._latest_only()
        return self._prefetched()

    def _sampled(self) -> Iterator[Frame]:
        stream = self._stream
        tb = float(stream.time_base) if stream.time_base is not None else 0.0
        fps = self.info.frame_rate or 25.0
        step = 1.0 / self.sample_fps if self.sample_fps else 0.0
        start_pts: int | None = None
        next_t = 0.0
        wall0: float | None = None
        try:
            for index, frame in enumerate(self._container.decode(stream)):
                if frame.pts is not None and tb:
                    start_pts = frame.pts if start_pts is None else start_pts
                    t = (frame.pts - start_pts) * tb
                else:
                    t = index / fps
                if step:
                    if t + 1e-6 < next_t:
                        continue
                    next_t = next_t + step if next_t + step > t else t + step
                if self.realtime and not is_live_source(self.source):  # pace a file like a live source
                    wall0 = time.monotonic() - t if wall0 is None else wall0
                    delay = wall0 + t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                pixels = frame.to_ndarray(format="rgb24")
                yield Frame(index=index, timestamp_ms=round(t * 1000), pixels=pixels)
        except av.FFmpegError as exc:
            if self.live:
                return  # a live source that ends or drops is simply over
            raise UnsupportedVideoError(
                f"Unsupported codec/format: decoding failed ({_reason(exc)})"
            ) from None

    def _prefetched(self, depth: int = 2) -> Iterator[Frame]:
        """Decode in a background thread, `depth` frames ahead: decoding overlaps the caller's work."""
        slot: queue.Queue[Frame | BaseException | None] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def offer(item: Frame | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    slot.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def pump() -> None:
            try:
                for frame in self._sampled():
                    if not offer(frame):
                        return
                offer(None)
            except BaseException as exc:  # handed to the consumer
                offer(exc)

        thread = threading.Thread(target=pump, name="faceprint-video-decode", daemon=True)
        thread.start()
        try:
            while (item := slot.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _latest_only(self) -> Iterator[Frame]:
        slot: queue.Queue[Frame | None] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put_newest(item: Frame | None) -> None:
            while True:
                try:
                    slot.put_nowait(item)
                    return
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        slot.get_nowait()

        def pump() -> None:
            try:
                for frame in self._sampled():
                    if stop.is_set():
                        return
                    put_newest(frame)
            finally:
                put_newest(None)

        thread = threading.Thread(target=pump, name="faceprint-live-decode", daemon=True)
        thread.start()
        try:
            while (item := slot.get()) is not None:
                yield item
        finally:
            stop.set()
            thread.join(OPEN_TIMEOUT_SECONDS + 1.0)  # the container must not close under the decoder


def probe(source: str | Path) -> VideoInfo:
    """Open a stored video, check Rekognition's limits (10 GB, 6 hours) and return its metadata."""
    path = Path(source)
    if path.is_file() and path.stat().st_size > MAX_VIDEO_BYTES:
        raise VideoTooLargeError(f"video is {path.stat().st_size:,} bytes; the maximum is 10 GB")
    with VideoReader(path, live=False) as reader:
        info = reader.info
        demuxers = set(reader.container_format.split(","))
    if not demuxers & STORED_CONTAINERS:
        raise UnsupportedVideoError(
            f"Unsupported codec/format: {path.name} is not an MP4, MOV, MKV or WebM video "
            f"(FFmpeg reads it as {reader.container_format!r})"
        )
    if info.duration_ms is not None and info.duration_ms > MAX_VIDEO_MILLIS:
        raise VideoTooLargeError(f"video lasts {info.duration_ms / 3.6e6:.1f} hours; the maximum is 6 hours")
    return info
