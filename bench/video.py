"""Video face search: processing time against each clip's duration, and against a per-frame baseline.

For both real clips (Hamilton, 9.2 s at 640x360; pedestrians, 4.2 s at 1080p) this runs a complete
StartFaceSearch job (decode, detect, track, embed each track's best frames, search once per person, store
the results in SQLite) with warm models, and reports `realtime` = clip duration / processing time (> 1 is
faster than real time; `realtime_cpu` uses the CPU time of this process, which other load on a shared
machine does not inflate). The baseline, measured in the same run on the same sampled frames, is the naive
video pipeline: detect every sampled frame, embed every face and search the collection for each face
(no tracking). `speedup` = baseline time / job time. `command_*`: `faceprint video search` as a whole
command (a new process: start-up, model loads, the job, the response), timed against the clip's duration,
with the people it finds (goal for the Hamilton clip: under half the duration, the same people).

    python bench/video.py [--fps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faceprint.collections.service import Collections
from faceprint.config import data_dir
from faceprint.video.decode import VideoReader
from faceprint.video.matcher import CollectionMatcher
from faceprint.video.pipeline import PipelineConfig, video_engine
from faceprint.video.service import VideoJobs
from faceprint.video.worker import Worker

CLIPS = ["face_recognition_short_hamilton_clip.mp4", "facenet_pytorch_video.mp4"]
ENROLL = ["lin-manuel-miranda.png", "alex-lacamoire.png", "obama.jpg", "biden.jpg"]
THRESHOLD = 80.0


def enroll(home: Path) -> None:
    examples = data_dir() / "known_identities" / "face_recognition_examples" / "examples"
    with Collections(home) as collections:
        collections.create_collection(CollectionId="bench")
        for name in ENROLL:
            collections.index_faces(
                CollectionId="bench", Image=examples / name, ExternalImageId=Path(name).stem
            )


def run_job(jobs: VideoJobs, home: Path, clip: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one face search job, start to last result page."""
    wall, cpu = time.perf_counter(), time.process_time()
    job_id = jobs.start_face_search(Video=str(clip), CollectionId="bench", FaceMatchThreshold=THRESHOLD)[
        "JobId"
    ]
    Worker(home, store=jobs.store).run_once(job_id)
    response = jobs.get_face_search(JobId=job_id)
    persons = list(response["Persons"])
    while "NextToken" in response:
        response = jobs.get_face_search(JobId=job_id, NextToken=response["NextToken"])
        persons += response["Persons"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    matched = sorted({m["Face"]["ExternalImageId"] for p in persons for m in p["FaceMatches"]})
    indexes = len({p["Person"]["Index"] for p in persons})
    return wall, cpu, {"entries": len(persons), "persons": indexes, "matched": matched}


def run_command(home: Path, clip: Path) -> tuple[float, list[str]]:
    """Wall seconds of `faceprint video search` on `clip` as a new process, and the people it matched."""
    exe = Path(sys.executable).with_name("faceprint")
    env = {**os.environ, "FACEPRINT_HOME": str(home)}
    cmd = [str(exe), "video", "search", "bench", str(clip), "--json", "--threshold", str(THRESHOLD)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    persons = json.loads(out.stdout)["Persons"]
    return wall, sorted({m["Face"]["ExternalImageId"] for p in persons for m in p["FaceMatches"]})


def run_baseline(home: Path, clip: Path, config: PipelineConfig) -> tuple[float, float, int]:
    """The naive pipeline: detect, embed and search every face of every sampled frame."""
    wall, cpu = time.perf_counter(), time.process_time()
    searches = 0
    with (
        CollectionMatcher(home, "bench", THRESHOLD) as matcher,
        VideoReader(clip, sample_fps=config.sample_fps) as reader,
    ):
        engine = video_engine(config, reader.info)
        for frame in reader.frames():
            faces = engine.analyze(frame.pixels, embed=True)
            for face in faces:
                matcher.matches(face.embedding, engine.model_version)
                searches += 1
    return time.perf_counter() - wall, time.process_time() - cpu, searches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=None, help="sampled frames per second (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    config = PipelineConfig()
    if args.fps:
        config.sample_fps = args.fps
        os.environ["FACEPRINT_VIDEO_SAMPLE_FPS"] = str(args.fps)
    results: dict = {
        "benchmark": "video",
        "sample_fps": config.sample_fps,
        "cpus": os.cpu_count(),
        "load_average_before": round(os.getloadavg()[0], 2),
        "clips": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        enroll(home)
        with VideoJobs(home, config=config) as jobs:
            for name in CLIPS:
                clip = data_dir() / "video" / name
                run_job(jobs, home, clip)  # warm-up: models loaded, caches filled
                wall, cpu, found = run_job(jobs, home, clip)
                base_wall, base_cpu, searches = run_baseline(home, clip, config)
                command_wall, command_matched = run_command(home, clip)
                with VideoReader(clip) as reader:
                    info = reader.info
                duration = (info.duration_ms or 0) / 1000.0
                row = {
                    "resolution": f"{info.width}x{info.height}",
                    "duration_s": round(duration, 3),
                    "job_wall_s": round(wall, 3),
                    "job_cpu_s": round(cpu, 3),
                    "realtime": round(duration / wall, 2),
                    "realtime_cpu": round(duration / cpu, 2),
                    "baseline_wall_s": round(base_wall, 3),
                    "baseline_cpu_s": round(base_cpu, 3),
                    "baseline_realtime": round(duration / base_wall, 2),
                    "speedup": round(base_wall / wall, 2),
                    "baseline_searches": searches,
                    "command_wall_s": round(command_wall, 3),
                    "command_share_of_duration": round(command_wall / duration, 3),
                    "command_matched": command_matched,
                    "command_same_people": command_matched == found["matched"],
                    **found,
                }
                results["clips"][name] = row
                print(
                    f"{name} ({row['resolution']}, {duration:.1f} s): job {wall:.2f} s ({cpu:.2f} s CPU): "
                    f"{row['realtime']:.2f}x real time; per-frame baseline {base_wall:.2f} s "
                    f"({row['baseline_realtime']:.2f}x real time, {searches} searches) -> speedup "
                    f"{row['speedup']:.2f}x; {found['persons']} person indexes, matched {found['matched']}; "
                    f"command {command_wall:.2f} s ({row['command_share_of_duration']:.2f} of "
                    f"the clip), matched {command_matched}",
                    file=sys.stderr if args.json else sys.stdout,
                )
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
