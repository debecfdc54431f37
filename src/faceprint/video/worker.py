"""The video job worker: claims jobs from the SQLite store and runs the pipeline on them.

Run it as a thread of the server (`Worker.start`) or as its own process (`faceprint video worker`, or
`python -m faceprint.video.worker`). While a job runs, a heartbeat thread renews its lease and records
progress; a worker that dies leaves a lease that expires (or an owner pid that is gone), so the next
worker re-runs the job, up to the store's `max_attempts`, after which the job is FAILED with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from faceprint.config import home_dir
from faceprint.errors import FaceprintError
from faceprint.video.jobs import (
    DEFAULT_LEASE_SECONDS,
    FACE_SEARCH,
    Job,
    JobStore,
    LeaseLostError,
    worker_identity,
)
from faceprint.video.matcher import CollectionMatcher
from faceprint.video.pipeline import Analysis, FaceRecord, PipelineConfig, analyze, person_vectors

log = logging.getLogger(__name__)
FLUSH_ROWS = 500  # face rows are written in one transaction when this many wait ...
FLUSH_SECONDS = 1.0  # ... or this long after the last write
ProgressFn = Callable[[float], None]


def lease_seconds() -> float:
    return float(os.environ.get("FACEPRINT_VIDEO_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


class _Heartbeat:
    """Renews a job's lease every third of the lease time, with the latest progress, until stopped."""

    def __init__(self, store: JobStore, job_id: str, owner: str, lease: float) -> None:
        self.store, self.job_id, self.owner, self.lease = store, job_id, owner, lease
        self.progress = 0.0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"faceprint-lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.store.heartbeat(self.job_id, self.owner, self.lease, self.progress)
            except LeaseLostError:
                self.lost.set()
                return
            except Exception:  # a busy database must not kill the heartbeat
                log.exception("lease renewal of job %s failed", self.job_id)


def run_job(
    store: JobStore,
    job: Job,
    owner: str,
    home: Path,
    config: PipelineConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Run one claimed job to SUCCEEDED or FAILED (LeaseLostError if another worker took it over)."""
    lease = lease_seconds()
    params = job.params
    config = config or PipelineConfig()
    if params.get("SampleFps"):
        config.sample_fps = float(params["SampleFps"])
    matcher = None
    try:
        if job.kind == FACE_SEARCH:
            matcher = CollectionMatcher(home, params["CollectionId"], params.get("FaceMatchThreshold"))
            config = dataclasses.replace(config, model=matcher.model.name)  # the collection's model
        with _Heartbeat(store, job.job_id, owner, lease) as beat:
            buffer: list[tuple[int, int, str]] = []
            written = 0
            flushed = time.monotonic()

            def flush() -> None:
                nonlocal written, buffer, flushed
                if buffer:
                    store.add_faces(job.job_id, owner, written, buffer)
                    written += len(buffer)
                    buffer = []
                flushed = time.monotonic()

            def on_records(records: list[FaceRecord]) -> None:
                if beat.lost.is_set():
                    raise LeaseLostError(job.job_id)
                buffer.extend((r.timestamp_ms, r.track_id, json.dumps(r.detail)) for r in records)
                if len(buffer) >= FLUSH_ROWS or time.monotonic() - flushed >= FLUSH_SECONDS:
                    flush()

            def on_progress(share: float) -> None:
                beat.progress = share
                if progress is not None:
                    progress(share)

            analysis = analyze(
                job.source, config, embed=job.kind == FACE_SEARCH, on_records=on_records, progress=on_progress
            )
            flush()
            if matcher is not None:
                found = _search(analysis, matcher, matcher.model.version)
                store.succeed(job.job_id, owner, analysis.info.metadata(), analysis.persons, found)
            else:
                store.succeed(job.job_id, owner, analysis.info.metadata())
        log.info(
            "job %s: %s frames, %s faces, %s tracks in %.1f s",
            job.job_id,
            analysis.frames,
            analysis.faces,
            len(analysis.tracks),
            analysis.seconds,
        )
    except LeaseLostError:
        log.warning("job %s was taken over by another worker; dropping this run", job.job_id)
        raise
    except FaceprintError as exc:
        store.fail(job.job_id, owner, exc.message)
    except Exception as exc:
        log.exception("job %s failed", job.job_id)
        store.fail(job.job_id, owner, f"internal error: {type(exc).__name__}")  # details in the log only
    finally:
        if matcher is not None:
            matcher.close()


def _search(analysis: Analysis, matcher: CollectionMatcher, model_version: str) -> dict[int, list[dict]]:
    """FaceMatches of each person (vectors of face model `model_version`): one search per Person Index."""
    vectors = person_vectors(analysis.tracks, analysis.persons)
    return {index: matcher.matches(vector, model_version) for index, vector in vectors.items()}


class Worker:
    """Claims and runs video jobs of one home folder, one at a time."""

    def __init__(
        self,
        home: Path | None = None,
        config: PipelineConfig | None = None,
        poll_seconds: float = 0.5,
        store: JobStore | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else home_dir()
        self.store = store or JobStore(self.home)
        self.config = config
        self.poll_seconds = poll_seconds
        self.owner = worker_identity()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(
        self, job_id: str | None = None, progress: Callable[[float], None] | None = None
    ) -> str | None:
        """Claim and run one job (the oldest claimable, or `job_id`); returns its id, None when idle."""
        job = self.store.claim(self.owner, lease_seconds(), job_id=job_id)
        if job is None:
            return None
        with contextlib.suppress(LeaseLostError):  # another worker has it now
            run_job(self.store, job, self.owner, self.home, self.config, progress)
        return job.job_id

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run jobs until `stop` (or `self.stop()`) is set, polling the store when idle."""
        stop = stop or self._stop
        while not stop.is_set():
            try:
                if self.run_once() is not None:
                    continue
            except Exception:
                log.exception("video worker loop error")
            self.wake.wait(self.poll_seconds)
            self.wake.clear()

    def start(self) -> threading.Thread:
        """Run the worker loop in a daemon thread (the server's in-process worker)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run_forever, name="faceprint-video-worker", daemon=True
            )
            self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after the current job and wait up to `timeout` seconds."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def main(argv: list[str] | None = None) -> None:
    """`python -m faceprint.video.worker [--home DIR] [--once]`."""
    parser = argparse.ArgumentParser(description="faceprint video job worker")
    parser.add_argument("--home", type=Path, default=None, help="FACEPRINT_HOME (default: environment)")
    parser.add_argument("--once", action="store_true", help="run the claimable jobs, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(args.home)
    if args.once:
        while worker.run_once() is not None:
            pass
        return
    log.info("video worker %s on %s", worker.owner, worker.store.path)
    with contextlib.suppress(KeyboardInterrupt):
        worker.run_forever()


if __name__ == "__main__":
    main()
