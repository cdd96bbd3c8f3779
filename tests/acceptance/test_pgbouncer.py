"""soniq behind a real PgBouncer in transaction mode, with the documented settings
(LISTEN_NOTIFY off, PREPARED_STATEMENTS off): enqueue, workers, the scheduler and the
operator commands, each through the bouncer, standalone and inside Django."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from django.db import connections

from soniq import JobCancelledError, Soniq
from tests.acceptance.pgbouncer_jobs import jobs_on
from tests.acceptance.processes import FAST_SETTINGS, ROOT, WorkerProcess, worker_env
from tests.acceptance.test_metrics_endpoint import free_port, scrape
from tests.helpers import conninfo, query_elsewhere, wait_until
from tests.pg_server import ensure_postgres_url
from tests.pgbouncer import PgBouncer, shares_server_connections

T = TypeVar("T")

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

# What the docs tell a deployment behind PgBouncer in transaction mode to set.
BEHIND_PGBOUNCER = {"SONIQ_LISTEN_NOTIFY": "0", "SONIQ_PREPARED_STATEMENTS": "0"}


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    with PgBouncer(ensure_postgres_url()) as running:
        yield running


def _test_database() -> str:
    return str(connections["default"].settings_dict["NAME"])


# -- standalone: `soniq ...` processes on SONIQ_DATABASE_URL -----------------------------------


class Standalone:
    """``soniq`` processes configured for the bouncer by environment variables alone."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.runs_file = tmp_path / "runs.txt"
        self.runs_file.touch()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
        self.env.update(
            SONIQ_DATABASE_URL=url,
            SONIQ_JOBS_MODULES="tests.acceptance.pgbouncer_jobs",
            PGBOUNCER_RUNS_FILE=str(self.runs_file),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            **FAST_SETTINGS,
            **BEHIND_PGBOUNCER,
        )
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{args[0]}-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "soniq.cli", *args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "soniq.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"soniq {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def output(self) -> str:
        return "\n".join(
            f"== {log.name}\n{log.read_text(errors='replace')}" for _, log in self.started
        )

    def runs(self, label: str) -> Counter[str]:
        """How many times each job id ran, from the jobs' own record."""
        lines = self.runs_file.read_text().splitlines()
        return Counter(line.split()[1] for line in lines if line.split()[0] == label)

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def _complaints(log: str) -> list[str]:
    """The warnings and errors soniq logged, but for the jobs' own failures (on purpose)."""
    return [
        line
        for line in log.splitlines()
        if (" WARNING " in line or " ERROR " in line)
        and "(bouncer.refuse)" not in line
        and "(acc.flaky)" not in line
    ]


def _statuses(ids: list[str]) -> Counter[str]:
    rows = query_elsewhere(
        "default", "SELECT status FROM soniq_jobs WHERE id = ANY(%s::uuid[])", (ids,)
    )
    return Counter(row[0] for row in rows)


def _on_bouncer(url: str, call: Callable[[Soniq], Awaitable[T]]) -> T:
    """``call`` on a Soniq on the bouncer's URL, set up as behind PgBouncer."""

    async def go() -> T:
        app = jobs_on(Soniq(database_url=url, prepared_statements=False, listen_notify=False))
        try:
            return await call(app)
        finally:
            await app.close()

    return asyncio.run(go())


def _enqueue_through(url: str) -> dict[str, Any]:
    """Every way of enqueueing, through the bouncer, from a Soniq on that URL."""

    async def go() -> dict[str, Any]:
        app = jobs_on(Soniq(database_url=url, prepared_statements=False))
        try:
            single = [await app.enqueue("bouncer.add", args={"n": n}) for n in range(100)]
            many = await app.enqueue_many("bouncer.add", [{"n": n} for n in range(100, 200)])
            first = await app.enqueue("bouncer.add", args={"n": 500}, dedup_key="report-7")
            again = await app.enqueue("bouncer.add", args={"n": 501}, dedup_key="report-7")
            # A transaction of the caller's own: one server connection holds it to the end.
            async with await psycopg.AsyncConnection.connect(url, prepare_threshold=None) as conn:
                async with conn.transaction():
                    committed = await app.enqueue("bouncer.add", args={"n": 600}, connection=conn)
                with pytest.raises(ZeroDivisionError):
                    async with conn.transaction():
                        await app.enqueue("bouncer.add", args={"n": 601}, connection=conn)
                        1 / 0  # noqa: B018
            later = await app.enqueue(
                "bouncer.add", args={"n": 700}, scheduled_at=datetime.now(UTC) + timedelta(hours=1)
            )
            refused = await app.enqueue_many("bouncer.refuse", [{}, {}, {}])
            capped = await app.enqueue_many(
                "bouncer.capped", [{"n": n} for n in range(5)], lock="bouncer:1"
            )
            capped += await app.enqueue_many("bouncer.capped", [{"n": n} for n in range(5)])
        finally:
            await app.close()
        assert again == first
        return {
            "add": [*single, *many, first, committed],
            "later": later,
            "refused": refused,
            "capped": capped,
        }

    return asyncio.run(go())


def test_standalone_enqueue_workers_scheduler_and_commands(
    bouncer: PgBouncer, tmp_path: Path
) -> None:
    url = bouncer.url(_test_database())
    assert shares_server_connections(url), "not a transaction-mode pooler"
    soniq = Standalone(url, tmp_path)
    metrics_port = free_port()
    try:
        worker = soniq.start("worker", "--concurrency", "4", "--metrics-port", str(metrics_port))
        scheduler = soniq.start("scheduler", "--tick", "0.5")
        enqueued = _enqueue_through(url)
        added = enqueued["add"]
        wait_until(lambda: _statuses(added)["done"] == len(added), timeout=60)
        # Dead-lettered: out of soniq_jobs (moved in one statement), after their one run each.
        wait_until(
            lambda: not _statuses(enqueued["refused"]) and len(soniq.runs("refuse")) == 3,
            timeout=30,
        )
        # Jobs under a lock and limits: the limited claim's transaction holds through the
        # bouncer, and the locked ones ran in their order.
        wait_until(lambda: _statuses(enqueued["capped"])["done"] == 10, timeout=30)
        locked = enqueued["capped"][:5]
        ran = soniq.runs("capped")  # in the order they first ran
        assert set(ran.values()) == {1}, ran
        assert [job_id for job_id in ran if job_id in locked] == locked
        # The scheduler fires bouncer.tick every second through the bouncer too.
        wait_until(lambda: len(soniq.runs("tick")) >= 2, timeout=30)

        status = json.loads(soniq.ok("status", "--json"))
        [default] = [q for q in status["queues"] if q["queue"] == "default"]
        assert default["dead_letters"] == 3
        assert [w["pid"] for w in status["workers"] if w["state"] == "alive"] == [worker.pid]
        assert [s["name"] for s in status["schedules"]] == ["bouncer.tick"]
        health = soniq.run("healthcheck", "--worker", "--max-latency", "60")
        assert health.returncode == 0, health.stdout + health.stderr

        # A running job aborted from the command line: the worker's poll finds the request
        # (no LISTEN behind the bouncer) and the job ends cancelled; wait_for polls too.
        hold = _on_bouncer(url, lambda app: app.enqueue("bouncer.hold"))
        wait_until(lambda: len(soniq.runs("hold")) == 1, timeout=30)
        asked = time.monotonic()
        assert "aborting" in soniq.ok("jobs", "cancel", "--abort", hold)
        wait_until(lambda: _statuses([hold])["cancelled"] == 1, timeout=10)
        assert time.monotonic() - asked < 3
        with pytest.raises(JobCancelledError, match="abort requested by cli:"):
            _on_bouncer(url, lambda app: app.wait_for(hold, timeout=10))
        done = _on_bouncer(url, lambda app: app.wait_for(added[0], timeout=10))
        assert done.result == 1

        # A job due in an hour: cancelled, then brought back to run now.
        later = enqueued["later"]
        assert "cancelled" in soniq.ok("jobs", "cancel", later)
        assert "retried" in soniq.ok("jobs", "retry", later)
        wait_until(lambda: _statuses([later])["done"] == 1, timeout=30)

        # The dead letters, exported as JSON lines, then requeued once the cause is fixed.
        lines = soniq.ok("dead-letters", "export", "--all").splitlines()
        exported = [json.loads(line) for line in lines]
        assert sorted(e["id"] for e in exported) == sorted(enqueued["refused"])
        assert all("the partner is down" in e["errors"][-1]["message"] for e in exported)
        Path(str(soniq.runs_file) + ".fixed").touch()
        requeued = soniq.ok("dead-letters", "requeue", "--all")
        assert sorted(requeued.split()[1::2]) == sorted(enqueued["refused"]), requeued
        wait_until(lambda: _statuses(enqueued["refused"])["done"] == 3, timeout=30)

        soniq.ok("schedules", "pause", "bouncer.tick")
        paused = json.loads(soniq.ok("schedules", "list", "--json"))
        assert [s["paused"] for s in paused] == [True]
        soniq.ok("schedules", "resume", "bouncer.tick")
        soniq.ok("schedules", "run-now", "bouncer.tick")
        soniq.ok("prune")

        found = scrape(metrics_port)
        succeeded = (
            "soniq_jobs_processed_total",
            (("outcome", "succeeded"), ("queue", "default"), ("task", "bouncer.add")),
        )
        assert found[succeeded] == len(added) + 1  # and the retried one
        assert found[("soniq_workers_live", ())] == 1
        assert ("soniq_queue_dead_letters", (("queue", "default"),)) in found

        for process in (worker, scheduler):
            process.send_signal(signal.SIGTERM)
        assert [worker.wait(30), scheduler.wait(30)] == [0, 0], soniq.output()
    finally:
        soniq.stop()
    # Every job ran exactly once (the requeued dead letters twice: once in each life).
    runs = soniq.runs("add")
    assert set(runs) == {*added, later} and set(runs.values()) == {1}, soniq.output()
    assert sorted(soniq.runs("refuse").values()) == [2, 2, 2]
    # Nothing failed on the way and was retried: soniq survives a statement refused by the
    # bouncer (a prepared statement it lost), but with these settings there is none.
    assert not _complaints(soniq.output()), soniq.output()


# -- inside Django: manage.py processes whose DATABASES entry points at the bouncer ----------


def _through(bouncer: PgBouncer) -> dict[str, str]:
    return {"SONIQ_WORKER_DATABASE_PORT": str(bouncer.port), **BEHIND_PGBOUNCER}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "testproject" / "manage.py"), *args],
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


# Enqueued from a Django process on the bouncer: 50 jobs in a committed atomic block, one in a
# rolled-back block, and a flaky job that fails once.
_ENQUEUE = """
from django.db import connection, transaction
from tests.acceptance import jobs
with transaction.atomic():
    ids = [jobs.count.enqueue(n=n) for n in range(50)]
try:
    with transaction.atomic():
        jobs.count.enqueue(n=999)
        raise RuntimeError("rolled back")
except RuntimeError:
    pass
ids.append(jobs.flaky.enqueue(fail_times=1))
print(connection.settings_dict["PORT"], *ids)
"""


def test_django_enqueue_worker_and_commands(
    bouncer: PgBouncer, tmp_path: Path, runs_table: None
) -> None:
    env = _through(bouncer)
    worker = WorkerProcess(tmp_path, "--concurrency", "4", **env)
    try:
        worker.wait_registered()
        enqueued = _manage("shell", "--verbosity", "0", "-c", _ENQUEUE, env=env)
        assert enqueued.returncode == 0, enqueued.stderr
        port, *ids = enqueued.stdout.splitlines()[-1].split()
        assert port == str(bouncer.port)
        wait_until(lambda: _statuses(ids)["done"] == 51, timeout=60)

        listed = _manage(
            "soniq", "jobs", "list", "--status", "done", "--limit", "100", "--json", env=env
        )
        assert listed.returncode == 0, listed.stderr
        assert sorted(job["id"] for job in json.loads(listed.stdout)) == sorted(ids)
        health = _manage("soniq", "healthcheck", "--worker", env=env)
        assert health.returncode == 0, health.stdout + health.stderr
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
        assert not _complaints(worker.output()), worker.output()
    finally:
        worker.stop()
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        runs = conn.execute(
            "SELECT data->>'n', count(*) FROM soniq_test_runs WHERE label = 'count' GROUP BY 1"
        ).fetchall()
        flaky = conn.execute(
            "SELECT attempt FROM soniq_test_runs WHERE label = 'flaky' ORDER BY seq"
        ).fetchall()
    assert sorted(int(n) for n, _ in runs) == list(range(50))  # never 999: rolled back
    assert {count for _, count in runs} == {1}
    assert flaky == [(1,), (2,)]
