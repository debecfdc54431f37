"""`faceprint video detect|search|worker`: faces in stored video and live streams from the command line.

`detect` and `search` run a durable job of the home folder in the foreground (with a progress bar), then
print a timeline, or with `--json` the GetFaceDetection / GetFaceSearch response (all pages merged).
`search --live` prints matches as they happen on a camera or stream.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from faceprint.cli.common import cli_errors, print_json
from faceprint.config import home_dir

SAMPLE_FPS_ENV = "FACEPRINT_VIDEO_SAMPLE_FPS"
GAP_MS = 1000  # samples further apart than this start a new appearance in the timeline


def _clock(ms: int) -> str:
    seconds = ms / 1000.0
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def _config(fps: float | None) -> Any:
    from faceprint.video.pipeline import PipelineConfig

    config = PipelineConfig()
    if fps is not None:
        config.sample_fps = fps
    return config


def _run(jobs: Any, job_id: str, config: Any, quiet: bool) -> None:
    """Run the job here with a progress bar (or wait for the worker that already has it)."""
    from faceprint.video.worker import Worker

    worker = Worker(jobs.home, config=config, store=jobs.store)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("analysing video", total=1.0)
        ran = worker.run_once(job_id, progress=lambda share: bar.update(task, completed=share))
        while ran is None and jobs.is_running(job_id):  # another worker is on it
            job = jobs.job(job_id)
            bar.update(task, completed=job.progress if job else 0.0)
            time.sleep(0.3)
            ran = worker.run_once(job_id, progress=lambda share: bar.update(task, completed=share))


def _all_pages(fetch: Any, key: str, **params: Any) -> dict:
    """Call a Get* operation until NextToken runs out; one response with every item under `key`."""
    response = fetch(**params)
    items = list(response.get(key, []))
    while "NextToken" in response:
        response = fetch(**params, NextToken=response["NextToken"])
        items.extend(response.get(key, []))
    response.pop("NextToken", None)
    if response.get("JobStatus") == "SUCCEEDED":
        response[key] = items
    return response


def _runs(timestamps: list[int]) -> list[tuple[int, int]]:
    """Group sorted timestamps into (first, last) runs separated by more than GAP_MS."""
    runs: list[tuple[int, int]] = []
    for ts in timestamps:
        if runs and ts - runs[-1][1] <= GAP_MS:
            runs[-1] = (runs[-1][0], ts)
        else:
            runs.append((ts, ts))
    return runs


def _failed(response: dict) -> None:
    if response["JobStatus"] != "SUCCEEDED":
        click.echo(
            f"error: job {response['JobId']} {response['JobStatus']}: {response.get('StatusMessage', '')}",
            err=True,
        )
        raise SystemExit(2)


def detection_timeline(response: dict) -> Table:
    """How many faces are on screen, from when to when."""
    counts: dict[int, int] = {}
    for face in response["Faces"]:
        counts[face["Timestamp"]] = counts.get(face["Timestamp"], 0) + 1
    meta = response["VideoMetadata"]
    table = Table(
        title=f"{len(response['Faces'])} face detection(s) in {_clock(meta['DurationMillis'])} of video"
    )
    for col in ("from", "to", "faces on screen"):
        table.add_column(col, justify="right")
    segments: list[list[int]] = []
    for ts in sorted(counts):
        if segments and segments[-1][2] == counts[ts] and ts - segments[-1][1] <= GAP_MS:
            segments[-1][1] = ts
        else:
            segments.append([ts, ts, counts[ts]])
    for first, last, n in segments:
        table.add_row(_clock(first), _clock(last), str(n))
    return table


def _identity(match: dict) -> str:
    face = match["Face"]
    return face.get("ExternalImageId") or face.get("UserId") or face["FaceId"]


def search_timeline(response: dict) -> Table:
    """Who appears, from when to when, with the best match and its similarity."""
    people: dict[int, dict] = {}
    for item in response["Persons"]:
        person = people.setdefault(item["Person"]["Index"], {"times": [], "matches": item["FaceMatches"]})
        person["times"].append(item["Timestamp"])
    table = Table(title=f"{len(people)} person(s) tracked; matched ones first")
    for col in ("person", "appears", "match", "similarity", "false match rate"):
        table.add_column(col, justify="left" if col in ("appears", "match") else "right", overflow="fold")
    order = sorted(people.items(), key=lambda kv: (not kv[1]["matches"], min(kv[1]["times"])))
    for index, person in order:
        appears = ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in _runs(sorted(person["times"])))
        if person["matches"]:
            best = person["matches"][0]
            fmr = best.get("EstimatedFalseMatchRate")
            table.add_row(
                str(index),
                appears,
                _identity(best),
                f"{best['Similarity']:.1f}",
                f"{fmr:.1e}" if fmr is not None else "",
            )
        else:
            table.add_row(str(index), appears, "[dim]no match[/dim]", "", "")
    return table


@click.group("video")
def video_group() -> None:
    """Faces in video: detection and collection search in stored video, live search on streams."""


@video_group.command("detect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the GetFaceDetection response (all pages).")
@click.option(
    "--fps",
    type=click.FloatRange(0.1, 60),
    default=None,
    help=f"Frames sampled per second (env {SAMPLE_FPS_ENV}, default 5).",
)
@cli_errors
def detect_command(file: Path, as_json: bool, fps: float | None) -> None:
    """Detect faces in the video FILE (any format FFmpeg reads)."""
    from faceprint.video.service import VideoJobs

    config = _config(fps)
    with VideoJobs(home_dir(), config=config) as jobs:
        job_id = jobs.start_face_detection(Video=str(file))["JobId"]
        _run(jobs, job_id, config, quiet=as_json)
        response = _all_pages(jobs.get_face_detection, "Faces", JobId=job_id)
    if as_json:
        print_json(response)
        return
    _failed(response)
    Console().print(detection_timeline(response))


@video_group.command("search")
@click.argument("collection")
@click.argument("source")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the GetFaceSearch response (live: one PersonMatch per line).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    help="FaceMatchThreshold in percent (default: calibrated for the collection's size).",
)
@click.option(
    "--fps",
    type=click.FloatRange(0.1, 60),
    default=None,
    help=f"Frames sampled per second (env {SAMPLE_FPS_ENV}, default 5).",
)
@click.option(
    "--live",
    is_flag=True,
    help="SOURCE is a camera (/dev/video0, 0) or stream URL: print matches as they happen.",
)
@click.option(
    "--realtime/--no-realtime",
    default=True,
    show_default=True,
    help="Live: skip frames when behind the source.",
)
@click.option("--all-persons", is_flag=True, help="Live: also print persons without a match.")
@cli_errors
def search_command(
    collection: str,
    source: str,
    as_json: bool,
    threshold: float | None,
    fps: float | None,
    live: bool,
    realtime: bool,
    all_persons: bool,
) -> None:
    """Search COLLECTION for the faces of the video SOURCE: who appears, when, with what similarity."""
    from faceprint import weights

    weights.preload_landmarks()  # overlaps the imports and the other model loads
    config = _config(fps)
    if live:
        _live(collection, source, as_json, threshold, config, realtime, all_persons)
        return
    from faceprint.video.service import VideoJobs

    with VideoJobs(home_dir(), config=config) as jobs:
        job_id = jobs.start_face_search(Video=source, CollectionId=collection, FaceMatchThreshold=threshold)[
            "JobId"
        ]
        _run(jobs, job_id, config, quiet=as_json)
        response = _all_pages(jobs.get_face_search, "Persons", JobId=job_id)
    if as_json:
        print_json(response)
        return
    _failed(response)
    Console().print(search_timeline(response))


def _live(
    collection: str,
    source: str,
    as_json: bool,
    threshold: float | None,
    config: Any,
    realtime: bool,
    all_persons: bool,
) -> None:
    from faceprint.video.live import live_search

    console = Console()
    events = live_search(
        source, home_dir(), collection, threshold, config, realtime=realtime, only_matches=not all_persons
    )
    try:
        for event in events:
            if as_json:
                click.echo(json.dumps(event.person_match()), nl=True)
                continue
            if event.face_matches:
                best = event.face_matches[0]
                console.print(
                    f"{_clock(event.first_ms)}  person {event.person_index}: [bold]{_identity(best)}[/bold] "
                    f"similarity {best['Similarity']:.1f}"
                )
            else:
                console.print(f"{_clock(event.first_ms)}  person {event.person_index}: [dim]no match[/dim]")
    except KeyboardInterrupt:
        pass


@video_group.command("worker")
@click.option("--once", is_flag=True, help="Run the jobs waiting now, then exit.")
@cli_errors
def worker_command(once: bool) -> None:
    """Run video jobs of FACEPRINT_HOME (what a server queued) until stopped."""
    from faceprint.video.worker import main

    main(["--once"] if once else [])


def register(group: click.Group) -> None:
    """Add the `video` command group to the root group."""
    group.add_command(video_group)
