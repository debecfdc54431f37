"""Per-frame face detection for video: full scans on keyframes, cheap re-detection around tracks between.

A full tile-pyramid scan of a frame costs 7 (360p) to 22 (1080p) BlazeFace inferences. Between keyframes
(every `keyframe_every`-th sample, every shot change, and whenever nothing is tracked), the faces being
tracked are re-detected in one single-window pass each, on the region around their last box; new faces are
picked up at the next keyframe, a fraction of a second later.
"""

from __future__ import annotations

import numpy as np

from faceprint.detectors.base import Detection, Detector, non_max_suppression

ROI_SPAN = 4.0  # a tracked face is looked for in a square this many face sizes wide around its last box
KEYFRAME_EVERY = 3  # samples between full scans (0.6 s at 5 samples a second)


class KeyframeDetector:
    """A `Detector` for successive video frames; call `prepare` before each `detect`."""

    name = "video"

    def __init__(self, full: Detector, single: Detector, keyframe_every: int = KEYFRAME_EVERY) -> None:
        self.full = full
        self.single = single
        self.keyframe_every = max(1, keyframe_every)
        self._hints: list[Detection] = []
        self._keyframe = True
        self.full_scans = 0
        self.region_scans = 0

    def prepare(self, tracked: list[Detection], sample_number: int, shot_changed: bool) -> None:
        """Tell the detector what is tracked now and whether this frame must be fully scanned."""
        self._hints = list(tracked)
        self._keyframe = shot_changed or not tracked or sample_number % self.keyframe_every == 0

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        if self._keyframe:
            self.full_scans += 1
            return self.full.detect(pixels)
        h, w = pixels.shape[:2]
        found: list[Detection] = []
        for box in self._hints:
            cx, cy = box.center
            half = ROI_SPAN * max(box.width, box.height) / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            self.region_scans += 1
            for det in self.single.detect(pixels[y0:y1, x0:x1]):
                found.append(
                    Detection(
                        det.left + x0,
                        det.top + y0,
                        det.right + x0,
                        det.bottom + y0,
                        score=det.score,
                        detector=det.detector,
                        keypoints=None if det.keypoints is None else det.keypoints + np.array([x0, y0]),
                    )
                )
        kept = non_max_suppression(found, 0.3)
        return sorted(kept, key=lambda d: d.area, reverse=True)
