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


def _server_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_throwaway_cluster() -> str:
    initdb, pg_ctl = _server_bin("initdb"), _server_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError(
            f"No PostgreSQL answers at {os.environ.get(ENV_VAR, DEFAULT_URL)} and no server "
            "binaries (initdb, pg_ctl) are installed to start one. Set SONIQ_TEST_DATABASE_URL "
            "or install PostgreSQL."
        )
    root = Path(tempfile.mkdtemp(prefix="soniq-pg-"))
    data = root / "data"
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root; hand the directory to the postgres user.
        shutil.chown(root, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def ensure_postgres_url() -> str:
    url = os.environ.get(ENV_VAR, DEFAULT_URL)
    if not _answers(url):
        url = _start_throwaway_cluster()
        os.environ[ENV_VAR] = url
    return url
