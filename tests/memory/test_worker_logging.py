"""What the worker logs: the start line (tasks, queues, concurrency), the periodic summary, one
DEBUG record per finished job; and the standalone CLI's queue default and exit-time count of
job threads. In-process, on the memory backend; waits poll conditions with deadlines."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from soniq import Soniq, _discovery, _worker_cli, cli
from soniq.backends.memory import MemoryBackend
from soniq.worker import Worker
from soniq.worker import worker as worker_module
from tests.helpers import bounded, eventually
from tests.memory.conftest import memory_app, running

LOGGER = "soniq.worker"


@pytest.fixture
def app(backend: MemoryBackend) -> Soniq:
    app = memory_app(backend)

    @app.job(name="log.add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.job(name="log.sync")
    def sync(n: int) -> int:
        return n

    @app.job(name="log.flaky", retries=1, retry_delay=3600)
    def flaky() -> None:
        raise ValueError("flaky")

    @app.job(name="log.doomed", retries=0)
    async def doomed() -> None:
        raise ValueError("doomed")

    return app


def make_worker(app: Soniq, backend: MemoryBackend) -> Worker:
    return Worker(backend, app.registry, app.settings)


def messages(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    found = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return [m for m in found if re.search(pattern, m)]


def job_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and hasattr(r, "outcome")]


# -- the start line ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_start_line_names_tasks_queues_and_concurrency(
    app: Soniq, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    worker = make_worker(app, backend)
    async with running(worker, concurrency=3, queues=["emails", "billing"]):
        pass
    [line] = messages(caplog, r" started: ")
    assert f"worker {worker.id} started: concurrency 3" in line
    assert "queues emails,billing" in line
    assert line.endswith("4 task(s): log.add, log.doomed, log.flaky, log.sync")


@pytest.mark.asyncio
async def test_the_start_line_lists_the_first_tasks_when_there_are_many(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    app = memory_app(backend)
    for n in range(worker_module.LISTED_TASKS + 5):
        app.job(name=f"many.t{n:02d}")(_noop_factory())
    async with running(make_worker(app, backend)):
        pass
    [line] = messages(caplog, r" started: ")
    total = worker_module.LISTED_TASKS + 5
    assert "queues all" in line
    assert f"{total} task(s): many.t00, many.t01, " in line
    assert f"many.t{worker_module.LISTED_TASKS - 1:02d}, ... (5 more)" in line
    assert f"many.t{worker_module.LISTED_TASKS:02d}" not in line


def _noop_factory() -> Any:
    async def noop() -> None:
        return None

    return noop


# -- one DEBUG record per finished job ------------------------------------------------------


@pytest.mark.asyncio
async def test_each_finished_job_is_logged_at_debug_with_its_fields(
    app: Soniq, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    ids = {
        "log.add": await app.enqueue("log.add", args={"a": 1, "b": 2}, queue="maths"),
        "log.sync": await app.enqueue("log.sync", args={"n": 1}),
        "log.flaky": await app.enqueue("log.flaky"),
        "log.doomed": await app.enqueue("log.doomed"),
    }
    worker = make_worker(app, backend)
    async with running(worker, concurrency=2):
        await eventually(lambda: len(job_records(caplog)) == 4)
    by_task = {r.task: r for r in job_records(caplog)}  # type: ignore[attr-defined]
    outcomes = {task: r.outcome for task, r in by_task.items()}  # type: ignore[attr-defined]
    assert outcomes == {
        "log.add": "done",
        "log.sync": "done",
        "log.flaky": "retried",
        "log.doomed": "dead_lettered",
    }
    for task, record in by_task.items():
        fields: dict[str, Any] = record.__dict__
        assert record.levelno == logging.DEBUG
        assert fields["job_id"] == ids[task]
        assert fields["attempt"] == 1
        assert isinstance(fields["duration"], float) and fields["duration"] >= 0
        assert fields["queue"] == ("maths" if task == "log.add" else "default")
        assert record.getMessage().startswith(f"job {ids[task]} ({task}) {fields['outcome']}, ")


@pytest.mark.asyncio
async def test_run_once_logs_its_jobs_too(
    app: Soniq, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    job_id = await app.enqueue("log.sync", args={"n": 5})
    assert await bounded(make_worker(app, backend).run_once())
    [record] = job_records(caplog)
    assert (record.job_id, record.outcome) == (job_id, "done")  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_no_job_record_is_built_without_debug(
    app: Soniq, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    await app.enqueue("log.sync", args={"n": 5})
    assert await bounded(make_worker(app, backend).run_once())
    assert job_records(caplog) == []


# -- the periodic summary ---------------------------------------------------------------------

SUMMARY = re.compile(
    r"worker \S+, last [\d.e-]+s: (?P<done>\d+) done, (?P<retried>\d+) retried, "
    r"(?P<dead>\d+) dead-lettered, (?:.*, )?(?P<failed>\d+) failed write\(s\)$"
)


def summed(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    totals = {"done": 0, "retried": 0, "dead": 0, "failed": 0, "lines": 0}
    for message in messages(caplog, SUMMARY.pattern):
        match = SUMMARY.search(message)
        assert match is not None
        for key in ("done", "retried", "dead", "failed"):
            totals[key] += int(match[key])
        totals["lines"] += 1
    return totals


@pytest.fixture
def short_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "SUMMARY_INTERVAL", 0.01)


def summary_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "soniq-summary"]


@pytest.mark.asyncio
async def test_the_summary_counts_outcomes_and_failed_writes(
    app: Soniq,
    backend: MemoryBackend,
    caplog: pytest.LogCaptureFixture,
    short_summaries: None,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    real_complete = backend.complete_jobs
    failures = [ConnectionError("the database blinked")]

    async def complete_once_failing(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return await real_complete(*args, **kwargs)

    backend.complete_jobs = complete_once_failing  # type: ignore[method-assign]
    for n in range(3):
        await app.enqueue("log.sync", args={"n": n})
    await app.enqueue("log.flaky")
    await app.enqueue("log.doomed")
    worker = make_worker(app, backend)
    async with running(worker):
        expected = {"done": 3, "retried": 1, "dead": 1, "failed": 1}
        await eventually(lambda: {k: summed(caplog)[k] for k in expected} == expected)
        assert len(summary_tasks()) == 1
    assert summary_tasks() == [], "cancelled and awaited at stop"


@pytest.mark.asyncio
async def test_no_summary_when_nothing_happened(
    app: Soniq,
    backend: MemoryBackend,
    caplog: pytest.LogCaptureFixture,
    short_summaries: None,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    worker = make_worker(app, backend)
    ticks: list[float] = []
    log_summary = worker._log_summary

    def counted(interval: float) -> None:
        ticks.append(interval)
        log_summary(interval)

    worker._log_summary = counted  # type: ignore[method-assign]
    async with running(worker):
        await eventually(lambda: len(ticks) >= 3)
        assert summed(caplog)["lines"] == 0, "idle: no summary"
        await app.enqueue("log.add", args={"a": 1, "b": 1})
        await eventually(lambda: summed(caplog)["done"] == 1)
        seen = len(ticks)
        await eventually(lambda: len(ticks) >= seen + 3)
    assert summed(caplog)["lines"] == 1, "nothing since the one summary"
    assert ticks[0] == 0.01


# -- the standalone CLI -----------------------------------------------------------------------


@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``soniq worker`` up to the run: the app it chose and what it would pass to the run."""
    seen: dict[str, Any] = {}

    def chosen(name: str | None) -> Soniq:
        return seen["app"]  # type: ignore[no-any-return]

    def run(
        app: Soniq,
        concurrency: int | None,
        queues: list[str] | None,
        once: bool,
        metrics_port: int | None = None,
        metrics_database: str | None = None,
    ) -> bool:
        seen["queues"] = queues
        seen["metrics_port"] = metrics_port
        return False

    monkeypatch.setenv("SONIQ_JOBS_MODULES", "tests.memory.conftest")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the cwd first
    monkeypatch.setattr(_discovery, "choose_app", chosen)
    monkeypatch.setattr(_worker_cli, "configure_logging", lambda: None)
    monkeypatch.setattr(_worker_cli, "run", run)
    return seen


def test_soniq_worker_serves_every_queue_whatever_the_queues_setting_says(
    cli_run: dict[str, Any], backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    cli_run["app"] = memory_app(backend, queues=["emails", "billing"])
    assert cli.main(["worker"]) == 0
    assert cli_run["queues"] == [], "an empty list: every queue"
    [warning] = messages(caplog, "QUEUES")
    assert "does not apply to `soniq worker`" in warning and "--queues=emails,billing" in warning

    caplog.clear()
    assert cli.main(["worker", "--queues", "reports"]) == 0
    assert cli_run["queues"] == ["reports"]
    assert messages(caplog, "QUEUES") == []


def test_soniq_worker_ignores_soniq_queues_in_the_environment(
    cli_run: dict[str, Any], backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIQ_QUEUES", "elsewhere")
    cli_run["app"] = memory_app(backend)
    assert cli_run["app"].settings.queues == ("elsewhere",)
    assert cli.main(["worker"]) == 0
    assert cli_run["queues"] == []


@pytest.mark.asyncio
async def test_an_empty_queue_list_means_every_queue_for_the_worker(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    app = memory_app(backend, queues=["emails"])
    app.job(name="log.noop")(_noop_factory())
    async with running(make_worker(app, backend), queues=[]):
        pass
    async with running(make_worker(app, backend)):
        pass
    every, scoped = messages(caplog, r" started: ")
    assert "queues all, " in every
    assert "queues emails, " in scoped, "None: the QUEUES setting"


def test_idle_job_threads_do_not_count_as_running_at_exit() -> None:
    pool = ThreadPoolExecutor(4, thread_name_prefix="soniq-job")
    for future in [pool.submit(int) for _ in range(8)]:
        future.result()
    pool.shutdown(wait=False, cancel_futures=True)
    assert _worker_cli.job_threads_left(grace=10.0) == 0


def test_a_thread_still_running_a_job_counts() -> None:
    release = threading.Event()
    pool = ThreadPoolExecutor(3, thread_name_prefix="soniq-job")
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    pool.submit(stuck)
    for future in [pool.submit(int) for _ in range(4)]:
        future.result()
    assert started.wait(10)
    pool.shutdown(wait=False, cancel_futures=True)
    try:
        assert _worker_cli.job_threads_left(grace=0.2) == 1
    finally:
        release.set()
    assert _worker_cli.job_threads_left(grace=10.0) == 0
