"""The PostgreSQL statements, each a named, reviewed piece of SQL.

Times default to the database clock (``now()``: the transaction's start), so every process
agrees on "due" whatever its own clock says.
"""

from __future__ import annotations

from collections.abc import Sequence

from soniq.backends.base import OperatorStatements, Statement
from soniq.core.records import NewJob

NOTIFY_CHANNEL = "soniq_new_job"
# The end of a job someone waits for (Soniq.wait_for): its id is the payload.
DONE_CHANNEL = "soniq_job_done"
# Created by migration 0009_flow_control.
LOCK_ORDER_SEQUENCE = "soniq_jobs_lock_order"


# Must match the partial unique index "soniq_jobs_dedup_uniq" (soniq/models.py) so that
# PostgreSQL can infer it as the arbiter of ON CONFLICT.
_DEDUP_ARBITER = (
    "(task_name, dedup_key) WHERE (dedup_key IS NOT NULL AND status IN ('queued', 'processing'))"
)

# One job with a dedup key or a lock. A locked job's place in its lock's order comes from a
# sequence: distinct and increasing across concurrent transactions.
_INSERT_JOB = f"""
WITH inserted AS (
    INSERT INTO soniq_jobs (
        id, task_name, args, queue, priority, status, attempts, max_attempts,
        scheduled_at, created_at, errors, dedup_key, worker_losses, lock, lock_order
    )
    VALUES (
        %s::uuid, %s, %s::jsonb, %s, %s, 'queued', 0, %s,
        COALESCE(%s::timestamptz, now()), now(), '[]'::jsonb, %s, 0, %s::text,
        CASE WHEN %s::text IS NULL THEN NULL ELSE nextval('{LOCK_ORDER_SEQUENCE}') END
    )
    ON CONFLICT {_DEDUP_ARBITER} DO NOTHING
    RETURNING id, queue
)
SELECT id, pg_notify('{NOTIFY_CHANNEL}', queue)::text FROM inserted
"""

# One job: scalar parameters, about 40 µs cheaper than the arrays and the DISTINCT of the
# statement below for a single row (the common `await app.enqueue(...)`).
_INSERT_ONE = f"""
INSERT INTO soniq_jobs (
    id, task_name, args, queue, priority, status, attempts, max_attempts,
    scheduled_at, created_at, errors, dedup_key, worker_losses
)
VALUES (
    %s::uuid, %s, %s::jsonb, %s, %s, 'queued', 0, %s,
    COALESCE(%s::timestamptz, now()), now(), '[]'::jsonb, NULL, 0
)
RETURNING pg_notify('{NOTIFY_CHANNEL}', queue)::text
"""

# One statement for any number of rows: the columns travel as arrays and unnest() zips them.
_INSERT_JOBS = f"""
WITH inserted AS (
    INSERT INTO soniq_jobs (
        id, task_name, args, queue, priority, status, attempts, max_attempts,
        scheduled_at, created_at, errors, dedup_key, worker_losses
    )
    SELECT row.id, row.task_name, row.args::jsonb, row.queue, row.priority, 'queued', 0,
           row.max_attempts, COALESCE(row.scheduled_at, now()), now(), '[]'::jsonb, NULL, 0
    FROM unnest(
        %s::uuid[], %s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::timestamptz[]
    ) AS row(id, task_name, args, queue, priority, max_attempts, scheduled_at)
    RETURNING queue
)
SELECT pg_notify('{NOTIFY_CHANNEL}', woken.queue)::text
FROM (SELECT DISTINCT queue FROM inserted) AS woken
"""

# Many jobs of one task with the same options (what enqueue_many builds): the shared columns
# travel once, the ids as one array literal and the arguments as one JSON array, zipped by
# ROWS FROM. psycopg dumps a Python list element by element (about 2 µs each, 14 µs a job
# for the seven arrays above); one joined text each costs a fraction of that.
_INSERT_SHARED = f"""
WITH inserted AS (
    INSERT INTO soniq_jobs (
        id, task_name, args, queue, priority, status, attempts, max_attempts,
        scheduled_at, created_at, errors, dedup_key, worker_losses
    )
    SELECT row.id, %s, row.args, %s, %s, 'queued', 0, %s,
           COALESCE(%s::timestamptz, now()), now(), '[]'::jsonb, NULL, 0
    FROM ROWS FROM (unnest(%s::uuid[]), jsonb_array_elements(%s::jsonb)) AS row(id, args)
    RETURNING 1
)
SELECT pg_notify('{NOTIFY_CHANNEL}', %s)::text WHERE EXISTS (SELECT FROM inserted)
"""

_FIND_LIVE_DUPLICATE = """
SELECT id FROM soniq_jobs
WHERE task_name = %s AND dedup_key = %s AND status IN ('queued', 'processing')
"""

_SELECT_JOB = """
SELECT id, task_name, status, args::text, queue, priority, attempts, max_attempts,
       scheduled_at, created_at, started_at, finished_at, worker_id, result::text,
       errors::text, errors_dropped, dedup_key, NULL::text, snoozes, abort_requested_at,
       abort_requested_by, lock
FROM soniq_jobs WHERE id = %s::uuid
UNION ALL
SELECT id, task_name, 'dead_letter', args::text, queue, priority, attempts, max_attempts,
       scheduled_at, created_at, started_at, dead_lettered_at, worker_id, NULL::text,
       errors::text, errors_dropped, dedup_key, reason, 0, NULL::timestamptz, NULL::text, lock
FROM soniq_dead_letter_jobs WHERE id = %s::uuid
LIMIT 1
"""


def uuid_array(ids: Sequence[str]) -> str:
    """``ids`` (canonical UUID text, which needs no quoting) as one ``uuid[]`` literal for a
    ``%s::uuid[]`` parameter: psycopg dumps a list element by element, about 2 µs each."""
    return "{" + ",".join(ids) + "}"


def _values(job: NewJob) -> tuple[object, ...]:
    """The parameters of a one-row insert, in the order of its ``VALUES``."""
    return (
        str(job.id),
        job.task_name,
        job.args_json,
        job.queue,
        job.priority,
        job.max_attempts,
        job.scheduled_at,
    )


class PostgresDialect:
    name = "postgresql"

    @property
    def operator(self) -> OperatorStatements:
        # Imported here: that module builds on this one's NOTIFY_CHANNEL.
        from soniq.backends.postgres.operator_statements import PostgresOperatorStatements

        return PostgresOperatorStatements()

    def insert_job(self, job: NewJob) -> Statement:
        return Statement(_INSERT_JOB, (*_values(job), job.dedup_key, job.lock, job.lock))

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Statement]:
        if len(jobs) == 1:
            return [Statement(_INSERT_ONE, _values(jobs[0]))]
        first = jobs[0]
        shared = (first.task_name, first.queue, first.priority, first.max_attempts)
        if all(
            (job.task_name, job.queue, job.priority, job.max_attempts) == shared
            and job.scheduled_at == first.scheduled_at
            for job in jobs
        ):
            return [
                Statement(
                    _INSERT_SHARED,
                    (
                        first.task_name,
                        first.queue,
                        first.priority,
                        first.max_attempts,
                        first.scheduled_at,
                        # Each args_json is a JSON object already.
                        uuid_array([str(job.id) for job in jobs]),
                        "[" + ",".join([job.args_json for job in jobs]) + "]",
                        first.queue,
                    ),
                )
            ]
        return [
            Statement(
                _INSERT_JOBS,
                (
                    [str(job.id) for job in jobs],
                    [job.task_name for job in jobs],
                    [job.args_json for job in jobs],
                    [job.queue for job in jobs],
                    [job.priority for job in jobs],
                    [job.max_attempts for job in jobs],
                    [job.scheduled_at for job in jobs],
                ),
            )
        ]

    def find_live_duplicate(self, task_name: str, dedup_key: str) -> Statement:
        return Statement(_FIND_LIVE_DUPLICATE, (task_name, dedup_key))

    def select_job(self, job_id: str) -> Statement:
        return Statement(_SELECT_JOB, (job_id, job_id))
