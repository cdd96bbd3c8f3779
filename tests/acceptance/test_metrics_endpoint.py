"""A real ``manage.py soniq_worker --metrics-port`` process, scraped over HTTP and parsed with
prometheus_client's own parser."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
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
