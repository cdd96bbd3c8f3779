"""Real ``manage.py soniq_scheduler`` processes: every slot fires once, none is missed."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.acceptance import periodic_jobs
from tests.acceptance.processes import ROOT, worker_env
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def _fires(name: str = "periodic.second") -> list[object]:
    rows = query_elsewhere(
        "default",
        "SELECT fire_time FROM soniq_schedule_fires WHERE schedule_name = %s ORDER BY fire_time",
        (name,),
    )
    return [row[0] for row in rows]


LOGS: list[object] = []


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    while LOGS:
        LOGS.pop().close()  # type: ignore[attr-defined]


def _start(started: list[subprocess.Popen[bytes]], log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(ROOT / "testproject" / "manage.py"),
        "soniq_scheduler",
        "--app",
        "tests.acceptance.periodic_jobs:app",
        "--tick",
        "0.2",
    ]
    handle = log.open("ab")
    LOGS.append(handle)
    process = subprocess.Popen(command, env=worker_env(), stdout=handle, stderr=handle)
    started.append(process)
    return process


def test_three_schedulers_fire_each_slot_once_and_miss_none(
    schedulers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "schedulers.log"
    for _ in range(3):
        _start(schedulers, log)
    wait_until(lambda: len(_fires()) >= 3, timeout=30)
    # A leader change mid-run: kill one scheduler outright, start another.
    schedulers[0].send_signal(signal.SIGKILL)
    schedulers[0].wait(10)
    _start(schedulers, log)
    wait_until(lambda: len(_fires()) >= 9, timeout=30)
    for process in schedulers[1:]:
        process.send_signal(signal.SIGTERM)
    for process in schedulers[1:]:
        assert process.wait(20) == 0, log.read_text()

    fires = _fires()
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(fires)}  # type: ignore[operator]
    assert gaps == {1.0}, f"slots must be consecutive seconds, got gaps {gaps}"
    jobs = query_elsewhere(
        "default",
        "SELECT scheduled_at, count(*) FROM soniq_jobs WHERE task_name = 'periodic.second' "
        "GROUP BY 1 ORDER BY 1",
    )
    assert [count for _, count in jobs] == [1] * len(fires), "one job per slot"
    assert [at for at, _ in jobs] == fires


def test_pause_and_resume_from_another_process(
    schedulers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    _start(schedulers, tmp_path / "scheduler.log")
    wait_until(lambda: len(_fires()) >= 2, timeout=30)

    async def pause() -> None:
        await periodic_jobs.app.scheduler.pause("periodic.second")
        await periodic_jobs.app.scheduler.close()

    asyncio.run(pause())
    # At most the tick in flight when the pause landed fires afterwards; then nothing.
    settled = len(_fires()) + 1
    wait_until(lambda: len(_fires()) <= settled, timeout=5)
    count = len(_fires())
    wait_until(
        lambda: (
            query_elsewhere(
                "default",
                "SELECT count(*) FROM soniq_schedules WHERE name = 'periodic.second' "
                "AND next_fire_at < now() - interval '2 seconds'",
            )[0][0]
            == 1
        ),
        timeout=10,
    )
    assert len(_fires()) <= count + 1

    async def resume() -> None:
        await periodic_jobs.app.scheduler.resume("periodic.second")
        await periodic_jobs.app.scheduler.close()

    asyncio.run(resume())
    wait_until(lambda: len(_fires()) >= count + 2, timeout=20)
    fires = _fires()
    # Slots that fell while paused were not fired on resume.
    assert max(b - a for a, b in itertools.pairwise(fires)) > timedelta(seconds=2)  # type: ignore[operator]
