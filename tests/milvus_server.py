"""A real Milvus standalone server for the tests and bench/cluster.py (PyPI `milvus` 2.3.5, `milvus-server`).

It starts in about 45 s, keeps its data (embedded etcd, local storage) under one folder, binds etcd's fixed
ports 2379/2380 (so one server per machine at a time: `/tmp/faceprint-milvus.lock` serialises the test
sessions and benchmarks that start one) and ignores SIGTERM for a long time, so it is stopped by SIGKILL of
its whole process group after a short grace period. `kill()` and `start()` again give a crash and a restart
on the same data.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ETCD_PORTS = (2379, 2380)
# Strong searches wait for the server's next time tick: 200 ms by default, 20 ms as docs/deployment.md advises
TIME_TICK = ("proxy.timeTickInterval=20",)
LOCK = Path("/tmp/faceprint-milvus.lock")
START_TIMEOUT = 150.0  # seconds per attempt; 15-45 s on this 2-core machine, more under load


class MilvusMissing(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class MilvusServer:
    """One `milvus-server` process group on a free proxy port, its data in `folder`."""

    def __init__(self, folder: Path, extra: tuple[str, ...] = ()) -> None:
        exe = Path(sys.executable).parent / "milvus-server"
        if not exe.exists():
            raise MilvusMissing(f"{exe} is missing: install the dev extra (milvus==2.3.5)")
        self.exe, self.folder = exe, Path(folder)
        self.port = _free_port()
        self.extra = tuple(
            extra
        )  # `key=value` Milvus settings (`--extra-config`), e.g. proxy.timeTickInterval=50
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 2) -> None:
        """Start and wait until a client answers; a start that hangs (seen now and then after a SIGKILL,
        on the same data) is killed and tried once more."""
        for attempt in range(attempts):
            try:
                self._start_once()
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def _start_once(self) -> None:
        deadline = time.monotonic() + 30
        while not all(_port_free(p) for p in ETCD_PORTS):  # the previous server's ports are released
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd ports {ETCD_PORTS} are taken: another Milvus server runs here")
            time.sleep(0.5)
        if not _port_free(self.port):
            self.port = _free_port()
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(self.exe), "--data", str(self.folder), "--proxy-port", str(self.port)]
            + [arg for kv in self.extra for arg in ("--extra-config", kv)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the wrapper and the milvus binary die together
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        from pymilvus import MilvusClient

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"milvus-server exited; see {self.folder / 'server.log'}")
            with contextlib.suppress(Exception):
                client = MilvusClient(uri=self.uri, timeout=5)
                client.list_collections(timeout=5)
                client.close()
                return
            time.sleep(1)
        self.kill()
        raise RuntimeError(f"milvus-server did not answer within {START_TIMEOUT:.0f} s")

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash) and wait for it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL of the group after `grace` seconds (it ignores SIGTERM for long)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        self.kill()


@contextlib.contextmanager
def milvus_server(folder: Path | None = None, extra: tuple[str, ...] = TIME_TICK) -> Iterator[MilvusServer]:
    """Start a server (waiting for the machine-wide lock) and always stop it and delete its folder."""
    own = folder is None
    data = Path(tempfile.mkdtemp(prefix="faceprint-milvus-")) if own else Path(folder)
    LOCK.touch(exist_ok=True)
    with open(LOCK, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = MilvusServer(data, extra)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            if own:
                shutil.rmtree(data, ignore_errors=True) if os.environ.get("FP_KEEP_MILVUS") is None else None
