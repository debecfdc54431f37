"""The video pipeline: sample frames, detect faces, track them, embed each track's best frames, group persons.

Speed comes from doing the expensive steps once per track instead of once per frame: every sampled frame
is detected (with landmarks, pose and quality, which every reported face needs), but only the
`best_chips` best frames of each track are embedded, in batches, and a face search runs once per person.
Closed tracks are embedded in a thread while the frames after them are decoded and detected.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from faceprint.config import default_model
from faceprint.detectors.base import Detector
from faceprint.engine import MAX_FACES, FaceEngine, unit_rows
from faceprint.rekognition import face_detail
from faceprint.video.decode import Frame, VideoInfo, VideoReader
from faceprint.video.detection import KEYFRAME_EVERY, KeyframeDetector
from faceprint.video.tracker import BEST_CHIPS, MAX_GAP_MS, REGION_MARGIN, IouTracker, Track, group_persons

DEFAULT_SAMPLE_FPS = 5.0
SAMPLE_FPS_ENV = "FACEPRINT_VIDEO_SAMPLE_FPS"
EMBED_BATCH = 32
UPSCALE_TO = 100.0  # small faces are re-cut from their region enlarged to about this many pixels ...
MAX_UPSCALE = 4.0  # ... by at most this factor
VIDEO_LEVEL_STEP = 2.0  # pyramid step of the per-frame detector: half the levels of the still-image default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class PipelineConfig:
    """How a video is analysed. `sample_fps` defaults to `FACEPRINT_VIDEO_SAMPLE_FPS` (else 5)."""

    sample_fps: float = field(default_factory=lambda: _env_float(SAMPLE_FPS_ENV, DEFAULT_SAMPLE_FPS))
    detector: str = "video"  # "video": BlazeFace sized to the resolution; else a `get_detector` name
    min_face_size: float | None = None  # pixels; None: 40 px at 1080p, scaled with the frame (>= 20)
    best_chips: int = BEST_CHIPS
    max_gap_ms: int = MAX_GAP_MS
    max_faces: int = MAX_FACES
    keyframe_every: int = KEYFRAME_EVERY  # full detection scan every n-th sample (1: every sample)
    # face model that embeds the tracks: a searched collection's, else the default (`FACEPRINT_MODEL`)
    model: str = field(default_factory=default_model)


@dataclass
class FaceRecord:
    """One face in one sampled frame: when, which track, and its Rekognition FaceDetail."""

    timestamp_ms: int
    track_id: int
    detail: dict


@dataclass
class Analysis:
    """What the pipeline found in a whole video."""

    info: VideoInfo
    tracks: list[Track]
    persons: dict[int, int]  # track id -> Person Index (only when embeddings were computed)
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0


def auto_min_face_size(width: int, height: int) -> float:
    """Rekognition's guideline (a face of 40 px at 1920x1080) scaled to the frame, at least 20 px."""
    return max(20.0, 40.0 * min(width, height) / 1080.0)


def video_detector(config: PipelineConfig, info: VideoInfo) -> Detector:
    """The per-frame detector for this video: BlazeFace tiles down to the smallest face worth reporting on
    keyframes, single passes around tracked faces in between (see `KeyframeDetector`)."""
    from faceprint.detectors import get_detector, make_detector

    if config.detector != "video":
        return get_detector(config.detector)
    min_face = config.min_face_size or auto_min_face_size(info.width, info.height)
    full = make_detector("blazeface", min_face_size=min_face, level_step=VIDEO_LEVEL_STEP)
    if config.keyframe_every <= 1:
        return full
    single = make_detector("blazeface", min_face_size=min_face, tiling=False)
    return KeyframeDetector(full, single, config.keyframe_every)


def video_engine(config: PipelineConfig, info: VideoInfo) -> FaceEngine:
    """A FaceEngine with this video's detector (it keeps per-video state) and the configured face model."""
    return FaceEngine(detector=video_detector(config, info), model=config.model)


_RECUT: list[FaceEngine] = []


def _recut_engine() -> FaceEngine:
    """Single-pass BlazeFace engine for enlarged face regions (the face fills a third of the region)."""
    if not _RECUT:
        from faceprint.detectors import make_detector

        _RECUT.append(FaceEngine(detector=make_detector("blazeface", tiling=False), embedder="auto"))
    return _RECUT[0]


class CutDetector:
    """Scene cuts between successive sampled frames, from the change of their grey-level histograms."""

    BINS = 32
    CUT = 0.15  # half the L1 distance of normalised histograms: above this the shot changed ...
    SOFT_CUT, MOTION = 0.08, 25.0  # ... or above this with a large mean pixel change

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def is_cut(self, pixels: np.ndarray) -> bool:
        small = cv2.resize(pixels, (64, 36), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        hist = np.bincount((grey // (256 // self.BINS)).ravel(), minlength=self.BINS) / grey.size
        prev, self._prev = self._prev, (grey.astype(np.float32), hist)
        if prev is None:
            return False
        change = 0.5 * float(np.abs(hist - prev[1]).sum())
        motion = float(np.abs(grey - prev[0]).mean())
        return change > self.CUT or (change > self.SOFT_CUT and motion > self.MOTION)


class FrameProcessor:
    """Detects and tracks the faces of successive frames; embeds tracks' best chips when asked."""

    def __init__(
        self,
        engine: FaceEngine,
        info: VideoInfo,
        config: PipelineConfig,
        embed: bool,
        keep_chips: bool = False,
    ) -> None:
        self.engine = engine
        self.keep_chips = keep_chips
        self.info = info
        self.config = config
        self.embed = embed
        self.tracker = IouTracker(
            max_gap_ms=config.max_gap_ms, best_chips=config.best_chips, keep_views=embed or keep_chips
        )
        self.cuts = CutDetector()
        self.finished: list[Track] = []
        self._to_embed: list[Track] = []
        self._embedding: list[Future] = []
        self._embedder_thread: ThreadPoolExecutor | None = None
        self.frames = 0
        self.faces = 0

    def process(self, frame: Frame) -> list[tuple[FaceRecord, Track]]:
        """Detect, describe and track the faces of one frame."""
        shot_changed = self.cuts.is_cut(frame.pixels)
        if shot_changed:
            self._close(self.tracker.cut())
        self._close(self.tracker.ended(frame.timestamp_ms))
        if isinstance(self.engine.detector, KeyframeDetector):
            self.engine.detector.prepare([t.box for t in self.tracker.active], self.frames, shot_changed)
        faces = self.engine.detect(frame.pixels, max_faces=self.config.max_faces)
        tracks = self.tracker.update(frame.timestamp_ms, faces, frame.pixels)
        self.frames += 1
        self.faces += len(faces)
        w, h = self.info.width, self.info.height
        return [
            (FaceRecord(frame.timestamp_ms, track.track_id, face_detail(face, w, h)), track)
            for face, track in zip(faces, tracks, strict=True)
        ]

    def _close(self, tracks: list[Track]) -> None:
        self.finished.extend(tracks)
        if self.embed:
            self._to_embed.extend(tracks)
            if sum(len(t.best) for t in self._to_embed) >= EMBED_BATCH:
                self._embed_in_background(self._to_embed)
                self._to_embed = []
        elif not self.keep_chips:
            for track in tracks:
                track.best = []  # chips are only needed for embedding

    def _embed_in_background(self, tracks: list[Track]) -> None:
        """Embed closed tracks in a thread while this one goes on decoding and detecting the next frames
        (a closed track is never touched by the tracker again)."""
        if self._embedder_thread is None:
            self._embedder_thread = ThreadPoolExecutor(1, thread_name_prefix="faceprint-video-embed")
        self._embedding.append(self._embedder_thread.submit(self.embed_tracks, tracks))

    def _wait_embedded(self) -> None:
        for future in self._embedding:
            future.result()
        self._embedding = []
        if self._embedder_thread is not None:
            self._embedder_thread.shutdown()
            self._embedder_thread = None

    def embed_tracks(self, tracks: list[Track]) -> None:
        """Embed the kept frames of `tracks` in one batch; a track's embedding is the unit-length mean of
        its frames' descriptors."""
        todo = [t for t in tracks if t.best]
        if not todo:
            return
        views = [self._views(v, region) for t in todo for _, _, v, region in t.samples()]
        vectors = self.engine.describe(np.stack(views))
        start = 0
        for track in todo:
            n = len(track.best)
            track.embedding = unit_rows(vectors[start : start + n].mean(axis=0))
            start += n
            track.best = []

    def _views(self, views: np.ndarray, region: np.ndarray | None) -> np.ndarray:
        """The chips of a small face re-cut from its region enlarged (bicubic) to ~UPSCALE_TO pixels a face:
        landmarks found on the enlarged face align the chip better (+2 to +3 Similarity measured on the
        25 px faces of the Hamilton clip). Falls back to the frame's chips when no face is found again."""
        if region is None:
            return views
        face_px = min(region.shape[:2]) / (2 * REGION_MARGIN)
        scale = min(MAX_UPSCALE, UPSCALE_TO / max(face_px, 1.0))
        if scale <= 1.0:
            return views
        big = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        if min(big.shape[:2]) < 80:  # the engine's minimum image side
            return views
        faces = _recut_engine().with_model(self.engine.model).detect(big, max_faces=3)
        if not faces:
            return views
        cy, cx = big.shape[0] / 2, big.shape[1] / 2
        best = min(faces, key=lambda f: (f.box.center[0] - cx) ** 2 + (f.box.center[1] - cy) ** 2)
        return best.views

    def finish(self) -> list[Track]:
        """Close every remaining track (embedding them if asked); all tracks of the video, by id."""
        self._close(self.tracker.finish())
        if self.embed:
            self.embed_tracks(self._to_embed)
            self._to_embed = []
            self._wait_embedded()
        return sorted(self.finished, key=lambda t: t.track_id)


def analyze(
    source: str | Path,
    config: PipelineConfig | None = None,
    *,
    embed: bool,
    on_records: Callable[[list[FaceRecord]], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> Analysis:
    """Run the pipeline over a stored video; records of each frame go to `on_records` as they are made.

    `progress` receives the share of the video done (0-1) after each sampled frame.
    """
    config = config or PipelineConfig()
    started = time.perf_counter()
    with VideoReader(source, sample_fps=config.sample_fps, live=False) as reader:
        info = reader.info
        processor = FrameProcessor(video_engine(config, info), info, config, embed)
        duration = max(1, info.duration_ms or 1)
        for frame in reader.frames():
            records = [record for record, _ in processor.process(frame)]
            if on_records is not None and records:
                on_records(records)
            if progress is not None:
                progress(min(1.0, (frame.timestamp_ms + 1000.0 / max(info.frame_rate, 1.0)) / duration))
    tracks = processor.finish()
    persons = group_persons(tracks) if embed else {}
    if progress is not None:
        progress(1.0)
    return Analysis(
        info=info,
        tracks=tracks,
        persons=persons,
        frames=processor.frames,
        faces=processor.faces,
        seconds=time.perf_counter() - started,
    )


def person_vectors(tracks: list[Track], persons: dict[int, int]) -> dict[int, np.ndarray]:
    """Mean embedding of each Person Index over its tracks."""
    groups: dict[int, list[np.ndarray]] = {}
    for track in tracks:
        if track.embedding is not None and track.track_id in persons:
            groups.setdefault(persons[track.track_id], []).append(track.embedding)
    return {index: np.mean(vectors, axis=0) for index, vectors in groups.items()}
