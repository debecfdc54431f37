"""Face tracking across sampled frames (IoU association) and grouping of tracks into persons (embeddings).

A track is one continuous appearance of a face: detections in consecutive sampled frames are linked by
box overlap (Hungarian assignment on IoU, with a centre-distance fallback for fast motion at low sampling
rates). Each track keeps its best few aligned chips, so only those are embedded, and tracks whose
embeddings agree and that never appear in the same frame are the same person (one Person Index).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import dlib
import numpy as np

from faceprint.detectors.base import Detection, iou
from faceprint.engine import Face, unit_rows
from faceprint.similarity import distance_for_similarity

MIN_IOU = 0.2  # boxes of one face in consecutive samples overlap at least this much ...
MAX_CENTRE_SHIFT = 0.6  # ... or their centres are within this many face widths (fast motion)
MAX_SIZE_RATIO = 1.6  # and their sizes differ by at most this factor
MAX_GAP_MS = 1000  # a track ends after this long without a detection
BEST_CHIPS = 3  # chips embedded per track
SMALL_FACE = 64  # faces smaller than this (pixels) keep their frame region for a sharper re-cut chip
REGION_MARGIN = 1.6  # that region spans this many face widths on each side of the face centre
SAME_PERSON_DISTANCE = distance_for_similarity(92.7)  # tracks whose embeddings are this close: one person ...
MIN_GROUP_QUALITY = 0.3  # ... when both were seen well enough (profile and tiny faces embed poorly)


def face_region(pixels: np.ndarray, box: Detection, margin: float = REGION_MARGIN) -> np.ndarray:
    """A copy of the square region of `pixels` centred on `box`, `margin` face widths on each side."""
    cx, cy = box.center
    half = margin * max(box.width, box.height)
    h, w = pixels.shape[:2]
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
    return pixels[y0:y1, x0:x1].copy()


def frame_quality(face: Face) -> float:
    """How good a frame of a face is for recognition: confident, sharp, frontal and large scores high."""
    yaw, pitch = math.radians(face.pose.yaw), math.radians(face.pose.pitch)
    frontal = max(0.0, math.cos(yaw)) * max(0.0, math.cos(pitch))
    sharp = 0.5 + face.quality.sharpness / 200.0
    size = min(1.0, min(face.box.width, face.box.height) / 80.0)
    return face.confidence / 100.0 * frontal * sharp * size


# quality, sequence, chips (Face.views; None when not kept), the frame region of a small face
Sample = tuple[float, int, np.ndarray | None, np.ndarray | None]


@dataclass
class Track:
    """One continuous appearance of a face."""

    track_id: int
    first_ms: int
    last_ms: int
    box: Detection
    hits: int = 1
    quality: float = 0.0  # best frame_quality seen
    best: list[Sample] = field(default_factory=list, repr=False)  # min-heap of the best frames
    embedding: np.ndarray | None = field(default=None, repr=False)

    def offer(
        self,
        face: Face,
        seq: int,
        keep: int = BEST_CHIPS,
        pixels: np.ndarray | None = None,
        views: bool = True,
    ) -> None:
        """Keep `face` if it is among the `keep` best frames seen so far, with its chips when `views`; for a
        small face, also keep the frame region around it (from `pixels`) so that its chips can be re-cut
        from an enlarged copy."""
        score = frame_quality(face)
        self.quality = max(self.quality, score)
        if len(self.best) >= keep and score <= self.best[0][0]:
            return
        crop = None
        if pixels is not None and min(face.box.width, face.box.height) < SMALL_FACE:
            crop = face_region(pixels, face.box)
        item = (score, seq, face.views if views else None, crop)
        if len(self.best) < keep:
            heapq.heappush(self.best, item)
        else:
            heapq.heapreplace(self.best, item)

    def samples(self) -> list[Sample]:
        """The kept frames, best first."""
        return sorted(self.best, key=lambda x: -x[0])

    def overlaps(self, other: Track) -> bool:
        return self.first_ms <= other.last_ms and other.first_ms <= self.last_ms


def _link_score(a: Detection, b: Detection) -> float:
    """Association score of a track's last box `a` with a new box `b` (negative: not the same face)."""
    overlap = iou(a, b)
    if overlap >= MIN_IOU:
        return overlap
    wa, wb = max(a.width, 1.0), max(b.width, 1.0)
    if max(wa / wb, wb / wa) > MAX_SIZE_RATIO:
        return -1.0
    (ax, ay), (bx, by) = a.center, b.center
    shift = math.hypot(ax - bx, ay - by) / max(wa, wb)
    return 0.01 * (1.0 - shift / MAX_CENTRE_SHIFT) if shift < MAX_CENTRE_SHIFT else -1.0


def best_assignment(scores: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs, one per row or column, of highest total score: the Hungarian algorithm,
    dlib's (loaded already; scipy.optimize would cost a video command 0.4-0.8 s of imports)."""
    rows, cols = scores.shape
    side = max(rows, cols)
    square = np.zeros((side, side))
    square[:rows, :cols] = scores  # padding is never worth more than a real pair: same optimum as scipy's
    chosen = dlib.max_cost_assignment(dlib.matrix(square.tolist()))
    return [(r, c) for r, c in enumerate(chosen) if r < rows and c < cols]


class IouTracker:
    """Links the faces of successive sampled frames into tracks."""

    def __init__(
        self, max_gap_ms: int = MAX_GAP_MS, best_chips: int = BEST_CHIPS, keep_views: bool = True
    ) -> None:
        self.max_gap_ms = max_gap_ms
        self.best_chips = best_chips
        self.keep_views = (
            keep_views  # False: tracks rank their best frames but keep no chips (nothing to embed)
        )
        self.active: list[Track] = []
        self._ids = itertools.count()
        self._seq = itertools.count()

    def update(self, timestamp_ms: int, faces: list[Face], pixels: np.ndarray | None = None) -> list[Track]:
        """Assign each face of the frame at `timestamp_ms` to a track (new or continued), in order.
        `pixels` (the frame) lets tracks keep the regions of small faces for re-cutting."""
        self.active = [t for t in self.active if timestamp_ms - t.last_ms <= self.max_gap_ms]
        assigned: list[Track | None] = [None] * len(faces)
        if self.active and faces:
            scores = np.array([[_link_score(t.box, f.box) for f in faces] for t in self.active])
            for r, c in best_assignment(scores):
                if scores[r, c] > 0:
                    track = self.active[r]
                    track.box, track.last_ms, track.hits = faces[c].box, timestamp_ms, track.hits + 1
                    assigned[c] = track
        for i, face in enumerate(faces):
            if assigned[i] is None:
                track = Track(next(self._ids), timestamp_ms, timestamp_ms, face.box)
                self.active.append(track)
                assigned[i] = track
            assigned[i].offer(  # type: ignore[union-attr]
                face, next(self._seq), self.best_chips, pixels if self.keep_views else None, self.keep_views
            )
        return assigned  # type: ignore[return-value]

    def ended(self, timestamp_ms: int) -> list[Track]:
        """Tracks that can no longer continue at `timestamp_ms` (removed from the active set)."""
        done = [t for t in self.active if timestamp_ms - t.last_ms > self.max_gap_ms]
        self.active = [t for t in self.active if timestamp_ms - t.last_ms <= self.max_gap_ms]
        return done

    def cut(self) -> list[Track]:
        """End every track: the scene changed, so no face continues across this point."""
        return self.finish()

    def finish(self) -> list[Track]:
        """All tracks still active (the video is over)."""
        done, self.active = self.active, []
        return done


def group_persons(
    tracks: list[Track], max_distance: float = SAME_PERSON_DISTANCE, min_quality: float = MIN_GROUP_QUALITY
) -> dict[int, int]:
    """Person Index of each track: tracks in order of first appearance join the closest earlier person
    whose embedding is within `max_distance` and who is not on screen at the same time; else they start a
    new person. Only tracks seen at `min_quality` or better are grouped; the others stay alone.
    Indexes count from 0 in order of first appearance."""
    persons: list[tuple[list[Track], np.ndarray | None]] = []
    index: dict[int, int] = {}
    for track in sorted(tracks, key=lambda t: (t.first_ms, t.track_id)):
        best, best_d = None, max_distance
        if track.embedding is not None and track.quality >= min_quality:
            for p, (members, centre) in enumerate(persons):
                if centre is None or any(track.overlaps(m) or m.quality < min_quality for m in members):
                    continue
                d = float(np.linalg.norm(centre - track.embedding))
                if d < best_d:
                    best, best_d = p, d
        if best is None:
            persons.append(([track], track.embedding))
            index[track.track_id] = len(persons) - 1
        else:
            members, _ = persons[best]
            members.append(track)
            vectors = [m.embedding for m in members if m.embedding is not None]
            persons[best] = (members, unit_rows(np.mean(vectors, axis=0)))
            index[track.track_id] = best
    return index
