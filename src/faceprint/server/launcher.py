"""Start `faceprint serve` as a child process on a free loopback port (for tests, benchmarks, scripts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A `faceprint serve` child process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    home: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    home: Path,
    *args: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    command: str = "serve",
) -> RunningServer:
    """Run `python -m faceprint <command> --host H --port P *args` in `home`; wait for /healthz.

    `command` is "serve" or "demo"; the child's output goes to `<home>/server-<port>.log`.
    """
    port = port or free_port(host)
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"server-{port}.log"
    child_env = {**os.environ, "FACEPRINT_HOME": str(home), **(env or {})}
    argv = [sys.executable, "-m", "faceprint", command, "--host", host, "--port", str(port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(process, host, port, home, log_path, child_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"faceprint serve exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"faceprint serve did not answer /healthz within {timeout:.0f}s:\n{server.log()}")
