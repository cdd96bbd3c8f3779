"""The SQLite statements, on the tables Django's migrations create.

Values are stored the way Django stores them on SQLite, so the ORM (and the admin) read what
soniq writes: UUIDs as 32 hex digits, times as naive UTC text, JSON as text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from soniq.backends.base import OperatorStatements, Statement
from soniq.core.records import NewJob

# SQLite allows 32766 parameters per statement; 500 rows of 10 stay far below it.
ROWS_PER_INSERT = 500

_COLUMNS = (
    "id, task_name, args, queue, priority, status, attempts, max_attempts, "
    "scheduled_at, created_at, errors, dedup_key, worker_losses"
)
_ROW = "(%s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s, '[]', %s, 0)"

# A job with a lock takes the next place after the live jobs and the dead letters of its lock
# (writers take turns on SQLite, so two inserts cannot take the same place; a requeued dead
# letter keeps its place ahead of the jobs enqueued after it). The status list repeats the
# partial index's condition term for term, or SQLite would not use the index.
_LOCKED_ROW = (
    _ROW[:-1] + ", %s, CASE WHEN %s IS NULL THEN NULL ELSE (SELECT COALESCE(MAX(last), 0) + 1 "
    "FROM (SELECT MAX(lock_order) AS last FROM soniq_jobs "
    "WHERE lock = %s AND status IN ('queued', 'processing') "
    "UNION ALL SELECT MAX(lock_order) FROM soniq_dead_letter_jobs WHERE lock = %s)) END)"
)

# Must match the partial unique index "soniq_jobs_dedup_uniq" (soniq/models.py).
_DEDUP_ARBITER = (
    "(task_name, dedup_key) WHERE (dedup_key IS NOT NULL AND status IN ('queued', 'processing'))"
)

_SELECT_JOB = """
SELECT id, task_name, status, args, queue, priority, attempts, max_attempts,
       scheduled_at, created_at, started_at, finished_at, worker_id, result,
       errors, errors_dropped, dedup_key, NULL, snoozes, abort_requested_at,
       abort_requested_by, lock
FROM soniq_jobs WHERE id = %s
UNION ALL
SELECT id, task_name, 'dead_letter', args, queue, priority, attempts, max_attempts,
       scheduled_at, created_at, started_at, dead_lettered_at, worker_id, NULL,
       errors, errors_dropped, dedup_key, reason, 0, NULL, NULL, lock
FROM soniq_dead_letter_jobs WHERE id = %s
LIMIT 1
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """Django's SQLite storage format: naive UTC with microseconds."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class SQLiteDialect:
    name = "sqlite"

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock

    @property
    def operator(self) -> OperatorStatements:
        # Imported here: that module builds on this one's format_time.
        from soniq.backends.sqlite.operator_statements import SQLiteOperatorStatements

        return SQLiteOperatorStatements(self.clock)

    def _row(self, job: NewJob, now: str) -> tuple[Any, ...]:
        scheduled = now if job.scheduled_at is None else format_time(job.scheduled_at)
        return (
            job.id.hex,
            job.task_name,
            job.args_json,
            job.queue,
            job.priority,
            job.max_attempts,
            scheduled,
            now,
            job.dedup_key,
        )

    def insert_job(self, job: NewJob) -> Statement:
        sql = (
            f"INSERT INTO soniq_jobs ({_COLUMNS}, lock, lock_order) VALUES {_LOCKED_ROW} "
            f"ON CONFLICT {_DEDUP_ARBITER} DO NOTHING RETURNING id"
        )
        return Statement(sql, (*self._row(job, format_time(self.clock())), *[job.lock] * 4))

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Statement]:
        now = format_time(self.clock())
        statements = []
        for start in range(0, len(jobs), ROWS_PER_INSERT):
            chunk = jobs[start : start + ROWS_PER_INSERT]
            values = ", ".join([_ROW] * len(chunk))
            params = [value for job in chunk for value in self._row(job, now)]
            statements.append(
                Statement(f"INSERT INTO soniq_jobs ({_COLUMNS}) VALUES {values}", params)
            )
        return statements

    def find_live_duplicate(self, task_name: str, dedup_key: str) -> Statement:
        return Statement(
            "SELECT id FROM soniq_jobs WHERE task_name = %s AND dedup_key = %s "
            "AND status IN ('queued', 'processing')",
            (task_name, dedup_key),
        )

    def select_job(self, job_id: str) -> Statement:
        key = job_id.replace("-", "")
        return Statement(_SELECT_JOB, (key, key))
