"""dlib's 68-point landmark model served by a helper process, for short-lived commands.

Loading that model takes 0.7-1.2 s and holds the GIL throughout, so inside one process nothing overlaps it.
A command that starts this helper first (`start_for_command` from the entry point, else
`weights.preload_landmarks`) has the model load on the other core while it imports, loads the detector and
the embedder, and detects its first faces. The helper runs the same dlib model on the same pixels and sends
the integer points back; they are rebuilt as `dlib.full_object_detection`, so the landmarks, the chips cut
on them and the vectors are unchanged (tests/test_landmark_process.py compares them).

Protocol: pickled `(pixels, boxes)` requests on the helper's stdin, pickled lists of points per box (or an
error text) on its stdout. The helper exits when its stdin closes, so a parent that dies takes it along.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the helper itself imports only dlib: its start is on the command's critical path
    import numpy as np

Box = tuple[int, int, int, int]  # left, top, right, bottom
# Commands whose images need the 68-point model, as their leading words on the command line; `search` only
# with an image (not with --face-id).
COMMANDS = (("index",), ("search",), ("video", "search"))
_early: LandmarkProcess | None = None


class LandmarkProcess:
    """`predict(pixels, boxes)` answered by a helper process that loaded dlib's shape model `model_path`."""

    def __init__(self, model_path: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "faceprint.landmark_process", str(model_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self._lock = threading.Lock()
        atexit.register(self.close)

    def predict(self, pixels: np.ndarray, boxes: list[Box]) -> list[list[tuple[int, int]]]:
        """The landmark points of the faces in `boxes` of RGB uint8 `pixels`, a list of points per box."""
        import numpy as np

        if not boxes:
            return []
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            try:
                pickle.dump((np.ascontiguousarray(pixels), boxes), self._proc.stdin, protocol=5)
                self._proc.stdin.flush()
                answer = pickle.load(self._proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                raise RuntimeError(f"the landmark helper process stopped ({exc})") from exc
        if isinstance(answer, str):
            raise RuntimeError(f"the landmark helper process failed: {answer}")
        return answer

    def close(self) -> None:
        """Close the helper's stdin, so that it exits; one still reading its model (a command that ended
        before its first face) is killed instead of waited for (it holds no data)."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=0.5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()


def start_for_command(args: list[str]) -> None:
    """Start the helper now when the command line `args` runs a command of `COMMANDS`; the command's
    `weights.preload_landmarks` then takes it (`take_early`). Nothing happens for any other command."""
    global _early
    words = [a for a in args if not a.startswith("-")]
    if any(a.startswith("--face-id") for a in args) or not any(tuple(words[: len(c)]) == c for c in COMMANDS):
        return
    from faceprint.dlib_files import SP68, dlib_model_path

    try:
        _early = LandmarkProcess(dlib_model_path(SP68))
    except OSError:  # no model file, or no process to be had: the command starts one, or reads it itself
        _early = None


def take_early() -> LandmarkProcess | None:
    """The helper `start_for_command` started, once (None when it started none)."""
    global _early
    helper, _early = _early, None
    return helper


def serve(model_path: str) -> None:
    """The helper's loop: load the model, then answer requests until stdin closes."""
    import dlib

    requests, answers = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the answers
    predictor = dlib.shape_predictor(model_path)
    while True:
        try:
            pixels, boxes = pickle.load(requests)
        except EOFError:
            return
        try:
            shapes = [predictor(pixels, dlib.rectangle(*box)) for box in boxes]
            answer: object = [[(p.x, p.y) for p in shape.parts()] for shape in shapes]
        except Exception as exc:  # sent back, and raised in the parent
            answer = f"{type(exc).__name__}: {exc}"
        pickle.dump(answer, answers, protocol=5)
        answers.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
