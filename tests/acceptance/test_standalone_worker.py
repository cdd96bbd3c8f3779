"""``soniq setup`` and ``soniq worker`` outside Django, through a PostgreSQL restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from soniq import JobStatus, Soniq
from tests.acceptance.processes import FAST_SETTINGS, ROOT
from tests.helpers import wait_until
from tests.pg_server import ThrowawayCluster

pytestmark = pytest.mark.acceptance


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster().start()
    yield own
    own.stop()


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES="tests.acceptance.standalone_jobs",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    return env


def _soniq(*args: str, url: str, **popen: object) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "soniq.cli", *args]
    return subprocess.Popen(command, env=_env(url), cwd=ROOT, **popen)  # type: ignore[call-overload]


def _statuses(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM soniq_jobs GROUP BY 1").fetchall()
    return dict(rows)


def _enqueue(url: str, numbers: range) -> list[str]:
    async def go() -> list[str]:
        app = Soniq(database_url=url)
        try:
            return await app.enqueue_many("standalone.double", [{"n": n} for n in numbers])
        finally:
            await app.close()

    return asyncio.run(go())


def test_setup_then_worker_survives_a_database_restart(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = cluster.url
    setup = _soniq("setup", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = setup.communicate(timeout=120)
    assert setup.returncode == 0, output.decode()
    with psycopg.connect(url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert {"soniq_jobs", "soniq_workers", "soniq_dead_letter_jobs", "soniq_schedules"} <= tables

    log = (tmp_path / "worker.log").open("wb")
    worker = _soniq("worker", "--concurrency", "4", url=url, stdout=log, stderr=subprocess.STDOUT)
    try:
        before = _enqueue(url, range(20))
        wait_until(lambda: _statuses(url).get("done") == 20, timeout=30)

        cluster.restart()
        back_at = time.monotonic()
        after = _enqueue(url, range(20, 40))
        wait_until(lambda: _statuses(url).get("done") == 40, timeout=30)
        print(f"jobs enqueued after the restart done {time.monotonic() - back_at:.2f}s after it")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()

        async def results() -> list[object]:
            app = Soniq(database_url=url)
            try:
                infos = [await app.get_job(job_id) for job_id in before + after]
            finally:
                await app.close()
            assert all(info is not None and info.status is JobStatus.DONE for info in infos)
            return [info.result["n"] for info in infos if info is not None]

        assert asyncio.run(results()) == [n * 2 for n in range(40)]
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()


def test_worker_run_once_and_clear_errors(cluster: ThrowawayCluster) -> None:
    url = cluster.url
    setup = _soniq("setup", url=url, stdout=subprocess.DEVNULL)
    assert setup.wait(120) == 0
    _enqueue(url, range(3))
    once = _soniq("worker", "--run-once", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = once.communicate(timeout=60)
    assert once.returncode == 0, output.decode()
    assert _statuses(url) == {"done": 3}

    env = _env(url)
    del env["SONIQ_JOBS_MODULES"]
    missing = subprocess.run(
        [sys.executable, "-m", "soniq.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "SONIQ_JOBS_MODULES" in missing.stderr


def test_setup_and_run_once_on_a_standalone_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    setup = _soniq("setup", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = setup.communicate(timeout=120)
    assert setup.returncode == 0, output.decode()

    async def enqueue_and_close() -> list[str]:
        app = Soniq(database_url=url)
        try:
            return await app.enqueue_many("standalone.double", [{"n": n} for n in range(5)])
        finally:
            await app.close()

    ids = asyncio.run(enqueue_and_close())
    once = _soniq("worker", "--run-once", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = once.communicate(timeout=60)
    assert once.returncode == 0, output.decode()

    async def results() -> list[object]:
        app = Soniq(database_url=url)
        try:
            infos = [await app.get_job(job_id) for job_id in ids]
        finally:
            await app.close()
        return [info.result["n"] if info and info.result else None for info in infos]

    assert asyncio.run(results()) == [0, 2, 4, 6, 8]


def test_standalone_scheduler_fires_into_the_queue(cluster: ThrowawayCluster) -> None:
    url = cluster.url
    assert _soniq("setup", url=url, stdout=subprocess.DEVNULL).wait(120) == 0
    scheduler = _soniq(
        "scheduler", "--tick", "0.2", url=url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:

        def fired() -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM soniq_jobs WHERE task_name = 'standalone.heartbeat'"
                ).fetchone()
            return int(row[0]) if row else 0

        wait_until(lambda: fired() >= 2, timeout=30)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        output, _ = scheduler.communicate(timeout=30)
    assert scheduler.returncode == 0, output.decode()
    assert b"fired standalone.heartbeat" in output
