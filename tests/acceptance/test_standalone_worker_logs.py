"""A real ``soniq worker`` process on a SQLite file: what it logs at start, that it serves
every queue whatever SONIQ_QUEUES says, and that a clean SIGTERM with no job running exits 0
without claiming that job threads are still running."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from soniq import Soniq
from tests.acceptance.processes import FAST_SETTINGS, ROOT
from tests.helpers import wait_until

pytestmark = pytest.mark.acceptance

JOBS_MODULES = "tests.acceptance.standalone_jobs,tests.acceptance.standalone_sync_jobs"


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES=JOBS_MODULES,
        # Not the CLI's default: `soniq worker` serves every queue without --queues.
        SONIQ_QUEUES="elsewhere",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    return env


def _soniq(*args: str, url: str, **popen: object) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "soniq.cli", *args]
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        command, env=_env(url), cwd=ROOT, text=True, **popen
    )


def _done(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_jobs WHERE status = 'done'").fetchone()
    return int(row[0])


def test_a_clean_sigterm_exits_quietly_and_the_start_line_names_what_it_serves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    setup = _soniq("setup", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = setup.communicate(timeout=120)
    assert setup.returncode == 0, output

    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = _soniq(
            "worker", "--concurrency", "4", url=url, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until(lambda: " started: " in log_path.read_text(), timeout=60)

            async def enqueue() -> None:
                app = Soniq(database_url=url)
                try:
                    # Sync jobs, in the default queue: the pool starts its threads.
                    await app.enqueue_many("standalone.sync_double", [{"n": n} for n in range(12)])
                    await app.enqueue("standalone.double", args={"n": 1})
                finally:
                    await app.close()

            asyncio.run(enqueue())
            wait_until(lambda: _done(path) == 13, timeout=30)
            # Nothing is running now: the completions are written.
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = log_path.read_text()
    assert code == 0, output
    assert "still running" not in output, output
    [start] = [line for line in output.splitlines() if " started: " in line]
    assert " INFO soniq.worker: worker " in start
    assert "concurrency 4" in start and "queues all, " in start, start
    assert start.endswith(
        "3 task(s): standalone.double, standalone.heartbeat, standalone.sync_double"
    ), start
    assert "the QUEUES setting (elsewhere) does not apply to `soniq worker`" in output
    assert "stopped after 13 job(s)" in output, output
