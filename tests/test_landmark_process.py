"""dlib's 68-point model in a helper process (`faceprint.landmark_process`), as short commands run it: the
same points as in-process on real faces, one request for a crowd, a clean fallback when the helper dies,
and no helper left behind."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CROWD, EXAMPLES, LFW
from faceprint import weights
from faceprint.engine import FaceEngine
from faceprint.images import load_image
from faceprint.landmark_process import LandmarkProcess

IMAGES = [
    EXAMPLES / "two_people.jpg",
    LFW / "George_W_Bush" / "George_W_Bush_0001.jpg",
    CROWD / "retinaface_test_crowd.jpg",
]


@pytest.fixture(scope="module")
def helper():
    process = LandmarkProcess(weights.dlib_model_path(weights.SP68))
    yield process
    process.close()


def _faces(path):
    pixels = load_image(path).pixels
    engine = FaceEngine.shared()
    rects = [
        weights.dlib.rectangle(*(round(v) for v in (d.left, d.top, d.right, d.bottom)))
        for d in engine.detector.detect(pixels)
    ]
    return pixels, rects


def test_the_helper_gives_dlibs_own_points_on_real_faces(helper) -> None:
    in_process = weights.shape_predictor_68()
    total = 0
    for path in IMAGES:
        pixels, rects = _faces(path)
        assert rects, path
        answer = helper.predict(pixels, [(r.left(), r.top(), r.right(), r.bottom()) for r in rects])
        assert len(answer) == len(rects)  # a crowd's faces in one request
        for rect, points in zip(rects, answer, strict=True):
            expected = [(p.x, p.y) for p in in_process(pixels, rect).parts()]
            assert points == expected
        total += len(rects)
    assert total > 20  # the crowd image holds many faces
    assert helper.predict(pixels, []) == []


def test_the_engine_with_a_helper_computes_the_same_faces(helper, monkeypatch) -> None:
    path = IMAGES[0]
    reference = FaceEngine.shared().analyze(path)
    monkeypatch.setattr(weights, "_landmark_helper", helper)
    engine = FaceEngine(FaceEngine.shared().detector, model=FaceEngine.shared().model)
    assert engine._landmarks68 is weights._helper_landmarks_68
    faces = engine.analyze(path)
    assert [f.landmarks for f in faces] == [f.landmarks for f in reference]
    assert all(np.array_equal(a.embedding, b.embedding) for a, b in zip(faces, reference, strict=True))


def test_a_dead_helper_falls_back_to_the_model_in_this_process(monkeypatch) -> None:
    process = LandmarkProcess(weights.dlib_model_path(weights.SP68))
    process._proc.kill()
    process._proc.wait()
    monkeypatch.setattr(weights, "_landmark_helper", process)
    pixels, rects = _faces(IMAGES[1])
    shapes = weights._helper_landmarks_68(pixels, rects)
    assert weights._landmark_helper is None  # the next call goes straight to the in-process model
    expected = weights.shape_predictor_68()(pixels, rects[0])
    assert [(p.x, p.y) for p in shapes[0].parts()] == [(p.x, p.y) for p in expected.parts()]


def test_the_helper_exits_when_closed_and_reports_bad_requests(helper) -> None:
    with pytest.raises(RuntimeError, match="landmark helper process failed"):
        helper.predict(np.zeros((4, 4), np.float64), [(0, 0, 3, 3)])  # dlib refuses float64 pixels
    helper.close()  # loaded and idle: it exits on its own
    assert helper._proc.returncode == 0
    early = LandmarkProcess(weights.dlib_model_path(weights.SP68))
    early.close()  # still reading its model: killed, not waited for
    assert early._proc.returncode is not None


def test_the_helper_ends_with_a_killed_command(tmp_path) -> None:
    """A command killed with SIGKILL runs no exit handler: its helper must still go (its stdin closes)."""
    import os
    import subprocess
    import sys
    import time

    script = (
        "import os, signal, sys\n"
        "from faceprint import weights\n"
        "from faceprint.landmark_process import LandmarkProcess\n"
        "helper = LandmarkProcess(weights.dlib_model_path(weights.SP68))\n"
        "print(helper._proc.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -9
    pid = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 30  # it finishes reading its model, then sees end of input
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":  # exited, waiting for its (re-parented) reaper
                    return
        except FileNotFoundError:  # exited and reaped
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError("the landmark helper outlived its killed parent")


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (["index", "speed", "a.jpg"], True),
        (["index", "--json", "speed", "a.jpg"], True),
        (["search", "speed", "a.jpg"], True),
        (["search", "speed", "--face-id", "x"], False),
        (["search", "speed", "--face-id=x"], False),
        (["video", "search", "speed", "clip.mp4"], True),
        (["video", "detect", "clip.mp4"], False),
        (["collections", "list"], False),
        ([], False),
    ],
)
def test_the_entry_point_starts_the_helper_only_for_commands_that_need_it(args, starts, monkeypatch) -> None:
    from faceprint import landmark_process

    monkeypatch.setattr(landmark_process, "_early", None)
    landmark_process.start_for_command(args)
    helper = landmark_process.take_early()
    assert (helper is not None) == starts
    assert landmark_process.take_early() is None  # taken once
    if helper is not None:
        assert helper._proc.args[-1] == str(weights.dlib_model_path(weights.SP68))  # the 68-point model
        pixels, rects = _faces(IMAGES[1])
        box = (rects[0].left(), rects[0].top(), rects[0].right(), rects[0].bottom())
        assert len(helper.predict(pixels, [box])[0]) == 68
        helper.close()
