"""Find PostgreSQL for the tests, or start a throwaway cluster when none answers.

The URL comes from SONIQ_TEST_DATABASE_URL (default: the local server). When nothing answers
there and the server binaries are installed, a cluster is created in a temporary directory,
started on a free port, and stopped when the test process exits. The URL is written back to
the environment so worker processes started by tests find the same server.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ENV_VAR = "SONIQ_TEST_DATABASE_URL"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def server_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL cluster of our own in a temporary directory (also for restart tests)."""

    def __init__(self) -> None:
        initdb, pg_ctl = server_bin("initdb"), server_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(
                f"No PostgreSQL answers at {os.environ.get(ENV_VAR, DEFAULT_URL)} and no server "
                "binaries (initdb, pg_ctl) are installed to start one. Set "
                "SONIQ_TEST_DATABASE_URL or install PostgreSQL."
            )
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="soniq-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root; hand the directory to the postgres user.
            shutil.chown(self.root, "postgres", "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*self.run_as, initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self.run_as,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "log"),
                "-w",
                *args,
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> ThrowawayCluster:
        self._ctl("start")
        return self

    def restart(self, mode: str = "fast") -> None:
        """``fast``: sessions are told to end; ``immediate``: the server dies and recovers."""
        self._ctl("-m", mode, "restart")

    def halt(self) -> None:
        """Stop the server, keeping its data: :meth:`start` brings it back."""
        self._ctl("-m", "fast", "stop")

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def ensure_postgres_url() -> str:
    url = os.environ.get(ENV_VAR, DEFAULT_URL)
    if not _answers(url):
        cluster = ThrowawayCluster().start()
        atexit.register(cluster.stop)
        url = cluster.url
        os.environ[ENV_VAR] = url
    return url
