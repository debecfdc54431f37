"""The JSON record a Rekognition face-search stream processor writes to its Kinesis data stream.

One record per analysed frame that shows at least one searched face:
`{"InputInformation": {"KinesisVideo": {StreamArn, FragmentNumber, ServerTimestamp, ProducerTimestamp,
FrameOffsetInSeconds}}, "StreamProcessorInformation": {"Status"}, "FaceSearchResponse": [{"DetectedFace":
FaceDetail, "MatchedFaces": [FaceMatch]}]}`. Local sources have no Kinesis Video fragments, so a fragment
is each second of the processor's session: FragmentNumber counts them from 0, ProducerTimestamp is the
wall time (epoch seconds) the fragment began, and FrameOffsetInSeconds is the frame's offset in it, so
`ProducerTimestamp + FrameOffsetInSeconds` is when the frame was shown.
"""

from __future__ import annotations

import json
import math
import time


def face_search_response(detail: dict, matches: list[dict]) -> dict:
    """One element of FaceSearchResponse: the face in this frame and its track's FaceMatches."""
    return {"DetectedFace": detail, "MatchedFaces": matches}


def frame_record(
    stream_arn: str, session_start: float, frame_wall: float, faces: list[dict], status: str = "RUNNING"
) -> bytes:
    """The record of one frame (shown at `frame_wall`, epoch seconds) as UTF-8 JSON."""
    fragment = max(0, math.floor(frame_wall - session_start))
    producer = session_start + fragment
    document = {
        "InputInformation": {
            "KinesisVideo": {
                "StreamArn": stream_arn,
                "FragmentNumber": str(fragment),
                "ServerTimestamp": round(time.time(), 3),
                "ProducerTimestamp": round(producer, 3),
                "FrameOffsetInSeconds": round(frame_wall - producer, 3),
            }
        },
        "StreamProcessorInformation": {"Status": status},
        "FaceSearchResponse": faces,
    }
    return json.dumps(document, separators=(",", ":")).encode()
