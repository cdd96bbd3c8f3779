"""The Prometheus metrics: the worker's observer, the queue gauges and the Django view, each
parsed back with prometheus_client's own parser. A real worker serving them over HTTP is in
tests/acceptance/test_metrics_endpoint.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from soniq import ConfigurationError, Discard, JobContext, Retry, Soniq
from soniq.metrics import QueueCollector, QueueFigures, WorkerMetrics
from tests.rows import Rows


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.asyncio
async def test_worker_metrics_count_outcomes_durations_and_waits() -> None:
    """A real worker (memory backend) with the metrics as its observer."""
    app = Soniq(database_url="memory://", max_result_bytes=1024)

    @app.job(name="m.ok")
    async def ok() -> int:
        return 42

    @app.job(name="m.flaky", retries=1, retry_delay=0)
    def flaky(ctx: JobContext) -> int:  # a sync job, run in the thread pool
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return ctx.attempt

    @app.job(name="m.bad", retries=0)
    async def bad() -> None:
        raise ValueError("always")

    @app.job(name="m.strict", retries=3, no_retry_on=ValueError)
    async def strict() -> None:
        raise ValueError("never retried")

    @app.job(name="m.control", retries=3)
    def control(ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise Retry(0)  # retried, as it asked
        raise Discard("done with it")  # failed for good, attempts left or not

    @app.job(name="m.huge", retries=3)
    async def huge() -> str:
        return "x" * 2000  # over max_result_bytes: failed for good, retries left or not

    await ok.using(scheduled_at=datetime.now(UTC) - timedelta(seconds=2)).aenqueue()
    for job in (flaky, bad, strict, control, huge):
        await job.aenqueue()
    metrics = WorkerMetrics()
    worker = app.make_worker(observer=metrics)
    try:
        await worker.run(concurrency=2, run_once=True)
    finally:
        await worker.backend.close()
    found = samples(generate_latest(metrics.registry).decode())

    def processed(task: str, outcome: str) -> float | None:
        labels = (("outcome", outcome), ("queue", "default"), ("task", task))
        return found.get(("soniq_jobs_processed_total", labels))

    assert processed("m.ok", "succeeded") == 1
    assert (processed("m.flaky", "retried"), processed("m.flaky", "succeeded")) == (1, 1)
    assert processed("m.bad", "failed") == 1
    # An error the job may not retry: failed for good, attempts left or not.
    assert processed("m.strict", "failed") == 1 and processed("m.strict", "retried") is None
    assert (processed("m.control", "retried"), processed("m.control", "failed")) == (1, 1)
    # Out of attempts, or a result too large to store: failed for good.
    assert processed("m.huge", "failed") == 1 and processed("m.huge", "retried") is None
    durations = {
        labels: value
        for (name, labels), value in found.items()
        if name == "soniq_job_duration_seconds_count"
    }
    assert sum(durations.values()) == 8
    assert found[("soniq_job_wait_seconds_count", (("queue", "default"),))] == 8
    # m.ok waited at least the 2 s since its scheduled_at, the due time.
    assert found[("soniq_job_wait_seconds_sum", (("queue", "default"),))] >= 2


def test_the_queue_collector_reads_at_most_every_ttl() -> None:
    from soniq.commands.status import QueueStatus

    reads: list[int] = []

    def read() -> QueueFigures:
        reads.append(1)
        entry = QueueStatus("default", due=3, scheduled=1, processing=2, dead_letters=4)
        entry.oldest_due_age_seconds = 12.5
        return QueueFigures([entry], live_workers=2)

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(QueueCollector(read, ttl=60))
    first = samples(generate_latest(registry).decode())
    generate_latest(registry)
    assert len(reads) == 1  # cached
    assert first[("soniq_queue_jobs", (("queue", "default"), ("state", "due")))] == 3
    assert first[("soniq_queue_jobs", (("queue", "default"), ("state", "processing")))] == 2
    assert first[("soniq_queue_dead_letters", (("queue", "default"),))] == 4
    assert first[("soniq_queue_oldest_due_age_seconds", (("queue", "default"),))] == 12.5
    assert first[("soniq_workers_live", ())] == 2


@pytest.fixture(params=["default", "sqlite"], ids=["postgres", "sqlite"])
def rows(request: pytest.FixtureRequest) -> Iterator[Rows]:
    alias = str(request.param)
    with override_settings(SONIQ={**settings.SONIQ, "DATABASE": alias}):
        yield Rows(alias)


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_the_view_serves_the_queue_gauges(rows: Rows) -> None:
    import soniq.views

    soniq.views._registries.clear()  # each test's database afresh
    now = datetime.now(UTC)
    rows.worker()
    rows.job(scheduled_at=now - timedelta(minutes=1))
    rows.scheduled(queue="emails")
    rows.dead_letter(queue="emails")
    response = Client().get("/soniq/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content.decode())
    assert found[("soniq_queue_jobs", (("queue", "default"), ("state", "due")))] == 1
    assert found[("soniq_queue_jobs", (("queue", "emails"), ("state", "scheduled")))] == 1
    assert found[("soniq_queue_dead_letters", (("queue", "emails"),))] == 1
    assert 59 <= found[("soniq_queue_oldest_due_age_seconds", (("queue", "default"),))] < 120
    assert found[("soniq_workers_live", ())] == 1


def test_metrics_without_prometheus_client_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ConfigurationError, match=r"django-soniq\[prometheus\]"):
        WorkerMetrics()


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_metrics_port_is_refused(port: str) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"metrics[-_]port"):
        call_command("soniq_worker", "--metrics-port", port)


def test_extra_hooks_of_an_unknown_event_are_refused() -> None:
    from soniq import Soniq

    app = Soniq(database_url="memory://")
    with pytest.raises(ValueError, match="unknown hook event 'after_everything'"):
        app.make_worker(extra_hooks={"after_everything": [print]})
