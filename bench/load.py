"""Bounded load: signed requests keep being served while connections without a key try to block the server.

A real `faceprint serve` (1 worker, `--max-inflight` authenticated requests at once) holds a collection of
`--faces` real LFW faces. `--clients` boto3 clients (retries off) call SearchFacesByImage with other LFW
photos of the same people for `--duration` seconds, twice in the same run:

- baseline: nothing else;
- attacked: plus `--slow` idle slow connections (request headers announcing 1,000 bytes, then 1 byte),
  each reopened as soon as the server cuts it off, so `--slow` are open all the time.

Every answer must be a success or ThrottlingException (the server over its limit); anything else is an
error. Reported per phase: requests/s, p50/p99 latency of successes, throttled and errors, and
attacked/baseline ratios. Then memory (skip with `--no-memory`): 40 unauthenticated 23 MiB bodies at once,
then 8 concurrent signed DetectFaces of a 40-megapixel PNG made from a real photo; the server's peak and
settled RSS after each, as ratios to its idle RSS. The server's RSS is sampled every 50 ms throughout.

    flock /tmp/fp-heavy.lock .venv/bin/python bench/load.py [--faces 1000] [--clients 16] [--slow 64]
        [--duration 20] [--max-inflight 8] [--home-cache DIR] [--json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import select
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from faceprint import config
from faceprint.collections.service import Collections
from faceprint.server.launcher import RunningServer, start_server

COLLECTION = "load"
MIB = 1024 * 1024


def lfw_images(faces: int, probes: int) -> tuple[list[tuple[str, Path]], list[bytes]]:
    """`faces` gallery images (people in name order, all their photos but the last) and `probes` probe
    photos (the last photo of people with 2+ images)."""
    root = config.data_dir() / "lfw" / "lfw-deepfunneled"
    gallery: list[tuple[str, Path]] = []
    probe: list[bytes] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        if len(photos) >= 2 and len(probe) < probes:
            probe.append(photos[-1].read_bytes())
            photos = photos[:-1]
        gallery.extend((person.name, p) for p in photos)
        if len(gallery) >= faces * 1.1 and len(probe) >= probes:  # some photos index no face
            break
    return gallery, probe


def tree_pids(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class RssSampler(threading.Thread):
    """Samples the server's RSS every 50 ms; `peak()` since the last `reset()`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self._peak, self._halt = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self._peak = max(self._peak, rss_mib(self.pid))
            time.sleep(0.05)

    def reset(self) -> None:
        self._peak = rss_mib(self.pid)

    def peak(self) -> float:
        return max(self._peak, rss_mib(self.pid))

    def stop(self) -> None:
        self._halt.set()


class SlowConnections(threading.Thread):
    """Keeps `n` slow unauthenticated connections open, reopening each one the server ends."""

    REQUEST = (
        b"POST / HTTP/1.1\r\nHost: load\r\nX-Amz-Target: RekognitionService.ListCollections\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 1000\r\n\r\n{"
    )

    def __init__(self, server: RunningServer, n: int) -> None:
        super().__init__(daemon=True)
        self.server, self.n, self._halt = server, n, threading.Event()
        self.socks: list[socket.socket] = []
        self.reopened = 0

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.server.host, self.server.port), timeout=10)
        sock.sendall(self.REQUEST)
        return sock

    def run(self) -> None:
        self.socks = [self._open() for _ in range(self.n)]
        while not self._halt.is_set():
            readable, _, _ = select.select(self.socks, [], [], 0.2)
            for sock in readable:  # answered (408) or closed by the server: replace it
                self.socks.remove(sock)
                sock.close()
                self.socks.append(self._open())
                self.reopened += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()
        for sock in self.socks:
            sock.close()


def client(server: RunningServer, key: tuple[str, str]) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=300),
    )


def run_load(n: int, seconds: float, call: Callable[[int, int], None]) -> dict[str, Any]:
    """`n` threads call `call(worker, i)` for `seconds`; successes, throttles and errors."""
    latencies: list[float] = []
    throttled, errors = [0], [0]
    first_error: list[str] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop(w: int) -> None:
        i = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                call(w, i)
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except ClientError as exc:
                with lock:
                    if exc.response["Error"]["Code"] == "ThrottlingException":
                        throttled[0] += 1
                        time.sleep(0.05)
                    else:
                        errors[0] += 1
                        first_error.append(repr(exc)[:200])
            except Exception as exc:  # connection errors count too
                with lock:
                    errors[0] += 1
                    first_error.append(repr(exc)[:200])
            i += 1

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "served": int(lat.size),
        "rps": round(lat.size / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "throttled": throttled[0],
        "errors": errors[0],
        "first_error": first_error[0] if first_error else None,
    }


def settle(sampler: RssSampler, seconds: float = 3.0) -> float:
    time.sleep(seconds)
    return round(rss_mib(sampler.pid), 1)


def unauthenticated_bodies(server: RunningServer, n: int, size: int, photo: bytes) -> dict[str, int]:
    """`n` connections at once, each sending a whole `size`-byte unsigned request (a real photo's base64,
    repeated); the answers' status codes."""
    text = base64.b64encode(photo)
    blob = (text * (size // len(text) + 1))[: size - 40]
    body = b'{"Image": {"Bytes": "' + blob + b'"}}'
    head = (
        b"POST / HTTP/1.1\r\nHost: load\r\nX-Amz-Target: RekognitionService.DetectFaces\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body)
    )
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def send() -> None:
        status = "reset"
        try:
            with socket.create_connection((server.host, server.port), timeout=120) as sock:
                barrier.wait()
                sock.sendall(head + body)
                answer = sock.recv(64)
                status = answer.split(b" ", 2)[1].decode() if answer else "closed"
        except OSError:
            pass
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def big_png(photo: Path, pixels: int = 39_990_000) -> bytes:
    """A real face photo enlarged to about `pixels` pixels (nearest neighbour keeps the PNG under 5 MB)."""
    img = Image.open(photo).convert("RGB")
    scale = (pixels / (img.width * img.height)) ** 0.5
    big = img.resize((int(img.width * scale), int(img.height * scale)), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def build_collection(home: Path, gallery: list[tuple[str, Path]], faces: int) -> None:
    """Index real LFW photos (one face each) until the collection holds `faces` faces."""
    with Collections(home) as core:
        core.create_collection(CollectionId=COLLECTION)
        indexed = 0
        for person, path in gallery:
            records = core.index_faces(
                CollectionId=COLLECTION, Image=path.read_bytes(), ExternalImageId=person, MaxFaces=1
            )["FaceRecords"]
            indexed += len(records)
            if indexed >= faces:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--slow", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--max-inflight", type=int, default=8, help="server's authenticated in-flight limit")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory phases")
    parser.add_argument(
        "--home-cache", type=Path, help="keep the indexed home here and reuse it (e.g. for an A/B of code)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="faceprint-bench-load-"))
    gallery, probes = lfw_images(args.faces, 200)
    t0 = time.perf_counter()
    if args.home_cache and (args.home_cache / "collections").is_dir():
        shutil.copytree(args.home_cache, home, dirs_exist_ok=True)
    else:
        build_collection(home, gallery, args.faces)
        if args.home_cache:
            shutil.copytree(home, args.home_cache)
    with Collections(home) as core:
        indexed = core.describe_collection(CollectionId=COLLECTION)["FaceCount"]
    index_s = time.perf_counter() - t0
    print(f"{indexed} LFW faces ready in {index_s:.0f} s", flush=True)

    from faceprint.server.keys import KeyStore

    access, secret = KeyStore(home).create("load")
    env = {"FACEPRINT_SERVER_MAX_INFLIGHT": str(args.max_inflight)}
    server = start_server(home, "--workers", "1", env=env)
    sampler = RssSampler(server.process.pid)
    sampler.start()
    report: dict[str, Any] = {}
    try:
        clients = [client(server, (access.access_key_id, secret)) for _ in range(args.clients)]
        for probe in probes[:2]:  # models load lazily
            clients[0].search_faces_by_image(CollectionId=COLLECTION, Image={"Bytes": probe})
        idle = settle(sampler, 1.0)

        def search(w: int, i: int) -> None:
            clients[w].search_faces_by_image(
                CollectionId=COLLECTION, Image={"Bytes": probes[(w * 7919 + i) % len(probes)]}
            )

        sampler.reset()
        baseline = run_load(args.clients, args.duration, search)
        baseline["peak_rss_mib"] = round(sampler.peak(), 1)
        print(f"baseline: {baseline}", flush=True)
        slow = SlowConnections(server, args.slow)
        slow.start()
        time.sleep(1.0)
        sampler.reset()
        try:
            attacked = run_load(args.clients, args.duration, search)
        finally:
            slow.stop()
        attacked["peak_rss_mib"] = round(sampler.peak(), 1)
        attacked["slow_connections"] = args.slow
        attacked["slow_reopened"] = slow.reopened
        print(f"attacked: {attacked}", flush=True)
        report.update(idle_rss_mib=idle, baseline=baseline, attacked=attacked)
        report["ratios"] = {
            "rps": round(attacked["rps"] / baseline["rps"], 3) if baseline["rps"] else None,
            "p50": round(attacked["p50_ms"] / baseline["p50_ms"], 3)
            if attacked["p50_ms"] and baseline["p50_ms"]
            else None,
            "p99": round(attacked["p99_ms"] / baseline["p99_ms"], 3)
            if attacked["p99_ms"] and baseline["p99_ms"]
            else None,
        }
        if not args.no_memory:
            report["memory"] = memory_phases(server, sampler, clients, probes, idle)
        report["final_rss_mib"] = settle(sampler, 2.0)
    finally:
        sampler.stop()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)

    summary = {
        "benchmark": "load",
        "faces": indexed,
        "index_seconds": round(index_s, 1),
        "clients": args.clients,
        "duration_s": args.duration,
        "max_inflight": args.max_inflight,
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        **report,
        "ok": report["baseline"]["errors"] == 0
        and report["attacked"]["errors"] == 0
        and report["attacked"]["served"] > 0,
    }
    print(
        f"p50 {baseline['p50_ms']} -> {attacked['p50_ms']} ms, p99 {baseline['p99_ms']} -> "
        f"{attacked['p99_ms']} ms, req/s ratio {report['ratios']['rps']}, errors "
        f"{baseline['errors']}/{attacked['errors']}, final RSS {report['final_rss_mib']} MiB"
    )
    if args.json:
        print(json.dumps(summary))


def memory_phases(
    server: RunningServer, sampler: RssSampler, clients: list[Any], probes: list[bytes], idle: float
) -> dict[str, Any]:
    """Peak and settled RSS after unauthenticated big bodies, then after concurrent 40-megapixel PNGs."""
    out: dict[str, Any] = {}
    sampler.reset()
    statuses = unauthenticated_bodies(server, 40, 23 * MIB, probes[0])
    out["unauthenticated_23mib_x40"] = {
        "statuses": statuses,
        "peak_rss_mib": round(sampler.peak(), 1),
        "after_rss_mib": settle(sampler),
    }
    print(f"40 unauthenticated 23 MiB bodies: {out['unauthenticated_23mib_x40']}", flush=True)
    photo = config.data_dir() / "known_identities/face_recognition_examples/examples/obama.jpg"
    png = big_png(photo)
    sampler.reset()
    outcomes: list[str] = []

    def detect(w: int) -> None:
        try:
            faces = clients[w].detect_faces(Image={"Bytes": png})["FaceDetails"]
            outcomes.append(f"{len(faces)} face(s)")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=detect, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["png_40mp_x8"] = {
        "png_bytes": len(png),
        "outcomes": {o: outcomes.count(o) for o in set(outcomes)},
        "peak_rss_mib": round(sampler.peak(), 1),
        "after_rss_mib": settle(sampler),
    }
    print(f"8 concurrent 40-megapixel PNGs: {out['png_40mp_x8']}", flush=True)
    for phase in out.values():
        phase["after_to_idle"] = round(phase["after_rss_mib"] / idle, 3)
    return out


if __name__ == "__main__":
    main()
