"""The PostgreSQL statements of operator actions: retry, cancel, requeue and delete by id.

Each changes only rows in the state the action starts from, and returns the ids it changed;
the rest are explained afterwards from ``job_states``. Jobs put back in the queue are announced
with ``pg_notify`` in the same statement, delivered at commit, as an enqueue is.
"""

from __future__ import annotations

from collections.abc import Sequence

from soniq.backends.base import Statement
from soniq.backends.postgres.statements import DONE_CHANNEL, NOTIFY_CHANNEL
from soniq.core.abort import ABORT_NOTICE


def _in_state(row: str, status: str) -> str:
    """``row.status = 'status'``, written so that the planner cannot prove a partial index's
    predicate from it.

    soniq_jobs_claim_idx and soniq_jobs_claim_queue_idx hold the queued jobs,
    soniq_jobs_finished_idx the done and cancelled ones. From the plain test the planner may
    read the whole partial index and check every row against the batch's ids, a plan it picks
    when the statistics say the state is rare (taken when the table was empty, or held no such
    job) and keeps as the generic plan of a prepared statement: over a second at 200,000 queued
    jobs and 1,000 ids, against milliseconds from the primary key. ``IS TRUE`` means the same
    (status is never NULL), but PostgreSQL's predicate proofs do not look through it (checked
    on 15), so the batch's rows always come from the primary key; should a later release learn
    to, tests/postgres/test_batch_plans.py fails.
    """
    return f"({row}.status = '{status}') IS TRUE"


# A job may hold a dedup key only while no other live job holds it (the partial unique index
# soniq_jobs_dedup_uniq): check before making one live again, instead of failing the batch.
_KEY_FREE = """(
    {row}.dedup_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS live
        WHERE live.task_name = {row}.task_name AND live.dedup_key = {row}.dedup_key
          AND live.status IN ('queued', 'processing') AND live.id <> {row}.id
    )
)"""

# Of several rows of the batch with the same key (a unique job cancelled, enqueued and cancelled
# again; or dead-lettered twice), only the smallest id goes back: made live together, they would
# break that index too, and fail the whole batch. The others are then explained (key taken).
# The first of each key is chosen once for the whole batch, as a set the planner hashes, rather
# than by a NOT EXISTS per row: that one probed the batch's ids again for every row (ids x ids
# work, over a second of it at 1,000 ids), whatever plan it got.
_FIRST_OF_KEY = """(
    {row}.dedup_key IS NULL OR {row}.id IN (
        SELECT DISTINCT ON (twin.task_name, twin.dedup_key) twin.id
        FROM {table} AS twin
        WHERE twin.id = ANY(%s::uuid[]) AND twin.dedup_key IS NOT NULL{also}
        ORDER BY twin.task_name, twin.dedup_key, twin.id
    )
)"""

_FIRST_CANCELLED = _FIRST_OF_KEY.format(
    table="soniq_jobs", row="job", also=f" AND {_in_state('twin', 'cancelled')}"
)
_FIRST_DEAD = _FIRST_OF_KEY.format(table="soniq_dead_letter_jobs", row="dead", also="")

_NOTIFY = f"SELECT id, queue, pg_notify('{NOTIFY_CHANNEL}', queue)::text FROM changed"

# Queued jobs become due now; cancelled ones go back to the queue.
_RETRY_JOBS = f"""
WITH changed AS (
    UPDATE soniq_jobs AS job
    SET status = 'queued', scheduled_at = now(), finished_at = NULL,
        abort_requested_at = NULL, abort_requested_by = NULL
    WHERE job.id = ANY(%s::uuid[])
      AND ({_in_state("job", "queued")} OR (
          {_in_state("job", "cancelled")} AND {_KEY_FREE.format(row="job")}
          AND {_FIRST_CANCELLED}
      ))
    RETURNING job.id, job.queue
)
{_NOTIFY}
"""

# A job someone waits for (awaited) has its end announced; the OR may evaluate both sides,
# and a spare notification only makes a waiter look once more.
_CANCEL_JOBS = f"""
WITH changed AS (
    UPDATE soniq_jobs AS job SET status = 'cancelled', finished_at = now()
    WHERE job.id = ANY(%s::uuid[]) AND {_in_state("job", "queued")}
    RETURNING job.id, job.awaited
)
SELECT id FROM changed
WHERE NOT awaited OR pg_notify('{DONE_CHANNEL}', id::text)::text = ''
"""

# A running job's abort requested (the first request's time and author kept), and the
# workers told at commit: each looks at once which of its jobs it concerns.
_REQUEST_ABORTS = f"""
WITH changed AS (
    UPDATE soniq_jobs AS job
    SET abort_requested_at = COALESCE(job.abort_requested_at, now()),
        abort_requested_by = COALESCE(job.abort_requested_by, %s)
    WHERE job.id = ANY(%s::uuid[]) AND {_in_state("job", "processing")}
    RETURNING job.id
)
SELECT id FROM changed WHERE pg_notify('{NOTIFY_CHANNEL}', '{ABORT_NOTICE}')::text = ''
"""

# The reverse of the worker's dead-lettering, in one statement: DELETE ... RETURNING feeding
# the INSERT, so a job is never in both tables nor in neither. The job keeps its id and its
# error history (with the count of entries dropped from it), and starts over with its full
# number of attempts.
_REQUEUE_DEAD_LETTERS = f"""
WITH moved AS (
    DELETE FROM soniq_dead_letter_jobs AS dead
    WHERE dead.id = ANY(%s::uuid[]) AND {_KEY_FREE.format(row="dead")}
      AND {_FIRST_DEAD}
    RETURNING dead.*
),
changed AS (
    INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
                            max_attempts, scheduled_at, created_at, errors, errors_dropped,
                            dedup_key, worker_losses, lock, lock_order)
    SELECT id, task_name, args, queue, priority, 'queued', 0, max_attempts, now(), created_at,
           errors, errors_dropped, dedup_key, 0, lock, lock_order
    FROM moved
    RETURNING id, queue
)
{_NOTIFY}
"""

_DELETE_DEAD_LETTERS = """
DELETE FROM soniq_dead_letter_jobs WHERE id = ANY(%s::uuid[]) RETURNING id
"""

_JOB_STATES = f"""
SELECT job.id, job.status, worker.status, worker.hostname || ':' || worker.pid,
       job.status = 'cancelled' AND NOT {_KEY_FREE.format(row="job")}
FROM soniq_jobs AS job LEFT JOIN soniq_workers AS worker ON worker.id = job.worker_id
WHERE job.id = ANY(%s::uuid[])
UNION ALL
SELECT dead.id, 'dead_letter', NULL, NULL, NOT {_KEY_FREE.format(row="dead")}
FROM soniq_dead_letter_jobs AS dead
WHERE dead.id = ANY(%s::uuid[])
"""


class PostgresOperatorStatements:
    def retry_jobs(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_RETRY_JOBS, (list(job_ids), list(job_ids)))

    def cancel_jobs(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_CANCEL_JOBS, (list(job_ids),))

    def request_aborts(self, job_ids: Sequence[str], by: str) -> Statement:
        return Statement(_REQUEST_ABORTS, (by, list(job_ids)))

    def requeue_dead_letters(self, job_ids: Sequence[str]) -> list[Statement]:
        return [Statement(_REQUEUE_DEAD_LETTERS, (list(job_ids), list(job_ids)))]

    def delete_dead_letters(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_DELETE_DEAD_LETTERS, (list(job_ids),))

    def job_states(self, job_ids: Sequence[str]) -> Statement:
        return Statement(_JOB_STATES, (list(job_ids), list(job_ids)))
