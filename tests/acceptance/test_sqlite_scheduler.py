"""Three standalone ``soniq scheduler`` processes on one SQLite file: every slot of a schedule
that fires every second fires exactly once, none is missed, through a SIGKILL mid-run."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.processes import FAST_SETTINGS, ROOT
from tests.helpers import wait_until

pytestmark = pytest.mark.acceptance

RUN_FOR = 10.0  # seconds the schedulers share the file


def _env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        SONIQ_DATABASE_URL=f"sqlite:///{database}",
        SONIQ_JOBS_MODULES="tests.acceptance.standalone_jobs",  # standalone.heartbeat: every 1s
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    return env


def _query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql).fetchall()


def _fires(database: Path) -> list[datetime]:
    rows = _query(
        database,
        "SELECT fire_time FROM soniq_schedule_fires "
        "WHERE schedule_name = 'standalone.heartbeat' ORDER BY fire_time",
    )
    return [datetime.fromisoformat(fire_time) for (fire_time,) in rows]


def test_three_sqlite_schedulers_fire_each_slot_once(tmp_path: Path) -> None:
    database = tmp_path / "jobs.sqlite3"
    env = _env(database)
    soniq = [sys.executable, "-m", "soniq.cli"]
    subprocess.run(
        [*soniq, "setup"], env=env, cwd=ROOT, check=True, timeout=120, stdout=subprocess.DEVNULL
    )

    command = [*soniq, "scheduler", "--tick", "0.2"]
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"scheduler-{len(logs)}.log")
        with logs[-1].open("wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)

    schedulers = [start() for _ in range(3)]
    try:
        wait_until(lambda: len(_fires(database)) >= 2, timeout=60)
        started = time.monotonic()
        time.sleep(RUN_FOR / 2)
        # One scheduler dies outright mid-run (mid-tick, perhaps): SQLite rolls its
        # transaction back, the others carry on.
        schedulers[0].send_signal(signal.SIGKILL)
        schedulers[0].wait(10)
        schedulers.append(start())
        time.sleep(max(0.0, RUN_FOR - (time.monotonic() - started)))
        for process in schedulers[1:]:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process in schedulers[1:]]
    finally:
        for process in schedulers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    outputs = [log.read_text(errors="replace") for log in logs]
    output = "\n".join(outputs)
    assert codes == [0, 0, 0], output
    assert "use PostgreSQL" not in output

    fires = _fires(database)
    assert len(fires) >= RUN_FOR - 1, output
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(fires)}
    assert gaps == {1.0}, f"slots must be consecutive seconds, got gaps {gaps}"
    jobs = _query(
        database,
        "SELECT scheduled_at, count(*) FROM soniq_jobs WHERE task_name = 'standalone.heartbeat' "
        "GROUP BY 1 ORDER BY 1",
    )
    assert [count for _, count in jobs] == [1] * len(fires), "one job per slot"
    assert [datetime.fromisoformat(at) for at, _ in jobs] == fires
    shares = [text.count("fired standalone.heartbeat") for text in outputs]
    # (A fire is logged after its commit: the killed one may have died in between.)
    assert len(fires) - 1 <= sum(shares) <= len(fires), output
    print(f"SQLite: {len(fires)} slots fired once each; per scheduler {shares}")
