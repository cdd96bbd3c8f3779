"""Test helpers: run queued jobs inline, and assert what was enqueued.

Made for ordinary Django ``TestCase`` tests: :func:`drain` runs jobs on Django's own
connection, inside the test's transaction, so jobs enqueued by the code under test are visible
to it without ``TransactionTestCase``. Jobs run in the calling thread (async jobs through
``async_to_sync``), so their ORM queries see the test's data too. Hooks, signals and timeouts
are not applied by ``drain``; retries and dead letters are, exactly as the worker records them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections

from soniq.app import Soniq
from soniq.backends.base import Row, Statement
from soniq.backends.postgres import worker_statements as postgres
from soniq.backends.rows import decode_claimed
from soniq.backends.sqlite import worker_statements as sqlite
from soniq.backends.sqlite.statements import format_time
from soniq.core.control import Cancel, Retry, Snooze, dead_letter_at_once, snooze_refused
from soniq.core.errors import ConfigurationError
from soniq.core.records import ClaimedJob
from soniq.core.retry import retry_delay_seconds
from soniq.django_backend import format_placeholders
from soniq.worker.execution import error_record, job_arguments, job_context
from soniq.worker.results import ResultTooLargeError, encode_result

__all__ = ["assert_enqueued", "assert_not_enqueued", "drain", "enqueued"]

# Far enough ahead that every scheduled job and pending retry is "due" for run_scheduled.
_FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


def _app(app: Soniq | None) -> Soniq:
    from soniq import django_worker

    if app is not None:
        django_worker.serve_tasks(app)
        return app
    from django.conf import settings

    from soniq.core.settings import build_settings

    # As the worker command does: SONIQ["APP"], else the single app with jobs (or, with only
    # django.tasks tasks, the app they are stored through).
    path = build_settings(django_values=getattr(settings, "SONIQ", None)).app
    return django_worker.project_app(path)


class _Inline:
    """The worker's four writes, on Django's connection for soniq's alias."""

    def __init__(self, app: Soniq) -> None:
        if app.settings.database_url:
            raise ConfigurationError(
                "soniq.testing works on Django's connection (SONIQ['DATABASE']); this app has "
                "DATABASE_URL set and keeps its jobs elsewhere. For a memory:// app, run "
                "`await app.run_worker(run_once=True)` instead."
            )
        self.connection = connections[app.settings.database]
        self.vendor = self.connection.vendor
        if self.vendor not in ("postgresql", "sqlite"):
            raise ConfigurationError(f"soniq.testing needs PostgreSQL or SQLite, not {self.vendor}")
        self.worker_id = str(uuid.uuid4())
        self.history_limit = app.settings.error_history_limit

    def run(self, statement: Statement) -> tuple[list[Row], int]:
        sql = statement.sql
        if self.vendor == "sqlite":
            # The worker's SQLite statements are written for sqlite3.
            sql = format_placeholders(sql)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, statement.params)
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount

    def _now(self, moment: datetime | None) -> Any:
        if self.vendor == "postgresql":
            return moment
        return format_time(moment or datetime.now(UTC))

    def claim(
        self, names: list[str], queues: list[str] | None, due_by: datetime | None
    ) -> Row | None:
        arguments: dict[str, Any] = dict(
            worker_id=self.worker_id, task_names=names, queues=queues, limit=1
        )
        if self.vendor == "postgresql":
            statement = postgres.claim_jobs(**arguments, now=due_by)
        else:
            statement = sqlite.claim_jobs(**arguments, now=self._now(due_by))
        rows, _ = self.run(statement)
        return rows[0] if rows else None

    def complete(self, job: ClaimedJob, result: str | None) -> None:
        if self.vendor == "postgresql":
            self.run(postgres.record_progress(self.worker_id, done=[(job.id, job.attempt, result)]))
        else:
            self.run(
                sqlite.complete_job(self.worker_id, job.id, job.attempt, result, self._now(None))
            )

    def retry(self, job: ClaimedJob, delay: float, error: str) -> None:
        if self.vendor == "postgresql":
            self.run(
                postgres.retry_job(
                    self.worker_id,
                    job.id,
                    job.attempt,
                    delay,
                    error,
                    history_limit=self.history_limit,
                )
            )
        else:
            run_at = self._now(datetime.now(UTC) + timedelta(seconds=delay))
            self.run(
                sqlite.retry_job(
                    self.worker_id,
                    job.id,
                    job.attempt,
                    run_at,
                    error,
                    history_limit=self.history_limit,
                )
            )

    def snooze(self, job: ClaimedJob, delay: float, entry: str) -> None:
        if self.vendor == "postgresql":
            self.run(
                postgres.snooze_job(
                    self.worker_id,
                    job.id,
                    job.attempt,
                    delay,
                    entry,
                    history_limit=self.history_limit,
                )
            )
        else:
            run_at = self._now(datetime.now(UTC) + timedelta(seconds=delay))
            self.run(
                sqlite.snooze_job(
                    self.worker_id,
                    job.id,
                    job.attempt,
                    run_at,
                    entry,
                    history_limit=self.history_limit,
                )
            )

    def cancel(self, job: ClaimedJob, entry: str) -> None:
        if self.vendor == "postgresql":
            statement = postgres.cancel_running_job(
                self.worker_id, job.id, job.attempt, entry, history_limit=self.history_limit
            )
        else:
            statement = sqlite.cancel_running_job(
                self.worker_id,
                job.id,
                job.attempt,
                entry,
                None,
                self._now(None),
                history_limit=self.history_limit,
            )
        self.run(statement)

    def dead_letter(self, job: ClaimedJob, error: str, reason: str = "max_attempts") -> None:
        if self.vendor == "postgresql":
            self.run(
                postgres.dead_letter_job(
                    self.worker_id,
                    job.id,
                    job.attempt,
                    error,
                    reason,
                    history_limit=self.history_limit,
                )
            )
        else:
            for statement in sqlite.dead_letter_job(
                self.worker_id,
                job.id,
                job.attempt,
                error,
                reason,
                self._now(None),
                history_limit=self.history_limit,
            ):
                self.run(statement)


def drain(
    app: Soniq | None = None,
    *,
    queues: list[str] | None = None,
    max_jobs: int | None = None,
    run_scheduled: bool = False,
) -> int:
    """Run queued jobs inline until none is due; returns how many attempts ran.

    ``run_scheduled=True`` treats every job as due, scheduled ones and pending retries
    included, so a job that fails twice then succeeds settles in one call. ``app`` defaults to
    the project's app (``SONIQ["APP"]``, or the single Soniq instance with jobs).
    """
    application = _app(app)
    inline = _Inline(application)
    queues = queues or None  # like the worker: no queue list means every queue
    names = application.registry.names()
    ran = 0
    while names and (max_jobs is None or ran < max_jobs):
        row = inline.claim(names, queues, _FAR_FUTURE if run_scheduled else None)
        if row is None:
            break
        job = decode_claimed(row, inline.worker_id)
        spec = application.registry.get(job.task_name)
        assert spec is not None
        ran += 1
        try:
            kwargs = job_arguments(spec, job, job_context(job, inline.worker_id))
            value = async_to_sync(spec.func)(**kwargs) if spec.is_async else spec.func(**kwargs)
        except Exception as exc:
            error = json.dumps(error_record(job, inline.worker_id, exc))
            at_once = dead_letter_at_once(spec, exc) or snooze_refused(exc, job.snoozes)
            if isinstance(exc, Cancel):
                inline.cancel(job, error)
            elif isinstance(exc, Snooze) and at_once is None:
                inline.snooze(job, exc.delay, error)
            elif at_once is not None:
                inline.dead_letter(job, error, at_once)
            elif job.attempt >= job.max_attempts:
                inline.dead_letter(job, error)
            else:
                if isinstance(exc, Retry):  # the job's own delay
                    delay = exc.delay
                else:
                    delay = retry_delay_seconds(spec, job.attempt)
                inline.retry(job, delay, error)
            continue
        settings = application.settings
        try:
            result = encode_result(
                job,
                value,
                max_bytes=settings.max_result_bytes,
                masked_names=settings.admin_masked_args,
            )
        except ResultTooLargeError as exc:
            inline.dead_letter(
                job, json.dumps(error_record(job, inline.worker_id, exc)), exc.reason
            )
            continue
        inline.complete(job, result)
    return ran


def _task_name(job: Any) -> str:
    name = getattr(job, "job_name", None) or getattr(job, "name", None) or job
    if not isinstance(name, str):
        raise TypeError(f"pass a job function, a TaskRef or a task name, got {job!r}")
    return name


def enqueued(job: Any, app: Soniq | None = None, **args: Any) -> list[Any]:
    """The queued ``soniq.models.Job`` rows of ``job`` whose args include ``args``."""
    from soniq.models import Job

    alias = _Inline(_app(app)).connection.alias  # refuses an app whose jobs live elsewhere
    rows = Job.objects.using(alias).filter(task_name=_task_name(job), status="queued")
    return [row for row in rows.order_by("created_at") if _matches(row.args, args)]


def _matches(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    # Compared as JSON, the way the job will receive them (tuples are lists, ...).
    return all(
        key in stored and stored[key] == json.loads(json.dumps(value))
        for key, value in wanted.items()
    )


def assert_enqueued(job: Any, app: Soniq | None = None, **args: Any) -> Any:
    """Fail unless exactly one queued job of ``job`` has (at least) these arguments;
    returns its row."""
    found = enqueued(job, app, **args)
    if len(found) != 1:
        everything = [row.args for row in enqueued(job, app)]
        raise AssertionError(
            f"expected one queued {_task_name(job)} with {args}, found {len(found)}; "
            f"queued {_task_name(job)} jobs: {everything}"
        )
    return found[0]


def assert_not_enqueued(job: Any, app: Soniq | None = None, **args: Any) -> None:
    """Fail if any queued job of ``job`` has (at least) these arguments."""
    found = enqueued(job, app, **args)
    if found:
        raise AssertionError(
            f"expected no queued {_task_name(job)} with {args}, found {[r.args for r in found]}"
        )
