"""Face search on a live source (webcam, RTSP/HTTP stream, a file read as a stream), as it happens.

Frames are sampled, detected and tracked as for stored videos; a track is embedded and searched once,
as soon as it has `search_after` detections (or when it ends, if it never gets that many), and a
`LiveMatch` event is emitted for it right away, so a person is reported about `search_after / sample_fps`
seconds after they appear.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from faceprint.video.decode import VideoReader
from faceprint.video.matcher import CollectionMatcher
from faceprint.video.pipeline import FrameProcessor, PipelineConfig, video_engine
from faceprint.video.tracker import Track, group_persons

SEARCH_AFTER = 3  # detections of a track before it is searched
MAX_KNOWN_TRACKS = 500  # tracks remembered to give a returning person the same Person Index


@dataclass
class LiveMatch:
    """A tracked face that was searched: when it appeared, its Person Index and FaceMatches (maybe empty)."""

    timestamp_ms: int  # when the track was searched
    first_ms: int  # when the face appeared
    person_index: int
    face_detail: dict
    face_matches: list[dict]

    def person_match(self) -> dict:
        """The event in GetFaceSearch's PersonMatch shape."""
        return {
            "Timestamp": self.timestamp_ms,
            "Person": {
                "Index": self.person_index,
                "BoundingBox": self.face_detail["BoundingBox"],
                "Face": self.face_detail,
            },
            "FaceMatches": self.face_matches,
        }


def live_search(
    source: str | Path,
    home: Path,
    collection_id: str,
    threshold: float | None = None,
    config: PipelineConfig | None = None,
    realtime: bool = True,
    search_after: int = SEARCH_AFTER,
    only_matches: bool = False,
) -> Iterator[LiveMatch]:
    """Yield a LiveMatch for every track as soon as it is searched (only matched ones if `only_matches`).

    `realtime` drops frames that arrive while the previous one is still being processed (the normal
    mode for a camera); without it every sampled frame is processed, however long that takes.
    """
    config = config or PipelineConfig()
    with (
        CollectionMatcher(home, collection_id, threshold) as matcher,
        VideoReader(source, sample_fps=config.sample_fps, live=True, realtime=realtime) as reader,
    ):
        config = dataclasses.replace(config, model=matcher.model.name)  # embed with the collection's model
        processor = FrameProcessor(
            video_engine(config, reader.info), reader.info, config, embed=False, keep_chips=True
        )
        searched: set[int] = set()
        known: list[Track] = []
        latest: dict[int, dict] = {}

        def search(track: Track, now_ms: int) -> LiveMatch | None:
            searched.add(track.track_id)
            processor.embed_tracks([track])
            if track.embedding is None:
                return None
            known.append(track)
            del known[:-MAX_KNOWN_TRACKS]
            index = group_persons(known)[track.track_id]
            found = matcher.matches(track.embedding, processor.engine.model_version)
            if only_matches and not found:
                return None
            return LiveMatch(now_ms, track.first_ms, index, latest[track.track_id], found)

        for frame in reader.frames():
            for record, track in processor.process(frame):
                latest[track.track_id] = record.detail
                if track.track_id not in searched and track.hits >= search_after:
                    event = search(track, frame.timestamp_ms)
                    if event is not None:
                        yield event
            for track in processor.finished:  # tracks that ended before reaching `search_after`
                if track.track_id not in searched:
                    event = search(track, frame.timestamp_ms)
                    if event is not None:
                        yield event
                latest.pop(track.track_id, None)
            processor.finished.clear()
        for track in processor.tracker.finish():
            if track.track_id not in searched:
                event = search(track, track.last_ms)
                if event is not None:
                    yield event
