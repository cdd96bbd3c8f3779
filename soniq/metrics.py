"""Prometheus metrics, through the standard ``prometheus_client`` library (the optional extra
``django-soniq[prometheus]``); nothing here writes the exposition format by hand.

In a worker (``soniq worker --metrics-port N``, ``manage.py soniq_worker --metrics-port N``,
``app.run_worker(metrics_port=N)``), as the worker's observer of every attempt:

- ``soniq_jobs_processed_total{task,queue,outcome}``: attempts ended, ``outcome`` being
  ``succeeded``, ``retried`` (failed, another attempt will come) or ``failed`` (failed for
  good: out of attempts, a result too large to store, an error the job may not retry, or
  ``soniq.Discard``), ``cancelled`` (``soniq.Cancel``, or an abort) or ``snoozed``
  (``soniq.Snooze``);
- ``soniq_job_duration_seconds{task,queue}``: how long the job's function ran (histogram);
- ``soniq_job_wait_seconds{queue}``: from the job's due time (its enqueue, or its
  ``scheduled_at``) to its start (histogram);
- ``soniq_worker_busy_slots``: slots taken now.

Queue gauges, read from the database at most every :data:`QUEUE_TTL` seconds (a scrape in
between gets the figures read last), in the worker (through Django's connection to its
database: the project's, or the minimal configuration ``soniq worker`` makes) and in the
Django view ``soniq.views.metrics``:

- ``soniq_queue_jobs{queue,state}``: ``state`` ``due``, ``scheduled``, ``processing``;
- ``soniq_queue_dead_letters{queue}``;
- ``soniq_queue_oldest_due_age_seconds{queue}`` (0 when nothing is due);
- ``soniq_workers_live``: workers running with a recent heartbeat.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from soniq.core.errors import ConfigurationError
from soniq.core.records import ClaimedJob

QUEUE_TTL = 5.0


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "metrics need prometheus_client: pip install 'django-soniq[prometheus]'"
        ) from None
    return prometheus_client


class _Histograms:
    """Bucket counts and sums per label values, kept in plain dicts and updated without a
    lock from one thread (the worker's event loop): a fraction of a microsecond per
    observation on the worker's hot path, where ``prometheus_client.Histogram`` (locks on
    every bucket and sum) costs several. The exposition is still the library's
    (``HistogramMetricFamily``), built from copies (see :meth:`family`)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        if value < 0.0:  # a clock stepped back
            value = 0.0
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.bounds) + 1)
            self.sums[labels] = 0.0
        counts[bisect_left(self.bounds, value)] += 1
        self.sums[labels] += value

    def family(self, name: str, text: str, label_names: Sequence[str]) -> Any:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        family = HistogramMetricFamily(name, text, labels=label_names)
        # Copies taken in one step each (dict() and list() of these copy in C, without
        # letting the loop thread run in between), so the observing thread needs no lock. A
        # scrape may see a sum one observation apart from its buckets, never torn buckets.
        sums = dict(self.sums)
        for labels, shared in dict(self.counts).items():
            counts = list(shared)
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(labels), buckets, sums.get(labels, 0.0))
        return family


class WorkerMetrics:
    """The worker's own metrics, in a registry of their own (``registry``): the worker's
    observer, called on its event loop only; a scrape, from the HTTP thread, reads copies."""

    def __init__(self) -> None:
        client = _client()
        self.registry = client.CollectorRegistry()
        self.busy = client.Gauge(
            "soniq_worker_busy_slots", "The worker's slots taken now.", registry=self.registry
        )
        self._processed: dict[tuple[str, str, str], int] = {}
        self._durations = _Histograms(client.Histogram.DEFAULT_BUCKETS[:-1])
        self._waits = _Histograms(client.Histogram.DEFAULT_BUCKETS[:-1])
        self.registry.register(_JobCollector(self))
        self.server: Any = None

    def job_ended(self, job: ClaimedJob, outcome: str, started: float) -> None:
        """The worker's observer (soniq.worker.observer.JobObserver): one call per attempt,
        on the worker's event loop, about 1.1 µs. ``started``: ``time.monotonic()``."""
        took = time.monotonic() - started
        task, queue = job.task_name, job.queue
        key = (task, queue, outcome)
        processed = self._processed
        processed[key] = processed.get(key, 0) + 1
        self._durations.observe((task, queue), took)
        due = job.scheduled_at or job.created_at
        if due is not None:  # the wait: from the due time to the start, on the wall clock
            self._waits.observe((queue,), time.time() - took - due.timestamp())

    def families(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily

        processed = CounterMetricFamily(
            "soniq_jobs_processed",
            "Job attempts ended, by task, queue and outcome (succeeded, retried, failed, "
            "cancelled, snoozed).",
            labels=["task", "queue", "outcome"],
        )
        for labels, count in dict(self._processed).items():  # a copy: see _Histograms.family
            processed.add_metric(list(labels), count)
        durations = self._durations.family(
            "soniq_job_duration_seconds", "How long a job's function ran.", ["task", "queue"]
        )
        waits = self._waits.family(
            "soniq_job_wait_seconds",
            "From a job's due time (enqueue or scheduled_at) to its start.",
            ["queue"],
        )
        return [processed, durations, waits]

    def serve(self, worker: Any, port: int, app: Any, database: str | None = None) -> None:
        """Serve this registry on ``port`` (all interfaces), the busy slots read from
        ``worker``, and the queue gauges read through the Django database alias
        ``database``: by default ``app``'s own when it keeps its jobs in a Django database,
        none otherwise."""
        self.busy.set_function(lambda: worker.busy_slots)
        from soniq import _integration

        own_django_database = not app.settings.database_url
        if database is None and own_django_database and _integration.django_is_configured():
            database = app.settings.database
        if database is not None:
            reader = django_reader(database, close=True)
            self.registry.register(QueueCollector(reader))
        client = _client()
        try:
            self.server, _thread = client.start_http_server(port, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on port {port}: {exc}") from exc

    def stop(self) -> None:
        """Stop serving (the worker has stopped)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _JobCollector:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield from self._metrics.families()


@dataclass(frozen=True)
class QueueFigures:
    queues: list[Any]  # soniq.commands.status.QueueStatus
    live_workers: int


class QueueCollector:
    """The queue gauges, from ``read()`` at most every ``ttl`` seconds."""

    def __init__(self, read: Callable[[], QueueFigures], ttl: float = QUEUE_TTL) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, QueueFigures] | None = None

    def describe(self) -> list[Any]:
        return []  # nothing read at registration

    def figures(self) -> QueueFigures:
        with self._lock:  # scrapes at once read once
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                self._cached = (now, self._read())
            return self._cached[1]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        figures = self.figures()
        jobs = GaugeMetricFamily(
            "soniq_queue_jobs",
            "Jobs per queue: due, scheduled, processing.",
            labels=["queue", "state"],
        )
        dead = GaugeMetricFamily(
            "soniq_queue_dead_letters", "Dead letters per queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "soniq_queue_oldest_due_age_seconds",
            "How long the oldest due job of the queue has waited (0: none due).",
            labels=["queue"],
        )
        for entry in figures.queues:
            jobs.add_metric([entry.queue, "due"], entry.due)
            jobs.add_metric([entry.queue, "scheduled"], entry.scheduled)
            jobs.add_metric([entry.queue, "processing"], entry.processing)
            dead.add_metric([entry.queue], entry.dead_letters)
            age.add_metric([entry.queue], entry.oldest_due_age_seconds or 0.0)
        yield jobs
        yield dead
        yield age
        yield GaugeMetricFamily(
            "soniq_workers_live",
            "Workers running with a heartbeat within HEARTBEAT_TIMEOUT.",
            value=figures.live_workers,
        )


def django_reader(alias: str, *, close: bool) -> Callable[[], QueueFigures]:
    """The figures, read through Django's connection to ``alias`` (indexed queries, see
    ``soniq status``). ``close``: close that connection after each read, for a thread that
    Django does not manage (the worker's metrics server starts one per scrape)."""

    def read() -> QueueFigures:
        from django.db import connections

        from soniq.commands._output import now as database_now
        from soniq.commands._settings import soniq_settings
        from soniq.commands.status import queues, workers

        now = database_now()
        try:
            found = queues(alias, now)
            live = [
                w
                for w in workers(alias, now, soniq_settings().heartbeat_timeout)
                if w.state == "alive"
            ]
            return QueueFigures(found, len(live))
        finally:
            if close:
                connections[alias].close()

    return read
