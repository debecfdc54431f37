"""Stream processor latency: from the frame in which a person first appears to the record naming them.

A StreamRunner plays the Hamilton clip (9.2 s, 640x360) at real-time pace as a registered stream and runs a
face-search processor on it, in this process, against a collection of Lin-Manuel Miranda and Alex Lacamoire
at faceprint's default threshold; a reader polls the output stream every 20 ms. First appearances come
from an offline StartFaceSearch of the same clip. The baseline, in the same run, is the same processor
searching a track only on its third detection (`video search --live`'s rule, and this module's before
tracks were searched on their first); `speedup` = baseline latency / latency.

    python bench/streams.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from faceprint.collections.service import Collections
from faceprint.config import data_dir
from faceprint.streams.kinesis import SHARD_ID
from faceprint.streams.runner import StreamRunner
from faceprint.streams.service import StreamProcessors
from faceprint.video.service import VideoJobs
from faceprint.video.worker import Worker

CLIP = data_dir() / "video" / "face_recognition_short_hamilton_clip.mp4"
PEOPLE = ["lin-manuel-miranda", "alex-lacamoire"]


def first_appearances(home: Path) -> dict[str, int]:
    with VideoJobs(home) as jobs:
        job_id = jobs.start_face_search(Video=str(CLIP), CollectionId="bench")["JobId"]
        Worker(home, store=jobs.store).run_once(job_id)
        persons = jobs.get_face_search(JobId=job_id)["Persons"]
    first: dict[str, int] = {}
    for person in persons:
        for match in person["FaceMatches"]:
            name = match["Face"]["ExternalImageId"]
            first[name] = min(first.get(name, 10**9), person["Timestamp"])
    return first


def latency(home: Path, name: str, first_search_after: int, first: dict[str, int]) -> dict[str, float]:
    """Seconds from first appearance to the record naming each person, for one processor run."""
    service = StreamProcessors(home, sources={"stage": str(CLIP)})
    service.create_stream_processor(
        Input={"KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/stage/0"}},
        Output={"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"}},
        Name=name,
        Settings={"FaceSearch": {"CollectionId": "bench"}},
        RoleArn="arn:aws:iam::000000000000:role/bench",
    )
    runner = StreamRunner(home, service.sources, store=service.store, first_search_after=first_search_after)
    reader = service.output_streams()
    it = reader.get_shard_iterator(StreamName=name, ShardId=SHARD_ID, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    service.start_stream_processor(Name=name)
    runner.start()
    seen: dict[str, float] = {}
    start: float | None = None
    deadline = time.monotonic() + 60
    while set(seen) != set(PEOPLE) and time.monotonic() < deadline:
        page = reader.get_records(ShardIterator=it)
        now, it = time.time(), page["NextShardIterator"]
        for record in page["Records"]:
            document = json.loads(record["Data"])
            video = document["InputInformation"]["KinesisVideo"]
            start = start or video["ProducerTimestamp"] - int(video["FragmentNumber"])
            for face in document["FaceSearchResponse"]:
                for match in face["MatchedFaces"]:
                    seen.setdefault(match["Face"]["ExternalImageId"], now)
        time.sleep(0.02)
    service.stop_stream_processor(Name=name)
    runner.stop()
    service.close()
    if start is None or set(seen) != set(PEOPLE):
        raise SystemExit(f"{name}: named {sorted(seen)} only")
    return {person: round(seen[person] - (start + first[person] / 1000.0), 3) for person in PEOPLE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        examples = data_dir() / "known_identities" / "face_recognition_examples" / "examples"
        with Collections(home) as collections:
            collections.create_collection(CollectionId="bench")
            for person in PEOPLE:
                collections.index_faces(
                    CollectionId="bench", Image=examples / f"{person}.png", ExternalImageId=person
                )
        first = first_appearances(home)
        measured = latency(home, "first-detection", 1, first)
        baseline = latency(home, "third-detection", 3, first)
    worst, worst_baseline = max(measured.values()), max(baseline.values())
    result = {
        "bench": "streams",
        "first_appearance_ms": first,
        "latency_s": measured,
        "baseline_latency_s": baseline,
        "speedup": round(worst_baseline / worst, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for person in PEOPLE:
            print(
                f"{person:20s} appears at {first[person]:5d} ms: named after {measured[person]:.2f} s "
                f"(baseline {baseline[person]:.2f} s)"
            )
        print(f"speedup {result['speedup']}x; load {result['load_before']} -> {result['load_after']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
