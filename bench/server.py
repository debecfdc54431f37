"""Server throughput: SearchFacesByImage and IndexFaces through `faceprint serve` (boto3, SigV4, JSON,
audit log) against the same operations called in-process, measured in the same run (interleaved windows,
so that load from other jobs on the machine hits both alike).

A gallery of LFW people (image _0001 of the first `--gallery` people with 2+ images) is indexed in-process;
probes are their _0002 images. The collection is then filled to `--faces` faces with stored vectors (random
unit vectors: an exact scan, as collections up to 50k faces use, costs the same whatever the values).
For each operation and concurrency (1, 16) the in-process baseline runs that many threads calling
`Collections`, and that many boto3 clients (one per thread) call the server, alternating in
`--slice`-second windows for `--duration` seconds each; only requests finished inside a window count.
IndexFaces indexes the probes into the same collection. Reported: requests/s, client-side p50/p99 latency,
CPU ms per request, errors, and server/in-process throughput ratio (goal: >= 0.85 at 16 clients, no errors).

    .venv/bin/python bench/server.py [--duration 12] [--clients 1,16] [--gallery 100] [--faces 10000]
        [--operations SearchFacesByImage,IndexFaces] [--workers 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceprint import config
from faceprint.collections.service import Collections
from faceprint.extras import MissingExtraError, require
from faceprint.server.launcher import start_server

try:
    boto3 = require("boto3", "bench", "bench/server.py's boto3 clients")
    Config = require("botocore.config", "bench", "bench/server.py's boto3 clients").Config
except MissingExtraError as exc:
    raise SystemExit(f"bench/server.py: {exc.message}") from None

GOAL_RATIO = 0.85
COLLECTION = "bench"


def lfw_pairs(n: int) -> list[tuple[str, bytes, bytes]]:
    """(person, gallery image bytes, probe image bytes) for the first `n` LFW people with 2+ images."""
    root = config.data_dir() / "lfw" / "lfw-deepfunneled"
    pairs = []
    for person in sorted(p for p in root.iterdir() if (p / f"{p.name}_0002.jpg").exists()):
        pairs.append(
            (
                person.name,
                (person / f"{person.name}_0001.jpg").read_bytes(),
                (person / f"{person.name}_0002.jpg").read_bytes(),
            )
        )
        if len(pairs) == n:
            break
    return pairs


class Tally:
    """Completions inside measurement windows, summed over rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.errors = 0
        self.first_error: str | None = None
        self.completed = 0  # including requests that finished after their window closed
        self.cpu_seconds = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies) * 1000
        return {
            "requests": int(lat.size),
            "rps": lat.size / self.seconds if self.seconds else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "max_ms": float(lat.max()) if lat.size else None,
            "errors": self.errors,
            "first_error": self.first_error,
            "cpu_ms_per_request": 1000 * self.cpu_seconds / self.completed if self.completed else None,
        }


CORE_METHODS = {"SearchFacesByImage": "search_faces_by_image", "IndexFaces": "index_faces"}
EXTRA: dict[str, dict[str, Any]] = {"SearchFacesByImage": {}, "IndexFaces": {"MaxFaces": 1}}


def fill(core: Collections, n: int, seed: int = 13) -> None:
    """Add `n` faces with random unit vectors to the collection (stored like IndexFaces stores faces)."""
    import uuid

    from faceprint.collections.port import ImageFaces, NewFace

    rng = np.random.default_rng(seed)
    version = core.engine.model_version
    for start in range(0, n, 1000):
        vectors = rng.standard_normal((min(1000, n - start), core.engine.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        images = [
            ImageFaces(
                COLLECTION,
                f"{start + i:064x}",
                str(uuid.uuid4()),
                f"filler-{start + i}",
                [
                    NewFace(
                        str(uuid.uuid4()),
                        (0.25, 0.25, 0.5, 0.5),
                        99.9,
                        50.0,
                        50.0,
                        (0.0, 0.0, 0.0),
                        v,
                        version,
                    )
                ],
            )
            for i, v in enumerate(vectors)
        ]
        core.store.add_images(images, 20_000_000)


def _row(op: str, n: int, b: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    return {
        "operation": op,
        "clients": n,
        "inprocess_rps": round(b["rps"], 2),
        "server_rps": round(v["rps"], 2),
        "ratio": round(v["rps"] / b["rps"], 3) if b["rps"] else None,
        "server_p50_ms": round(v["p50_ms"] or 0, 1),
        "server_p99_ms": round(v["p99_ms"] or 0, 1),
        "server_max_ms": round(v["max_ms"] or 0, 1),
        "inprocess_p50_ms": round(b["p50_ms"] or 0, 1),
        "inprocess_p99_ms": round(b["p99_ms"] or 0, 1),
        "server_requests": v["requests"],
        "inprocess_cpu_ms_per_req": round(b["cpu_ms_per_request"] or 0, 1),
        "server_cpu_ms_per_req": round(v["cpu_ms_per_request"] or 0, 1),
        "cpu_efficiency_ratio": round(b["cpu_ms_per_request"] / v["cpu_ms_per_request"], 3)
        if b["cpu_ms_per_request"] and v["cpu_ms_per_request"]
        else None,
        "errors": v["errors"] + b["errors"],
        "first_error": v["first_error"] or b["first_error"],
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (uvicorn workers), from /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        proc = int(stat.parent.name)
        parents[proc], ticks[proc] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def run_window(
    seconds: float, workers: int, call: Callable[[int, int], None], tally: Tally, cpu: Callable[[], float]
) -> None:
    """`workers` threads call `call(worker, i)` in a loop; requests finished within `seconds` count.

    `cpu()` is read before and after (with the drain), and divided by all completed requests."""
    barrier = threading.Barrier(workers + 1)
    window: list[float] = []
    lock = threading.Lock()

    def loop(w: int) -> None:
        barrier.wait()
        i = 0
        while time.perf_counter() < window[1]:
            t0 = time.perf_counter()
            try:
                call(w, i)
                t1 = time.perf_counter()
                with lock:
                    tally.completed += 1
                if t1 <= window[1]:
                    with lock:
                        tally.latencies.append(t1 - t0)
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    tally.errors += 1
                    tally.first_error = tally.first_error or repr(exc)[:300]
            i += 1

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    cpu_before = cpu()
    now = time.perf_counter()
    window.extend([now, now + seconds])
    barrier.wait()
    for t in threads:
        t.join()
    tally.seconds += seconds
    tally.cpu_seconds += cpu() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per side and level")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per interleaved window")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--gallery", type=int, default=100)
    parser.add_argument("--faces", type=int, default=10_000, help="faces in the collection searched")
    parser.add_argument("--operations", default="SearchFacesByImage,IndexFaces")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--threads", type=int, default=None, help="server worker threads per process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    operations = args.operations.split(",")

    home = Path(tempfile.mkdtemp(prefix="faceprint-bench-server-"))
    pairs = lfw_pairs(args.gallery)
    t0 = time.perf_counter()
    core = Collections(home)
    core.create_collection(CollectionId=COLLECTION)
    for person, gallery, _ in pairs:
        core.index_faces(CollectionId=COLLECTION, Image=gallery, ExternalImageId=person, MaxFaces=1)
    index_s = time.perf_counter() - t0
    fill(core, args.faces - len(pairs))
    probes = [probe for _, _, probe in pairs]

    from faceprint.server.keys import KeyStore

    key, secret = KeyStore(home).create("bench")
    server_args = ["--workers", str(args.workers)] + (
        ["--threads", str(args.threads)] if args.threads else []
    )
    server = start_server(home, *server_args)
    try:
        clients = [
            boto3.client(
                "rekognition",
                endpoint_url=server.url,
                region_name="us-east-1",
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=secret,
                config=Config(
                    retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=4, read_timeout=120
                ),
            )
            for _ in range(max(levels))
        ]
        for probe in probes[:3]:  # warm up both sides (models load lazily)
            core.search_faces_by_image(CollectionId=COLLECTION, Image=probe)
            clients[0].search_faces_by_image(CollectionId=COLLECTION, Image={"Bytes": probe})

        def in_process_call(op: str) -> Callable[[int, int], None]:
            method = getattr(core, CORE_METHODS[op])

            def call(w: int, i: int) -> None:
                method(CollectionId=COLLECTION, Image=probes[(w * 7919 + i) % len(probes)], **EXTRA[op])

            return call

        def server_call(op: str) -> Callable[[int, int], None]:
            def call(w: int, i: int) -> None:
                method = getattr(clients[w], CORE_METHODS[op])
                method(
                    CollectionId=COLLECTION,
                    Image={"Bytes": probes[(w * 7919 + i) % len(probes)]},
                    **EXTRA[op],
                )

            return call

        def bench_cpu() -> float:
            return time.process_time()  # every thread of this process

        def both_cpu() -> float:  # the clients here plus the server process tree
            return time.process_time() + tree_cpu_seconds(server.process.pid)

        results = []
        rounds = max(1, round(args.duration / args.slice))
        for op in operations:
            in_process, via_server = in_process_call(op), server_call(op)
            for n in levels:
                base, served = Tally(), Tally()
                for r in range(rounds):  # interleaved (ABBA) so that load from other jobs hits both alike
                    order = [(base, in_process), (served, via_server)]
                    for tally, call in order if r % 2 == 0 else order[::-1]:
                        cpu = bench_cpu if call is in_process else both_cpu
                        run_window(args.duration / rounds, n, call, tally, cpu)
                results.append(_row(op, n, base.summary(), served.summary()))
                r = results[-1]
                print(
                    f"{op} {n:>3} clients: in-process {r['inprocess_rps']:7.2f} req/s | server "
                    f"{r['server_rps']:7.2f} req/s (p50 {r['server_p50_ms']:.0f} ms, "
                    f"p99 {r['server_p99_ms']:.0f} ms, errors {r['errors']}) | ratio {r['ratio'] or 0:.3f} | "
                    "CPU ms/req in-process "
                    f"{r['inprocess_cpu_ms_per_req']:.1f}, server+client {r['server_cpu_ms_per_req']:.1f}",
                    flush=True,
                )
    finally:
        server.stop()
        core.close()
        shutil.rmtree(home, ignore_errors=True)
    tops = [r for r in results if r["clients"] == max(levels)]
    summary = {
        "benchmark": "server",
        "operations": operations,
        "gallery_faces": len(pairs),
        "collection_faces": args.faces,
        "index_seconds": round(index_s, 1),
        "duration_s": args.duration,
        "server_workers": args.workers,
        "server_threads": args.threads,
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "results": results,
        "goal": f"server/in-process >= {GOAL_RATIO} at {max(levels)} clients, no errors",
        "goal_met": bool(
            all(t["ratio"] and t["ratio"] >= GOAL_RATIO for t in tops)
            and all(r["errors"] == 0 for r in results)
        ),
    }
    ratios = ", ".join(f"{t['operation']} {t['ratio']}" for t in tops)
    print(
        f"ratio at {max(levels)} clients: {ratios} "
        f"(goal >= {GOAL_RATIO}); goal {'met' if summary['goal_met'] else 'NOT met'}"
    )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
