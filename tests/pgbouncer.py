"""A real PgBouncer in front of the test PostgreSQL, in transaction mode, for the tests.

Debian's ``pgbouncer`` package provides the binary (scripts/test.sh installs it). Each
:class:`PgBouncer` runs in a temporary directory of its own, on a free port, with every
database name routed to the server behind ``postgres_url``: a client connects to the
bouncer's URL with the database name it wants, as an application would.

PgBouncer refuses to run as root: as root it is started with ``-u nobody``, so its directory
and files are made readable and writable for that user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

import psycopg

_START_TIMEOUT = 10.0


def pgbouncer_bin() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    debian = "/usr/sbin/pgbouncer"
    return debian if os.path.exists(debian) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """``with PgBouncer(postgres_url) as bouncer: bouncer.url("dbname")``."""

    def __init__(self, postgres_url: str, *, pool_size: int = 20) -> None:
        binary = pgbouncer_bin()
        if binary is None:
            raise RuntimeError(
                "PgBouncer is not installed: `apt-get install pgbouncer` (scripts/test.sh "
                "installs it when it runs as root or with sudo)."
            )
        server = urlsplit(postgres_url)
        self.user = unquote(server.username or "postgres")
        # The server's password, if it wants one: PgBouncer logs in with the auth file's.
        password = unquote(server.password or "")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="soniq-pgbouncer-"))
        self.log_path = self.root / "pgbouncer.log"
        users = self.root / "users.txt"
        users.write_text(f'"{self.user}" "{password}"\n')
        config = self.root / "pgbouncer.ini"
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    # The documented production setting: a server connection serves one client
                    # transaction at a time, then goes back to the pool.
                    "pool_mode = transaction",
                    # Hand out server connections in turn rather than the last used first, so
                    # that a client's consecutive transactions really land on different server
                    # sessions: whatever wrongly relies on session state (a prepared statement,
                    # a LISTEN) fails here as it would under production traffic.
                    "server_round_robin = 1",
                    "auth_type = trust",
                    f"auth_file = {users}",
                    f"logfile = {self.log_path}",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 500",
                    # psycopg and Django may send it at start-up; PgBouncer would refuse it.
                    "ignore_startup_parameters = extra_float_digits",
                    # Server connections close soon after use, so that the test database can be
                    # dropped once the bouncer has stopped.
                    "server_idle_timeout = 5",
                    "",
                ]
            )
        )
        command = [binary, str(config)]
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
            for path in (users, config):
                path.chmod(0o644)
            self.root.chmod(0o755)
            command = [binary, "-u", "nobody", str(config)]
        try:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        except OSError:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self._wait_started()

    def url(self, dbname: str) -> str:
        """A libpq URL for ``dbname`` through the bouncer."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_started(self) -> None:
        """Until PgBouncer says it listens on its port: its own log line, not a connection,
        which another program that took the port meanwhile could answer."""
        listening = f"listening on 127.0.0.1:{self.port}"
        deadline = time.monotonic() + _START_TIMEOUT
        while listening not in self.log():
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"PgBouncer exited at start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PgBouncer did not listen in time:\n{self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop, closing every server connection, and remove the files. SIGTERM first (an
        immediate shutdown up to PgBouncer 1.22; later releases wait for their clients
        there), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def shares_server_connections(url: str) -> bool:
    """Whether two clients open at once at ``url`` run their statements on one server
    connection, as only a transaction-mode pooler does: proof that a test's traffic really
    goes through PgBouncer in transaction mode."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(psycopg.connect(url, autocommit=True, prepare_threshold=None))
        second = stack.enter_context(psycopg.connect(url, autocommit=True, prepare_threshold=None))
        pid_first = first.execute("SELECT pg_backend_pid()").fetchone()
        pid_second = second.execute("SELECT pg_backend_pid()").fetchone()
        return pid_first == pid_second
