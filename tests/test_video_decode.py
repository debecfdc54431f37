"""PyAV decoding: VideoMetadata, sampling, other containers, and the tracker's cut detection on real clips."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest

from faceprint.config import data_dir
from faceprint.errors import InvalidS3ObjectError, VideoTooLargeError
from faceprint.video.decode import MAX_VIDEO_MILLIS, UnsupportedVideoError, VideoReader, probe
from faceprint.video.pipeline import CutDetector

VIDEO = data_dir() / "video"
HAMILTON = VIDEO / "face_recognition_short_hamilton_clip.mp4"
PEDESTRIANS = VIDEO / "facenet_pytorch_video.mp4"


def _convert(src: Path, dst: Path, codec: str | None = None, seconds: float = 2.0) -> Path:
    """Copy the first `seconds` of `src` into another container (re-encoding when `codec` is given)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream_in = inp.streams.video[0]
        if codec is None:
            stream_out = out.add_stream_from_template(stream_in)
        else:
            stream_out = out.add_stream(codec, rate=stream_in.average_rate)
            stream_out.width, stream_out.height, stream_out.pix_fmt = 320, 180, "yuv420p"
        start = None
        for packet in inp.demux(stream_in):
            if packet.pts is None:
                continue
            start = packet.pts if start is None else start
            if (packet.pts - start) * stream_in.time_base > seconds:
                break
            if codec is None:
                packet.stream = stream_out
                out.mux(packet)
            else:
                for frame in packet.decode():
                    out.mux(stream_out.encode(frame.reformat(320, 180)))
        if codec is not None:
            out.mux(stream_out.encode(None))
    return dst


def test_metadata_of_both_clips() -> None:
    ham = probe(HAMILTON).metadata()
    assert ham == {
        "Codec": "h264",
        "DurationMillis": 9176,
        "Format": "QuickTime / MOV",
        "FrameRate": pytest.approx(29.97, abs=0.01),
        "FrameHeight": 360,
        "FrameWidth": 640,
        "ColorRange": "LIMITED",
    }
    ped = probe(PEDESTRIANS).metadata()
    assert (ped["FrameWidth"], ped["FrameHeight"], ped["FrameRate"], ped["DurationMillis"]) == (
        1920,
        1080,
        25.0,
        4200,
    )


def test_sampling_keeps_the_requested_rate_from_the_first_frame() -> None:
    with VideoReader(HAMILTON, sample_fps=5) as reader:
        frames = list(reader.frames())
    stamps = [f.timestamp_ms for f in frames]
    assert stamps[0] == 0 and len(frames) == 46  # 9.18 s at 5 a second; the clip's first pts is 0.85 s
    assert all(180 <= b - a <= 220 for a, b in itertools.pairwise(stamps))
    assert frames[0].pixels.shape == (360, 640, 3)
    with VideoReader(HAMILTON) as reader:
        assert sum(1 for _ in reader.frames()) == 275  # every frame without a rate


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", None), (".avi", "mpeg4"), (".webm", "libvpx")])
def test_other_containers(tmp_path: Path, suffix: str, codec: str | None) -> None:
    """MKV and WebM are stored videos like MP4 and MOV; other containers FFmpeg reads (AVI) are not."""
    clip = _convert(HAMILTON, tmp_path / f"clip{suffix}", codec)
    if suffix == ".avi":
        with pytest.raises(UnsupportedVideoError, match="not an MP4, MOV, MKV or WebM video"):
            probe(clip)
    else:
        info = probe(clip)
        assert info.format == "Matroska / WebM", info.format
        assert info.codec == {None: "h264", "libvpx": "vp8"}[codec]
    with VideoReader(clip, sample_fps=5) as reader:
        stamps = [f.timestamp_ms for f in reader.frames()]
    assert stamps[0] == 0 and 9 <= len(stamps) <= 12


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidS3ObjectError):
        probe(tmp_path / "missing.mp4")
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 4096)
    with pytest.raises(UnsupportedVideoError):
        probe(bogus)
    with pytest.raises(UnsupportedVideoError, match="FFmpeg reads it as 'image2'"):  # a JPEG is no video
        probe(data_dir() / "known_identities" / "face_recognition_examples" / "examples" / "obama.jpg")
    assert MAX_VIDEO_MILLIS == 6 * 3600 * 1000 and issubclass(VideoTooLargeError, Exception)


def test_cut_detector_finds_the_hamilton_shot_changes() -> None:
    """Shots change at about 0.7 s, 2.7 s and 7.1 s (checked by looking at the frames)."""
    cuts = CutDetector()
    with VideoReader(HAMILTON, sample_fps=5) as reader:
        found = [f.timestamp_ms for f in reader.frames() if cuts.is_cut(f.pixels)]
    for shot_change in (801, 2803, 7207):
        assert shot_change in found, found
    assert len(found) <= 6, found
