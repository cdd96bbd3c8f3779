"""Real ``soniq worker`` processes against a throwaway PostgreSQL cluster when the network or
the server fails: a worker cut off behind a TCP proxy fences itself before anyone else takes
its jobs, and its row stays dead after the heal; after a restart (fast or immediate) work
resumes within a second of the server accepting connections."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from benchmarks.network_fault_jobs import LONG, QUICK, TALLY_ENV, WAIT_FOR_FILE, Event, read_tally
from soniq import Soniq
from soniq.worker.liveness import DEREGISTER_TIMEOUT
from soniq.worker.worker import WRITE_GRACE
from tests.acceptance.processes import ROOT
from tests.helpers import wait_until
from tests.pg_server import ThrowawayCluster
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.acceptance

# Heartbeat 1 s, timeout 5 s: the worker's lease is 0.75 x min(5, 2 x 1) = 1.5 s.
NETWORK_SETTINGS = {
    "SONIQ_HEARTBEAT_INTERVAL": "1",
    "SONIQ_HEARTBEAT_TIMEOUT": "5",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_SHUTDOWN_TIMEOUT": "2",
}
LEASE = 1.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster().start()
    setup = subprocess.run(
        [sys.executable, "-m", "soniq.cli", "setup"],
        env=_env(own.url, Path(os.devnull)),
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    yield own
    own.stop()


@pytest.fixture
def fresh(cluster: ThrowawayCluster) -> ThrowawayCluster:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("TRUNCATE soniq_jobs, soniq_workers, soniq_dead_letter_jobs")
    return cluster


def _env(url: str, tally: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES="benchmarks.network_fault_jobs",
        **{TALLY_ENV: str(tally)},
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **NETWORK_SETTINGS,
    )
    return env


class WorkerProcess:
    def __init__(self, url: str, tally: Path, log: Path, concurrency: int, *flags: str) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "soniq.cli",
                "worker",
                "--concurrency",
                str(concurrency),
                *flags,
            ],
            env=_env(url, tally),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


def _enqueue(url: str, task: str, args: list[dict[str, Any]]) -> list[str]:
    app = Soniq(database_url=url)
    try:
        return app.enqueue_many_sync(task, args)
    finally:
        app.backend.close_sync()  # type: ignore[attr-defined]


def _workers(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id::text, pid, status, last_heartbeat_at <= stopped_at FROM soniq_workers"
        ).fetchall()


def test_a_cut_off_worker_gives_up_its_jobs_before_others_take_them(
    fresh: ThrowawayCluster, tmp_path: Path
) -> None:
    url, tally = fresh.url, tmp_path / "tally"
    with TcpProxy("127.0.0.1", fresh.port).start() as proxy:
        cut_off = WorkerProcess(proxy.url_for(url), tally, tmp_path / "cut.log", concurrency=4)
        other: WorkerProcess | None = None
        try:
            ids = _enqueue(url, LONG, [{"seconds": 60}] * 4)
            wait_until(lambda: sum(e.what == "start" for e in read_tally(tally)) == 4, timeout=30)
            other = WorkerProcess(url, tally, tmp_path / "other.log", concurrency=4)
            wait_until(lambda: len(_workers(url)) == 2, timeout=30)
            cut_at = time.time()
            proxy.drop()

            def cancelled() -> list[Event]:
                return [e for e in read_tally(tally) if e.what == "cancelled"]

            wait_until(lambda: len(cancelled()) == 4, timeout=10)
            given_up = cancelled()
            wait_until(
                lambda: any(e.pid == other.pid for e in read_tally(tally) if e.what == "start"),
                timeout=20,
            )
            assert "no contact with the database" in cut_off.log(), "the cut is logged"
            # Heal after 10 s: the cut-off worker learns it was presumed dead.
            time.sleep(max(0.0, cut_at + 10 - time.time()))  # the length of the cut itself
            proxy.forward()
            wait_until(
                lambda: any(
                    pid == cut_off.pid and status == "running"
                    for _, pid, status, _ in _workers(url)
                ),
                timeout=20,
            )
            wait_until(lambda: "was presumed dead" in cut_off.log(), timeout=20)
        finally:
            code = cut_off.stop()
            if other is not None:
                other.stop()
    gave_up_at = max(e.at for e in given_up)
    taken_at = min(e.at for e in read_tally(tally) if e.what == "start" and e.pid != cut_off.pid)
    print(
        f"the cut-off worker gave up its 4 jobs {gave_up_at - cut_at:.2f}s after the cut; the "
        f"other worker started the first of them {taken_at - cut_at:.2f}s after it"
    )
    assert gave_up_at - cut_at < LEASE + 1.0, "fenced within its lease (plus a heartbeat)"
    assert gave_up_at < taken_at, "no overlap: given up before taken back"
    assert all(e.pid == cut_off.pid for e in given_up)
    assert {e.job_id for e in given_up} == set(ids)
    rows = _workers(url)
    dead = [row for row in rows if row[1] == cut_off.pid and row[2] == "dead"]
    assert len(dead) == 1, rows
    assert dead[0][3], "a dead row stays dead: no heartbeat after its death"
    assert code == 0, cut_off.log()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_work_resumes_within_a_second_of_a_restart(
    fresh: ThrowawayCluster, tmp_path: Path, mode: str
) -> None:
    url, tally = fresh.url, tmp_path / "tally"
    worker = WorkerProcess(url, tally, tmp_path / "worker.log", concurrency=4)
    try:
        _enqueue(url, QUICK, [{}] * 20)
        wait_until(lambda: len(read_tally(tally)) == 20, timeout=30)
        fresh.restart(mode)  # returns once the server accepts connections
        back_at = time.time()
        _enqueue(url, QUICK, [{}] * 20)
        wait_until(lambda: len(read_tally(tally)) == 40, timeout=30)
        first = min(e.at for e in read_tally(tally)[20:]) - back_at
        print(f"{mode} restart: first job started {first:.3f}s after the server was back")
        assert first <= 1.0
        assert worker.process.poll() is None, worker.log()
    finally:
        code = worker.stop()
    assert code == 0, worker.log()


@pytest.mark.parametrize(
    ("mode", "job"),
    [("continuous", "finished"), ("run-once", "finished"), ("continuous", "running")],
)
def test_a_worker_retrying_a_write_still_stops_on_sigterm(
    cluster: ThrowawayCluster, tmp_path: Path, mode: str, job: str
) -> None:
    """The database goes away while a job runs: the worker retries recording its outcome (the
    job finished) or cannot put it back (still running at SIGTERM), and SIGTERM still ends it
    within SHUTDOWN_TIMEOUT (2 s) + WRITE_GRACE (5 s) + the deregistration bound (2 s) + 1 s
    for a job thread still running, leaving the job to recovery."""
    url, tally, finish = cluster.url, tmp_path / "tally", tmp_path / "finish"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE soniq_jobs, soniq_workers, soniq_dead_letter_jobs")
    [job_id] = _enqueue(url, WAIT_FOR_FILE, [{"path": str(finish)}])
    flags = ("--run-once",) if mode == "run-once" else ()
    worker = WorkerProcess(url, tally, tmp_path / "worker.log", 1, *flags)
    try:
        wait_until(lambda: [e.what for e in read_tally(tally)] == ["start"], timeout=30)
        cluster.halt()
        try:
            if job == "finished":
                finish.touch()
                wait_until(lambda: "could not record" in worker.log(), timeout=30)
            else:
                wait_until(lambda: "no contact with the database" in worker.log(), timeout=30)
            signalled = time.monotonic()
            worker.process.send_signal(signal.SIGTERM)
            code = worker.process.wait(30)
            took = time.monotonic() - signalled
        finally:
            finish.touch()  # a sync job's thread outlives the worker's wait for it
            cluster.start()
    finally:
        worker.stop()
    print(f"{mode}, job {job}: stopped {took:.2f}s after SIGTERM with the database gone")
    # Plus up to 1 s for a sync job's thread still running (the worker commands' exit).
    assert took < 2 + WRITE_GRACE + DEREGISTER_TIMEOUT + 1 + 1.5, worker.log()
    if job == "finished":
        assert "given up" in worker.log() or "gave up recording 1" in worker.log(), worker.log()
    assert code == 0, worker.log()
    with psycopg.connect(url) as conn:
        [(status,)] = conn.execute(
            "SELECT status FROM soniq_jobs WHERE id = %s", (job_id,)
        ).fetchall()
    assert status == "processing", "left to recovery, not lost"
