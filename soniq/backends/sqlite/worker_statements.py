"""The SQLite statements of the worker, on the tables Django's migrations create.

Values follow Django's SQLite storage: UUIDs as 32 hex digits, times as naive UTC text with
microseconds (so text order is time order). Lists travel as one JSON parameter read with
``json_each``, so each statement's text is fixed whatever the number of names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from soniq.backends.base import Statement
from soniq.backends.error_history import DEFAULT_HISTORY_LIMIT

_FENCE = "status = 'processing' AND worker_id = ? AND attempts = ? AND id = ?"

# A job put back in the queue whose abort was requested meanwhile ends cancelled instead (as
# on PostgreSQL). The time is the database's, in Django's format (six fraction digits).
_BACK_OR_ABORTED = (
    "status = CASE WHEN abort_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END, "
    "finished_at = CASE WHEN abort_requested_at IS NULL THEN NULL "
    "ELSE strftime('%Y-%m-%d %H:%M:%f000', 'now') END"
)

# A queued ``job`` its lock lets run (as on PostgreSQL: no job of its lock running, none queued
# ahead of it). Each subquery repeats soniq_jobs_lock_idx's status condition term for term, or
# SQLite would not use that partial index.
LOCK_FREE = """(job.lock IS NULL OR (
    NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS held
        WHERE held.lock = job.lock AND held.status IN ('queued', 'processing')
          AND held.status = 'processing'
    )
    AND NOT EXISTS (
        SELECT 1 FROM soniq_jobs AS ahead
        WHERE ahead.lock = job.lock AND ahead.status IN ('queued', 'processing')
          AND ahead.status = 'queued'
          AND (ahead.priority, ahead.lock_order, ahead.id) < (job.priority, job.lock_order, job.id)
    )
))"""

# What a claim returns of each job it took.
CLAIMED = (
    "id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at, "
    "suspicion, snoozes, lock"
)

# A worker marked dead or stopped claims nothing until it re-registers (new id).
WORKER_ALIVE = """NOT EXISTS (
    SELECT 1 FROM soniq_workers WHERE id = ? AND status IN ('dead', 'stopped')
)"""

# What every claim sets on the jobs it takes (parameters: the time, the worker).
TAKE = (
    "status = 'processing', attempts = attempts + 1, claimed_at = ?, started_at = NULL, "
    "finished_at = NULL, worker_id = ?"
)

CLAIM = f"""
UPDATE soniq_jobs
SET {TAKE}
WHERE id IN (
    SELECT id FROM soniq_jobs AS job
    WHERE status = 'queued' AND scheduled_at <= ?
      AND task_name IN (SELECT value FROM json_each(?))
      AND (? IS NULL OR queue IN (SELECT value FROM json_each(?)))
      AND queue NOT IN (SELECT value FROM json_each(?))
      AND {WORKER_ALIVE}
      AND {LOCK_FREE}
    ORDER BY priority, scheduled_at
    LIMIT ?
)
RETURNING {CLAIMED}
"""

COMPLETE = f"""
UPDATE soniq_jobs
SET status = 'done', finished_at = ?, started_at = coalesce(started_at, ?), suspicion = 0,
    result = ?
WHERE {_FENCE}
"""

# A claimed job started: started_at tells it from a job only claimed.
START = f"UPDATE soniq_jobs SET started_at = coalesce(started_at, ?), suspicion = 0 WHERE {_FENCE}"

# The error history with one entry appended, its newest entries kept: at most the limit
# (see error_history.py). Parameters: the entry's JSON, then the limit. json_each walks the
# array in order, and json_group_array keeps the order it is given. ``errors`` is the row's
# history before the append (in an UPDATE, every SET expression reads the old row).
_KEPT_ERRORS = """(
    SELECT json_group_array(value) FROM json_each(json_insert(errors, '$[#]', json(?)))
    WHERE key >= json_array_length(errors) + 1 - ?
)"""
# The count of dropped entries, with those this append drops. Parameter: the limit.
_DROPPED_ERRORS = "errors_dropped + max(json_array_length(errors) + 1 - ?, 0)"


def _appended(error_json: str, history_limit: int) -> tuple[str, int, int]:
    """The parameters of ``_KEPT_ERRORS`` followed by ``_DROPPED_ERRORS``."""
    return error_json, history_limit, history_limit


RETRY = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, scheduled_at = ?, worker_id = NULL,
    errors = {_KEPT_ERRORS}, errors_dropped = {_DROPPED_ERRORS}
WHERE {_FENCE}
"""

# soniq.Snooze: back to the queue at ``run_at``, the attempt given back, the snooze counted.
SNOOZE = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, scheduled_at = ?, worker_id = NULL, claimed_at = NULL,
    started_at = NULL, attempts = max(attempts - 1, 0), snoozes = snoozes + 1,
    errors = {_KEPT_ERRORS}, errors_dropped = {_DROPPED_ERRORS}
WHERE {_FENCE}
"""

# soniq.Cancel, or an abort: ends cancelled, the entry appended (a result it returned kept).
CANCEL_RUNNING = f"""
UPDATE soniq_jobs
SET status = 'cancelled', finished_at = ?, started_at = coalesce(started_at, ?), suspicion = 0,
    result = ?, errors = {_KEPT_ERRORS}, errors_dropped = {_DROPPED_ERRORS}
WHERE {_FENCE}
"""

ABORTS_REQUESTED = """
SELECT id, abort_requested_by, abort_requested_at FROM soniq_jobs
WHERE status = 'processing' AND worker_id = ? AND abort_requested_at IS NOT NULL
"""

_DEAD_LETTER_COLUMNS = (
    "id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at, "
    "started_at, dead_lettered_at, worker_id, errors, errors_dropped, reason, dedup_key, lock, "
    "lock_order"
)

# Two statements in one transaction (SQLite has no DELETE ... RETURNING feeding an INSERT).
COPY_TO_DEAD_LETTERS = f"""
INSERT INTO soniq_dead_letter_jobs ({_DEAD_LETTER_COLUMNS})
SELECT id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at,
       started_at, ?, worker_id, {_KEPT_ERRORS}, {_DROPPED_ERRORS}, ?, dedup_key, lock,
       lock_order
FROM soniq_jobs WHERE {_FENCE}
"""
DELETE_FENCED = f"DELETE FROM soniq_jobs WHERE {_FENCE}"

RELEASE = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, worker_id = NULL, claimed_at = NULL, started_at = NULL,
    attempts = max(attempts - 1, 0)
WHERE {_FENCE}
"""

REGISTER_WORKER = """
INSERT INTO soniq_workers (id, hostname, pid, queues, task_names, concurrency, status,
                           started_at, last_heartbeat_at, stopped_at, version, lock_key)
VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, NULL, ?, NULL)
ON CONFLICT (id) DO UPDATE SET status = 'running', last_heartbeat_at = excluded.last_heartbeat_at
WHERE soniq_workers.status <> 'dead'
"""

# A row marked dead (or stopped) is not refreshed: the worker behind it registers anew.
HEARTBEAT = (
    "UPDATE soniq_workers SET last_heartbeat_at = ? "
    "WHERE id = ? AND status IN ('running', 'stopping')"
)
WORKER_STATUS = "SELECT status FROM soniq_workers WHERE id = ?"

DEREGISTER_WORKER = (
    "UPDATE soniq_workers SET status = 'stopped', stopped_at = ? WHERE id = ? AND status <> 'dead'"
)

LIVE_WORKERS = """
SELECT id, hostname, pid, last_heartbeat_at FROM soniq_workers
WHERE status IN ('running', 'stopping')
"""

MARK_WORKER_DEAD = "UPDATE soniq_workers SET status = 'dead', stopped_at = ? WHERE id = ?"

# Jobs of dead workers, and of workers that are not running at all.
LOST_JOBS = """
SELECT id, attempts, max_attempts, worker_id, worker_losses, started_at IS NOT NULL
FROM soniq_jobs AS job
WHERE status = 'processing' AND (
    worker_id IN (SELECT value FROM json_each(?))
    OR NOT EXISTS (
        SELECT 1 FROM soniq_workers AS worker
        WHERE worker.id = job.worker_id AND worker.status = 'running'
    )
)
"""

# What becomes of them is decided as on PostgreSQL (see its worker_statements): a job that was
# running is charged its attempt and a lost worker, and runs alone next time; a job only
# claimed goes back uncharged, its next start written before it runs. Both keep their place.
REQUEUE_LOST = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, worker_id = NULL, claimed_at = NULL, started_at = NULL,
    worker_losses = worker_losses + 1, suspicion = 2,
    errors = {_KEPT_ERRORS}, errors_dropped = {_DROPPED_ERRORS}
WHERE id = ? AND status = 'processing'
"""

RELEASE_LOST = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, worker_id = NULL, claimed_at = NULL, attempts = max(attempts - 1, 0),
    suspicion = max(suspicion, 1)
WHERE id = ? AND status = 'processing'
"""

DEAD_LETTER_LOST = f"""
INSERT INTO soniq_dead_letter_jobs ({_DEAD_LETTER_COLUMNS})
SELECT id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at,
       started_at, ?, worker_id, {_KEPT_ERRORS}, {_DROPPED_ERRORS}, ?, dedup_key, lock,
       lock_order
FROM soniq_jobs WHERE id = ? AND status = 'processing'
"""
DELETE_LOST = "DELETE FROM soniq_jobs WHERE id = ? AND status = 'processing'"

RELEASE_STRAYS = f"""
UPDATE soniq_jobs
SET {_BACK_OR_ABORTED}, worker_id = NULL, claimed_at = NULL, started_at = NULL,
    attempts = max(attempts - 1, 0)
WHERE status = 'processing' AND worker_id = ?
  AND id NOT IN (SELECT value FROM json_each(?)) AND claimed_at < ?
"""

PRUNE_FINISHED = """
DELETE FROM soniq_jobs WHERE id IN (
    SELECT id FROM soniq_jobs
    WHERE status IN ('done', 'cancelled') AND finished_at < ?
    LIMIT ?
)
"""

PRUNE_WORKERS = "DELETE FROM soniq_workers WHERE status IN ('stopped', 'dead') AND stopped_at < ?"


def hex_id(value: str) -> str:
    return uuid.UUID(value).hex


def claim_jobs(
    *,
    worker_id: str,
    task_names: Sequence[str],
    queues: Sequence[str] | None,
    limit: int,
    now: str,
    skip_queues: Sequence[str] = (),
) -> Statement:
    queue_list = None if queues is None else json.dumps(list(queues))
    return Statement(
        CLAIM,
        (
            now,
            hex_id(worker_id),
            now,
            json.dumps(list(task_names)),
            queue_list,
            queue_list,
            json.dumps(list(skip_queues)),
            hex_id(worker_id),
            limit,
        ),
    )


def complete_job(
    worker_id: str, job_id: str, attempt: int, result: str | None, now: str
) -> Statement:
    return Statement(COMPLETE, (now, now, result, hex_id(worker_id), attempt, hex_id(job_id)))


def start_job(worker_id: str, job_id: str, attempt: int, now: str) -> Statement:
    return Statement(START, (now, hex_id(worker_id), attempt, hex_id(job_id)))


def retry_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    run_at: str,
    error_json: str,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        RETRY,
        (
            run_at,
            *_appended(error_json, history_limit),
            hex_id(worker_id),
            attempt,
            hex_id(job_id),
        ),
    )


def dead_letter_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    error_json: str,
    reason: str,
    now: str,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> list[Statement]:
    """Copy, then delete: run both in one transaction; the copy's row count says whether the
    fence held."""
    fence = (hex_id(worker_id), attempt, hex_id(job_id))
    return [
        Statement(
            COPY_TO_DEAD_LETTERS, (now, *_appended(error_json, history_limit), reason, *fence)
        ),
        Statement(DELETE_FENCED, fence),
    ]


def requeue_lost(job_id: str, error_json: str, history_limit: int) -> Statement:
    """A job that was running on a lost worker back to the queue (``job_id`` as stored)."""
    return Statement(REQUEUE_LOST, (*_appended(error_json, history_limit), job_id))


def dead_letter_lost(
    job_id: str, error_json: str, reason: str, now: str, history_limit: int
) -> list[Statement]:
    """Copy, then delete, a job that was running on a lost worker (``job_id`` as stored)."""
    return [
        Statement(DEAD_LETTER_LOST, (now, *_appended(error_json, history_limit), reason, job_id)),
        Statement(DELETE_LOST, (job_id,)),
    ]


def snooze_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    run_at: str,
    entry_json: str,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        SNOOZE,
        (run_at, *_appended(entry_json, history_limit), hex_id(worker_id), attempt, hex_id(job_id)),
    )


def cancel_running_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    entry_json: str,
    result: str | None,
    now: str,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        CANCEL_RUNNING,
        (
            now,
            now,
            result,
            *_appended(entry_json, history_limit),
            hex_id(worker_id),
            attempt,
            hex_id(job_id),
        ),
    )


def aborts_requested(worker_id: str) -> Statement:
    return Statement(ABORTS_REQUESTED, (hex_id(worker_id),))
