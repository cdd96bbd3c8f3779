"""The SQLite statements of operator actions (see the PostgreSQL module for the contract).

Ids travel as one JSON list of 32-digit hex strings (Django's UUID storage on SQLite) read with
``json_each``; times are the dialect's clock in Django's storage format.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from soniq.backends.base import Statement
from soniq.backends.sqlite.statements import format_time

_IDS = "(SELECT value FROM json_each(%s))"

_KEY_FREE = """(
    {row}.dedup_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS live
        WHERE live.task_name = {row}.task_name AND live.dedup_key = {row}.dedup_key
          AND live.status IN ('queued', 'processing') AND live.id <> {row}.id
    )
)"""

# Of several rows of the batch with the same key, only the smallest id goes back (see the
# PostgreSQL module).
_FIRST_OF_KEY = """NOT EXISTS (
    SELECT 1 FROM {table} AS twin
    WHERE twin.id IN {ids} AND twin.id < {row}.id{also}
      AND twin.task_name = {row}.task_name AND twin.dedup_key = {row}.dedup_key
)"""

_FIRST_CANCELLED = _FIRST_OF_KEY.format(
    table="soniq_jobs", ids=_IDS, row="job", also=" AND twin.status = 'cancelled'"
)
_FIRST_DEAD = _FIRST_OF_KEY.format(table="soniq_dead_letter_jobs", ids=_IDS, row="dead", also="")

_RETRY_JOBS = f"""
UPDATE soniq_jobs AS job
SET status = 'queued', scheduled_at = %s, finished_at = NULL,
    abort_requested_at = NULL, abort_requested_by = NULL
WHERE job.id IN {_IDS}
  AND (job.status = 'queued' OR (
      job.status = 'cancelled' AND {_KEY_FREE.format(row="job")}
      AND {_FIRST_CANCELLED}
  ))
RETURNING id, queue
"""

_CANCEL_JOBS = f"""
UPDATE soniq_jobs SET status = 'cancelled', finished_at = %s
WHERE id IN {_IDS} AND status = 'queued'
RETURNING id
"""

# A running job's abort requested (the first request's time and author kept).
_REQUEST_ABORTS = f"""
UPDATE soniq_jobs SET abort_requested_at = coalesce(abort_requested_at, %s),
    abort_requested_by = coalesce(abort_requested_by, %s)
WHERE id IN {_IDS} AND status = 'processing'
RETURNING id
"""

# Copy then delete, in the caller's transaction: SQLite cannot feed an INSERT from a DELETE.
_COPY_DEAD_LETTERS = f"""
INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, max_attempts,
                        scheduled_at, created_at, errors, errors_dropped, dedup_key,
                        worker_losses, lock, lock_order)
SELECT id, task_name, args, queue, priority, 'queued', 0, max_attempts, %s, created_at, errors,
       errors_dropped, dedup_key, 0, lock, lock_order
FROM soniq_dead_letter_jobs AS dead
WHERE dead.id IN {_IDS} AND {_KEY_FREE.format(row="dead")}
  AND {_FIRST_DEAD}
RETURNING id, queue
"""
_FORGET_COPIED = f"""
DELETE FROM soniq_dead_letter_jobs
WHERE id IN {_IDS} AND id IN (SELECT id FROM soniq_jobs WHERE id IN {_IDS})
"""

_DELETE_DEAD_LETTERS = f"DELETE FROM soniq_dead_letter_jobs WHERE id IN {_IDS} RETURNING id"

_JOB_STATES = f"""
SELECT job.id, job.status, worker.status, worker.hostname || ':' || worker.pid,
       job.status = 'cancelled' AND NOT {_KEY_FREE.format(row="job")}
FROM soniq_jobs AS job LEFT JOIN soniq_workers AS worker ON worker.id = job.worker_id
WHERE job.id IN {_IDS}
UNION ALL
SELECT dead.id, 'dead_letter', NULL, NULL, NOT {_KEY_FREE.format(row="dead")}
FROM soniq_dead_letter_jobs AS dead
WHERE dead.id IN {_IDS}
"""


def _ids(job_ids: Sequence[str]) -> str:
    return json.dumps([uuid.UUID(job_id).hex for job_id in job_ids])


class SQLiteOperatorStatements:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock

    def _now(self) -> str:
        return format_time(self.clock())

    def retry_jobs(self, job_ids: Sequence[str]) -> Statement:
        ids = _ids(job_ids)
        return Statement(_RETRY_JOBS, (self._now(), ids, ids))

    def cancel_jobs(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_CANCEL_JOBS, (self._now(), _ids(job_ids)))

    def request_aborts(self, job_ids: Sequence[str], by: str) -> Statement:
        return Statement(_REQUEST_ABORTS, (self._now(), by, _ids(job_ids)))

    def requeue_dead_letters(self, job_ids: Sequence[str]) -> list[Statement]:
        ids = _ids(job_ids)
        return [
            Statement(_COPY_DEAD_LETTERS, (self._now(), ids, ids)),
            Statement(_FORGET_COPIED, (ids, ids)),
        ]

    def delete_dead_letters(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_DELETE_DEAD_LETTERS, (_ids(job_ids),))

    def job_states(self, job_ids: Sequence[str]) -> Statement:
        ids = _ids(job_ids)
        return Statement(_JOB_STATES, (ids, ids))
