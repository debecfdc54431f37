"""A throw-away PostgreSQL 15 cluster for the tests: initdb + pg_ctl on a free port, stopped at the end.

PostgreSQL refuses to run as root (CI runs as root), so when the tests run as root the cluster is
created and run by the `postgres` user (`runuser -u postgres --`) in a temporary folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("FACEPRINT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "faceprint"


class PostgresMissing(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """One running cluster; `url(db)` names a database in it, `create_database` makes a fresh one."""

    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*self._as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._pg_ctl("-o", opts, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (like a crash: committed transactions are on disk, nothing else)."""
        self._pg_ctl("stop", "-m", "immediate", "-w", check=False)

    def processes(self) -> list[int]:
        """The postmaster of this cluster and its children (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(entry.name))
        return pids

    def freeze(self) -> list[int]:
        """SIGSTOP the whole cluster: a hung server that accepts TCP but never answers."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def running(self) -> bool:
        return self._pg_ctl("status", check=False).returncode == 0

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a cluster and always stop it (immediate mode) and delete its folder afterwards."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        raise PostgresMissing(
            f"PostgreSQL 15 server binaries are missing in {PG_BIN} (initdb, pg_ctl): install Debian's "
            "`postgresql` package (.ci/run does) or set FACEPRINT_TEST_PG_BIN"
        )
    folder = Path(tempfile.mkdtemp(prefix="fp-pg-"))
    server = PostgresServer(folder, _free_port())
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        folder.chmod(0o700)
        subprocess.run(
            [*server._as_owner(), str(PG_BIN / "initdb"), "-D", str(server.data), "--auth=trust", "-U", USER],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        deadline = time.monotonic() + 10
        while server.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)
