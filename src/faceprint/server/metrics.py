"""Prometheus metrics in the text exposition format (no client library needed).

Counters are per server process: with `--workers N` each scrape reads the worker that answers it.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by operation and outcome, latency histograms, faces indexed, in-flight requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)  # (api, operation, code)
        self.latency: dict[str, list[int]] = {}  # operation -> bucket counts (+Inf last)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.faces_indexed = 0
        self.inflight = 0

    def observe(self, api: str, operation: str, code: str, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(api, operation, code)] += 1
            counts = self.latency.setdefault(operation, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum[operation] += seconds

    def add_faces_indexed(self, count: int) -> None:
        with self._lock:
            self.faces_indexed += count

    def render(self) -> str:
        """The exposition text."""
        with self._lock:
            out = [
                "# HELP faceprint_requests_total Requests answered, by API, operation and result code.",
                "# TYPE faceprint_requests_total counter",
            ]
            for (api, op, code), n in sorted(self.requests.items()):
                labels = f'api="{_label(api)}",operation="{_label(op)}",code="{_label(code)}"'
                out.append(f"faceprint_requests_total{{{labels}}} {n}")
            out += [
                "# HELP faceprint_request_duration_seconds Request latency in the server, by operation.",
                "# TYPE faceprint_request_duration_seconds histogram",
            ]
            for op, counts in sorted(self.latency.items()):
                cumulative = 0
                for bound, n in zip([*BUCKETS, float("inf")], counts, strict=True):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    out.append(
                        f'faceprint_request_duration_seconds_bucket{{operation="{_label(op)}",le="{le}"}} '
                        f"{cumulative}"
                    )
                out.append(
                    f'faceprint_request_duration_seconds_sum{{operation="{_label(op)}"}} '
                    f"{self.latency_sum[op]:.6f}"
                )
                out.append(
                    f'faceprint_request_duration_seconds_count{{operation="{_label(op)}"}} {cumulative}'
                )
            out += [
                "# HELP faceprint_faces_indexed_total Faces added to collections by IndexFaces.",
                "# TYPE faceprint_faces_indexed_total counter",
                f"faceprint_faces_indexed_total {self.faces_indexed}",
                "# HELP faceprint_inflight_requests Requests being processed.",
                "# TYPE faceprint_inflight_requests gauge",
                f"faceprint_inflight_requests {self.inflight}",
                "# HELP faceprint_process_start_time_seconds Start time of this server process.",
                "# TYPE faceprint_process_start_time_seconds gauge",
                f'faceprint_process_start_time_seconds{{pid="{os.getpid()}"}} {self.started:.3f}',
            ]
        return "\n".join(out) + "\n"
