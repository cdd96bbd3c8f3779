"""Several ``manage.py soniq_worker`` processes on one SQLite file: every job runs once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from soniq import Soniq
from tests.acceptance.processes import FAST_SETTINGS, ROOT
from tests.helpers import wait_until

pytestmark = pytest.mark.acceptance


def _env(database: Path, runs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        SQLITE_PATH=str(database),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
        SONIQ_TEST_RUNS_FILE=str(runs),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    env["SONIQ_POLL_INTERVAL"] = "0.2"
    return env


def _count(database: Path, status: str) -> int:
    with closing(sqlite3.connect(database)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM soniq_jobs WHERE status = ?", (status,)).fetchone()[
                0
            ]
        )


def _running_workers(database: Path) -> int:
    with closing(sqlite3.connect(database)) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_workers WHERE status = 'running'").fetchone()
        return int(row[0])


def test_two_sqlite_workers_run_every_job_exactly_once(tmp_path: Path) -> None:
    database, runs = tmp_path / "jobs.sqlite3", tmp_path / "runs.txt"
    env = _env(database, runs)
    manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=120)

    total = 400

    async def enqueue() -> list[str]:
        app = Soniq(database_url=f"sqlite:///{database}")
        try:
            return await app.enqueue_many(
                "sqlite.count", [{"n": n, "work": 0.01} for n in range(total)]
            )
        finally:
            await app.close()

    command = [*manage, "soniq_worker", "--app", "tests.acceptance.sqlite_jobs:app"]
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(2)]
    workers = [
        subprocess.Popen([*command, "--concurrency", "4"], env=env, stdout=log, stderr=log)
        for log in logs
    ]
    try:
        # Both ready before any job exists, so that both get a share and both handle SIGTERM.
        wait_until(lambda: _running_workers(database) == 2, timeout=60)
        ids = asyncio.run(enqueue())
        wait_until(lambda: _count(database, "done") == total, timeout=120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(30) for worker in workers]
        for log in logs:
            log.close()
    assert codes == [0, 0], [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    lines = runs.read_text().split("\n")[:-1]
    per_job = Counter(line.split()[0] for line in lines)
    assert set(per_job) == set(ids)
    assert set(per_job.values()) == {1}, "a job ran twice"
    pids = {line.split()[1] for line in lines}
    assert len(pids) == 2, "both workers took a share"


def test_sigkill_on_sqlite_is_noticed_by_pid_and_recovered(tmp_path: Path) -> None:
    database, runs = tmp_path / "jobs.sqlite3", tmp_path / "runs.txt"
    runs.touch()
    env = _env(database, runs)
    manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=120)

    async def enqueue() -> str:
        app = Soniq(database_url=f"sqlite:///{database}")
        try:
            return await app.enqueue("sqlite.slow", args={"seconds": 2})
        finally:
            await app.close()

    job_id = asyncio.run(enqueue())
    command = [*manage, "soniq_worker", "--app", "tests.acceptance.sqlite_jobs:app"]
    log = (tmp_path / "workers.log").open("wb")
    victim = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    survivor = None
    try:
        wait_until(lambda: runs.read_text().count("start") == 1, timeout=60)
        survivor = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_until(lambda: runs.read_text().count("start") == 2, timeout=30)
        recovered_after = time.monotonic() - killed_at
        wait_until(lambda: _count(database, "done") == 1, timeout=30)
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        log.close()
    print(f"SQLite: SIGKILL -> job running again after {recovered_after:.2f}s")
    assert recovered_after < 10
    starts = [line.split() for line in runs.read_text().splitlines()]
    assert [line[0] for line in starts] == [job_id, job_id]
    assert starts[1][1] == str(survivor.pid)
