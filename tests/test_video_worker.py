"""Durable video jobs: a worker process killed with SIGKILL mid-job never leaves the job IN_PROGRESS.

The worker is a real separate process (`python -m faceprint.video.worker`) sharing the home folder's SQLite
job store; it is killed while it processes the Hamilton clip, then a new worker re-runs the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceprint.config import data_dir
from faceprint.video.jobs import JobStore
from faceprint.video.service import VideoJobs

HAMILTON = data_dir() / "video" / "face_recognition_short_hamilton_clip.mp4"


def _worker(home: Path, *args: str, **env: str) -> subprocess.Popen:
    environ = {**os.environ, "FACEPRINT_HOME": str(home), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "faceprint.video.worker", "--home", str(home), *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_mid_job(home: Path, job_id: str) -> None:
    """Start a worker, wait until it has processed part of the job, and SIGKILL it."""
    store = JobStore(home)
    proc = _worker(home)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = store.get(job_id)
            assert job is not None and job.status == "IN_PROGRESS", job
            if job.owner is not None and store.count_faces(job_id) > 0:
                break  # claimed, and results are being written
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the worker never started the job")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        store.close()
    assert proc.returncode == -signal.SIGKILL


def _wait_done(home: Path, job_id: str, proc: subprocess.Popen) -> dict:
    with VideoJobs(home) as jobs:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            response = jobs.get_face_detection(JobId=job_id, MaxResults=1000)
            if response["JobStatus"] != "IN_PROGRESS":
                return response
            assert proc.poll() is None or proc.returncode == 0, (
                proc.stderr.read().decode() if proc.stderr else ""
            )
            time.sleep(0.1)
    pytest.fail("job still IN_PROGRESS")


@pytest.mark.slow
def test_killed_worker_job_is_rerun_to_success(tmp_path: Path) -> None:
    with VideoJobs(tmp_path) as jobs:
        job_id = jobs.start_face_detection(Video=str(HAMILTON))["JobId"]
    _kill_mid_job(tmp_path, job_id)
    store = JobStore(tmp_path)
    killed = store.get(job_id)
    assert killed.status == "IN_PROGRESS" and killed.attempts == 1 and store.count_faces(job_id) > 0
    store.close()
    proc = _worker(tmp_path, "--once")  # the restarted worker sees the dead owner and takes the job over
    try:
        response = _wait_done(tmp_path, job_id, proc)
    finally:
        proc.wait(timeout=120)
    assert response["JobStatus"] == "SUCCEEDED", response.get("StatusMessage")
    stamps = [f["Timestamp"] for f in response["Faces"]]
    assert stamps == sorted(stamps) and len(stamps) == len(response["Faces"])
    store = JobStore(tmp_path)
    assert store.get(job_id).attempts == 2
    assert store.count_faces(job_id) == len(response["Faces"])  # no rows left over from the killed run
    store.close()


@pytest.mark.slow
def test_job_killed_too_often_fails_with_a_message(tmp_path: Path) -> None:
    with VideoJobs(tmp_path) as jobs:
        job_id = jobs.start_face_detection(Video=str(HAMILTON), JobTag="kill-me")["JobId"]
    _kill_mid_job(tmp_path, job_id)
    proc = _worker(tmp_path, "--once", FACEPRINT_VIDEO_MAX_ATTEMPTS="1")
    try:
        response = _wait_done(tmp_path, job_id, proc)
    finally:
        proc.wait(timeout=120)
    assert response["JobStatus"] == "FAILED"
    assert "stopped 1 time(s)" in response["StatusMessage"]
    assert response["JobTag"] == "kill-me" and "Faces" not in response
