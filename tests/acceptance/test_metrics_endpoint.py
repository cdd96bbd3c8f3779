"""A real ``manage.py soniq_worker --metrics-port`` process, scraped over HTTP and parsed with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from soniq import Soniq
from tests.acceptance import jobs
from tests.acceptance.processes import FAST_SETTINGS, ROOT, WorkerProcess
from tests.helpers import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_worker_serves_its_metrics(start_worker: Callable[..., WorkerProcess]) -> None:
    port = free_port()
    worker = start_worker("--concurrency", "4", "--metrics-port", str(port))
    worker.wait_registered()
    jobs.app.enqueue_many_sync(jobs.count, [{"n": n} for n in range(20)])
    jobs.flaky.enqueue(fail_times=1)

    labels = (("queue", "default"), ("task", "acc.count"))
    succeeded = ("soniq_jobs_processed_total", (("outcome", "succeeded"), *labels))
    retried = (
        "soniq_jobs_processed_total",
        (("outcome", "retried"), ("queue", "default"), ("task", "acc.flaky")),
    )

    def all_counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = scrape(port)
        return found if found.get(succeeded) == 20 and found.get(retried) == 1 else None

    found = wait_until(all_counted, timeout=30)
    assert found[("soniq_job_duration_seconds_count", labels)] == 20
    assert found[("soniq_job_wait_seconds_count", (("queue", "default"),))] >= 21
    assert found[("soniq_workers_live", ())] == 1

    # A slow job holds a slot while it runs, and gives it back.
    jobs.slow.enqueue(seconds=1.5)
    wait_until(lambda: scrape(port)[("soniq_worker_busy_slots", ())] == 1, timeout=30)
    wait_until(lambda: scrape(port)[("soniq_worker_busy_slots", ())] == 0, timeout=30)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()


def test_a_port_in_use_stops_the_worker_with_a_message(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker("--metrics-port", str(port))
        assert worker.wait(timeout=60) != 0
    assert f"cannot serve metrics on port {port}" in worker.output()


def test_a_standalone_worker_serves_the_queue_gauges_too(tmp_path: Path) -> None:
    """``soniq worker`` outside Django, on SQLite: its own metrics and the queue gauges."""
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES="tests.acceptance.standalone_jobs",
        PYTHONPATH=str(ROOT),
        **FAST_SETTINGS,
    )
    soniq = [sys.executable, "-m", "soniq.cli"]
    setup = subprocess.run([*soniq, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr

    async def enqueue() -> None:
        app = Soniq(database_url=url)
        try:
            await app.enqueue_many("standalone.double", [{"n": n} for n in range(5)])
            await app.enqueue(
                "standalone.double",
                args={"n": 9},
                scheduled_at=datetime.now(UTC) + timedelta(hours=1),
            )
        finally:
            await app.close()

    asyncio.run(enqueue())
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*soniq, "worker", "--metrics-port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        succeeded = (
            "soniq_jobs_processed_total",
            (("outcome", "succeeded"), ("queue", "default"), ("task", "standalone.double")),
        )

        def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            assert worker.poll() is None, log.read_text()
            try:
                found = scrape(port)
            except OSError:
                return None  # not listening yet
            # The gauges are read at most every 5 s: wait for a reading after the work.
            states = [
                found.get(("soniq_queue_jobs", (("queue", "default"), ("state", state))))
                for state in ("due", "scheduled", "processing")
            ]
            return found if found.get(succeeded) == 5 and states == [0, 1, 0] else None

        found = wait_until(settled, timeout=30, interval=0.2)
        assert found[("soniq_workers_live", ())] == 1
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
