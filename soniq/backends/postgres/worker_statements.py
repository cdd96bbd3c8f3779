"""The PostgreSQL statements of the worker: claim, finish, liveness and recovery.

Every finishing write is fenced: it applies only while the row is still ``processing`` for this
worker and this attempt, so a job recovered from a worker presumed dead is never overwritten by
that worker if it turns out to be alive. Statements that depend on time take ``now``
(``None`` means the database clock) so tests can control it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from soniq.backends.base import Statement
from soniq.backends.error_history import DEFAULT_HISTORY_LIMIT
from soniq.backends.postgres.statements import DONE_CHANNEL, uuid_array
from soniq.core.status import Suspicion

# First key of every soniq advisory lock (a 32-bit "namespace"); the second key is the worker's
# lock_key, or 0 for the cleanup leader lock. 0x534f4e51 is "SONQ".
LOCK_NAMESPACE = 0x534F4E51
CLEANUP_LOCK_KEY = 0

_NOW = "COALESCE(%s::timestamptz, now())"

# A queued ``job`` that its lock lets run: it has none, or no job of its lock is running and
# none is queued ahead of it (by priority, then its place in the lock's order; the id breaks a
# tie, so that exactly one job of a lock is first). Under SKIP LOCKED, a claim racing another
# skips the first job of a lock (the other holds its row) and, in its snapshot, still sees that
# job queued ahead of the second: two claims never take two jobs of one lock. The test is
# soniq_lock_free() (migration 0009_flow_control: why a function), two ranges of
# soniq_jobs_lock_idx; a job without a lock pays the IS NULL test only.
LOCK_FREE = "(job.lock IS NULL OR soniq_lock_free(job.lock, job.priority, job.lock_order, job.id))"

# The claim: due, queued jobs this worker knows, most urgent first, taken without waiting on
# rows another worker is taking (SKIP LOCKED). Two variants instead of "queue filter or NULL"
# so that each gets a plan on its own partial index (soniq_jobs_claim_idx for every queue,
# soniq_jobs_claim_queue_idx for a scoped worker).
# The claimed rows are updated by primary key, ``id = ANY(ARRAY(...))``, not through a join with
# the candidates: the claim is a prepared statement, and its generic plan (the LIMIT unknown)
# joined them by hashing a sequential scan of the whole table whenever the statistics were
# taken with many jobs queued: 5.8 ms instead of 0.1 ms per claim at 20,000 rows, which every
# start of an idle worker waited for until autovacuum came by.
# A worker whose row was marked dead or stopped claims nothing: until its next heartbeat gives
# it a new id, a job recovered from it could otherwise be claimed again under the old id, and
# the stale run's completion would pass the fence. (A one-time filter: a primary-key lookup.)
# A job with a lock is taken only when no job of its lock runs and none is queued ahead of it
# (LOCK_FREE). Jobs of limited tasks and queues are left to the limited claim
# (limit_statements.py): the caller leaves their names out, and names the limited queues.
_CLAIM = f"""
WITH candidates AS (
    SELECT id FROM soniq_jobs AS job
    WHERE status = 'queued' AND scheduled_at <= {_NOW} AND task_name = ANY(%s::text[]){{queues}}
      AND NOT EXISTS (
          SELECT 1 FROM soniq_workers
          WHERE soniq_workers.id = %s::uuid AND soniq_workers.status IN ('dead', 'stopped')
      )
      AND {LOCK_FREE}
    ORDER BY priority, scheduled_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE soniq_jobs AS job
    SET {{TAKE}}
    WHERE job.id = ANY(ARRAY(SELECT id FROM candidates))
    RETURNING {{CLAIM_RETURNING}}
)
-- Most urgent first, as claimed: the worker starts them in this order.
SELECT {{CLAIMED_COLUMNS}}
FROM claimed
ORDER BY priority, scheduled_at
"""
# What every claim sets on the jobs it takes (parameters: the time, the worker).
TAKE = (
    f"status = 'processing', attempts = job.attempts + 1, claimed_at = {_NOW}, "
    "started_at = NULL, finished_at = NULL, worker_id = %s::uuid"
)
# What a claim returns of each job it took (decode_claimed reads them in this order).
CLAIMED_COLUMNS = (
    "id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at, "
    "suspicion, snoozes, lock"
)
CLAIM_RETURNING = ", ".join(
    "job.args::text AS args" if column == "args" else f"job.{column}"
    for column in CLAIMED_COLUMNS.split(", ")
)
_SCOPED = " AND queue = ANY(%s::text[])"
_SKIPPING = " AND queue <> ALL(%s::text[])"
_CLAIMS = {
    (scoped, skipping): _CLAIM.format(
        queues=(_SCOPED if scoped else "") + (_SKIPPING if skipping else ""),
        CLAIM_RETURNING=CLAIM_RETURNING,
        CLAIMED_COLUMNS=CLAIMED_COLUMNS,
        TAKE=TAKE,
    )
    for scoped in (False, True)
    for skipping in (False, True)
}


def claim_jobs(
    *,
    worker_id: str,
    task_names: Sequence[str],
    queues: Sequence[str] | None,
    limit: int,
    now: datetime | None = None,
    skip_queues: Sequence[str] = (),
) -> Statement:
    """Take up to ``limit`` due jobs for ``worker_id``, none in ``skip_queues``."""
    scope = [] if queues is None else [list(queues)]
    skipped = [list(skip_queues)] if skip_queues else []
    sql = _CLAIMS[queues is not None, bool(skip_queues)]
    return Statement(
        sql, (now, list(task_names), *scope, *skipped, worker_id, limit, now, worker_id)
    )


_FENCE = "status = 'processing' AND worker_id = %s::uuid"

# A job put back in the queue whose abort was requested meanwhile ends cancelled instead:
# it was asked to stop, and must not run again.
_BACK_OR_ABORTED = (
    "status = CASE WHEN {row}.abort_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END, "
    "finished_at = CASE WHEN {row}.abort_requested_at IS NULL THEN NULL ELSE now() END"
)

# Statements about a batch of jobs take their ids as one array, matched with ``id = ANY(...)``,
# and what differs per job (its attempt, its result) as one JSON object keyed by job id, read
# with ``->`` (a binary search) for each row. There is no join: a join of the table with
# ``unnest(...)`` of the arrays lets the planner, misled by statistics taken while no job ran
# (or while no job was this worker's), put the table on the outer side of a nested loop and
# rescan the whole array for each of its rows, ids x rows (160 ms instead of 9 ms for 1,000
# jobs). Without a join, every plan is bounded: the primary key probed for each id, or this
# worker's running jobs (soniq_jobs_running_idx) each checked against the ids.
_ATTEMPT_OF = "(%s::jsonb ->> job.id::text)::int"
_DONE_OF = "%s::jsonb -> job.id::text"

# A job someone waits for (Soniq.wait_for marks it ``awaited``) has its end announced on
# DONE_CHANNEL, delivered at commit. Only those: a NOTIFY for every job would cost every
# drain, for the rare job anyone waits for. The ids of a batch go out together, up to
# ANNOUNCED_IDS per notification (comma-separated; a payload holds at most 8,000 bytes): one
# NOTIFY per job cost the drain of jobs that were all awaited about a tenth.
ANNOUNCED_IDS = 200
_ANNOUNCE_AWAITED = (
    "(SELECT count(pg_notify('" + DONE_CHANNEL + "', ids)) FROM ("
    "SELECT string_agg(id::text, ',') AS ids FROM ("
    "SELECT {rows}.id, (row_number() OVER () - 1) / " + str(ANNOUNCED_IDS) + " AS chunk "
    "FROM {rows} WHERE {rows}.awaited) AS awaited GROUP BY chunk) AS payloads)"
)

# The rows ``back`` in the queue, or cancelled instead (an abort was requested): those that
# someone waits for are announced. Every row is returned (the OR's second operand, when
# evaluated, is true).
_ANNOUNCE_IF_CANCELLED = (
    "SELECT id FROM back WHERE NOT (back.awaited AND back.status = 'cancelled') "
    "OR pg_notify('" + DONE_CHANNEL + "', back.id::text)::text = ''"
)

# One statement for the two writes a worker batches: jobs that started (started_at, which
# tells a running job from one only claimed), and jobs that finished (done, with their
# result). The two batches never share a job: a job that finished before its start was
# written gets its start time here too.
_RECORD_PROGRESS = f"""
WITH started AS (
    UPDATE soniq_jobs AS job
    SET started_at = COALESCE(job.started_at, {_NOW}), suspicion = 0
    WHERE job.id = ANY(%s::uuid[]) AND job.{_FENCE} AND job.attempts = {_ATTEMPT_OF}
    RETURNING job.id
),
done AS (
    UPDATE soniq_jobs AS job
    SET status = 'done', finished_at = {_NOW}, started_at = COALESCE(job.started_at, {_NOW}),
        suspicion = 0, result = NULLIF({_DONE_OF} -> 1, 'null'::jsonb)
    WHERE job.id = ANY(%s::uuid[]) AND job.{_FENCE}
      AND job.attempts = ({_DONE_OF} ->> 0)::int
    RETURNING job.id, job.awaited
)
SELECT (SELECT count(*) FROM started), (SELECT count(*) FROM done),
       {_ANNOUNCE_AWAITED.format(rows="done")}
"""


def _attempts_json(jobs: Sequence[tuple[str, int]]) -> str:
    # Job ids are canonical UUID text: nothing in them needs escaping.
    return "{" + ",".join(f'"{job_id}":{int(attempt)}' for job_id, attempt in jobs) + "}"


def _done_json(done: Sequence[tuple[str, int, str | None]]) -> str:
    # Results are JSON text already (None: no result, stored as NULL); they go in as they are.
    return (
        "{"
        + ",".join(
            f'"{job_id}":[{int(attempt)},{"null" if result is None else result}]'
            for job_id, attempt, result in done
        )
        + "}"
    )


def record_progress(
    worker_id: str,
    *,
    started: Sequence[tuple[str, int]] = (),
    done: Sequence[tuple[str, int, str | None]] = (),
    now: datetime | None = None,
) -> Statement:
    """Record starts (``(id, attempt)``) and completions (``(id, attempt, result_json)``) of
    jobs ``worker_id`` holds; one row: (starts applied, completions applied)."""
    finished = _done_json(done)
    return Statement(
        _RECORD_PROGRESS,
        (
            now,
            uuid_array([job_id for job_id, _ in started]),
            worker_id,
            _attempts_json(started),
            now,
            now,
            finished,
            uuid_array([job_id for job_id, _, _ in done]),
            worker_id,
            finished,
        ),
    )


# The error history keeps its newest entries, at most ERROR_HISTORY_LIMIT, and counts the
# ones it drops in errors_dropped, in the statement that appends (see error_history.py).
# ``history`` is the SQL of the jsonb array with the new entry appended, ``limit`` that of the
# limit.


def _kept_errors(history: str, limit: str) -> str:
    # The tail of the array. In lax mode (jsonpath's default) a range that starts before the
    # first element is cut to the array, so a history within the limit is kept whole.
    return (
        f"jsonb_path_query_array({history}, '$[last - $limit + 1 to last]', "
        f"jsonb_build_object('limit', {limit}))"
    )


def _dropped_errors(history: str, limit: str) -> str:
    return f"GREATEST(jsonb_array_length({history}) - {limit}, 0)"


# The new entry and the limit come in once, as a one-row CTE that the capped history reads.
_FAILURE = "failure AS (SELECT %s::jsonb AS entry, %s::int AS history_limit)"


def _failure_params(error_json: str, history_limit: int) -> tuple[str, int]:
    return f"[{error_json}]", history_limit


_RETRIED_HISTORY = "job.errors || failure.entry"

# Back to the queue ``delay`` seconds from now on the database clock (the clock the claim
# compares with), the entry appended to the history: a retry (the attempt counted), or a
# snooze (``{uncharged}``: the attempt given back, the snooze counted).
_BACK_TO_QUEUE = """
WITH {failure},
back AS (
UPDATE soniq_jobs AS job
SET {back_or_aborted},
    scheduled_at = {now} + make_interval(secs => %s), worker_id = NULL{uncharged},
    errors = {kept},
    errors_dropped = job.errors_dropped + {dropped}
FROM failure
WHERE job.id = %s::uuid AND job.attempts = %s AND job.{fence}
RETURNING job.id, job.awaited, job.status
)
{announce}
"""


def _back_to_queue(uncharged: str) -> str:
    return _BACK_TO_QUEUE.format(
        failure=_FAILURE,
        back_or_aborted=_BACK_OR_ABORTED.format(row="job"),
        now=_NOW,
        uncharged=uncharged,
        kept=_kept_errors(_RETRIED_HISTORY, "failure.history_limit"),
        dropped=_dropped_errors(_RETRIED_HISTORY, "failure.history_limit"),
        fence=_FENCE,
        announce=_ANNOUNCE_IF_CANCELLED,
    )


_RETRY_JOB = _back_to_queue("")
_SNOOZE_JOB = _back_to_queue(
    ", claimed_at = NULL, started_at = NULL, attempts = GREATEST(job.attempts - 1, 0), "
    "snoozes = job.snoozes + 1"
)


def retry_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    delay: float,
    error_json: str,
    now: datetime | None = None,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    """Back to the queue ``delay`` seconds from now, the error appended to the history (of
    which the newest ``history_limit`` entries are kept)."""
    return Statement(
        _RETRY_JOB,
        (*_failure_params(error_json, history_limit), now, delay, job_id, attempt, worker_id),
    )


_DEAD_LETTER_COLUMNS = (
    "id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at, created_at, "
    "started_at, dead_lettered_at, worker_id, errors, errors_dropped, reason, dedup_key, lock, "
    "lock_order"
)

_DEAD_HISTORY = "moved.errors || failure.entry"

# DELETE ... RETURNING feeding the INSERT: the move is one statement, so a job is never in
# both tables nor in neither.
_DEAD_LETTER_JOB = f"""
WITH {_FAILURE},
moved AS (
    DELETE FROM soniq_jobs
    WHERE id = %s::uuid AND attempts = %s AND {_FENCE}
    RETURNING *
)
, dead AS (
    INSERT INTO soniq_dead_letter_jobs ({_DEAD_LETTER_COLUMNS})
    SELECT id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at,
           created_at, started_at, {_NOW}, worker_id,
           {_kept_errors(_DEAD_HISTORY, "failure.history_limit")},
           errors_dropped + {_dropped_errors(_DEAD_HISTORY, "failure.history_limit")},
           %s, dedup_key, lock, lock_order
    FROM moved, failure
    RETURNING id
)
SELECT id, {_ANNOUNCE_AWAITED.format(rows="moved")} FROM dead
"""


def dead_letter_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    error_json: str,
    reason: str,
    now: datetime | None = None,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        _DEAD_LETTER_JOB,
        (*_failure_params(error_json, history_limit), job_id, attempt, worker_id, now, reason),
    )


def snooze_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    delay: float,
    entry_json: str,
    now: datetime | None = None,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        _SNOOZE_JOB,
        (*_failure_params(entry_json, history_limit), now, delay, job_id, attempt, worker_id),
    )


# soniq.Cancel, or an abort: the job ends cancelled, the entry (who asked, or the job's
# reason) appended to its history; a result it returned after an abort is kept.
_CANCEL_RUNNING_JOB = f"""
WITH {_FAILURE},
cancelled AS (
    UPDATE soniq_jobs AS job
    SET status = 'cancelled', finished_at = {_NOW}, started_at = COALESCE(job.started_at, {_NOW}),
        suspicion = 0, result = %s::jsonb,
        errors = {_kept_errors(_RETRIED_HISTORY, "failure.history_limit")},
        errors_dropped = job.errors_dropped
            + {_dropped_errors(_RETRIED_HISTORY, "failure.history_limit")}
    FROM failure
    WHERE job.id = %s::uuid AND job.attempts = %s AND job.{_FENCE}
    RETURNING job.id, job.awaited
)
SELECT id, {_ANNOUNCE_AWAITED.format(rows="cancelled")} FROM cancelled
"""


def cancel_running_job(
    worker_id: str,
    job_id: str,
    attempt: int,
    entry_json: str,
    result_json: str | None = None,
    now: datetime | None = None,
    *,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
) -> Statement:
    return Statement(
        _CANCEL_RUNNING_JOB,
        (
            *_failure_params(entry_json, history_limit),
            now,
            now,
            result_json,
            job_id,
            attempt,
            worker_id,
        ),
    )


# The jobs of this worker whose abort was requested (on soniq_jobs_running_idx).
_ABORTS_REQUESTED = f"""
SELECT id, abort_requested_by, abort_requested_at FROM soniq_jobs
WHERE {_FENCE} AND abort_requested_at IS NOT NULL
"""


def aborts_requested(worker_id: str) -> Statement:
    return Statement(_ABORTS_REQUESTED, (worker_id,))


# A job interrupted by shutdown, or claimed and never started, goes back without the attempt
# being charged.
_RELEASE_JOBS = f"""
WITH back AS (
    UPDATE soniq_jobs AS job
    SET {_BACK_OR_ABORTED.format(row="job")}, worker_id = NULL, claimed_at = NULL,
        started_at = NULL, attempts = GREATEST(job.attempts - 1, 0)
    WHERE job.id = ANY(%s::uuid[]) AND job.{_FENCE} AND job.attempts = {_ATTEMPT_OF}
    RETURNING job.id, job.awaited, job.status
)
{_ANNOUNCE_IF_CANCELLED}
"""


def release_jobs(worker_id: str, jobs: Sequence[tuple[str, int]]) -> Statement:
    return Statement(
        _RELEASE_JOBS, ([job_id for job_id, _ in jobs], worker_id, _attempts_json(jobs))
    )


_REGISTER_WORKER = f"""
INSERT INTO soniq_workers (id, hostname, pid, queues, task_names, concurrency, status,
                           started_at, last_heartbeat_at, stopped_at, version, lock_key)
VALUES (%s::uuid, %s, %s, %s::jsonb, %s::jsonb, %s, 'running', {_NOW}, {_NOW}, NULL, %s, %s)
ON CONFLICT (id) DO UPDATE
SET status = 'running', last_heartbeat_at = EXCLUDED.last_heartbeat_at, lock_key = EXCLUDED.lock_key
WHERE soniq_workers.status <> 'dead'
"""


def register_worker(
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    queues_json: str,
    task_names_json: str,
    concurrency: int,
    version: str,
    lock_key: int | None,
    now: datetime | None = None,
) -> Statement:
    return Statement(
        _REGISTER_WORKER,
        (
            worker_id,
            hostname,
            pid,
            queues_json,
            task_names_json,
            concurrency,
            now,
            now,
            version,
            lock_key,
        ),
    )


# A row marked dead stays dead (registering the same id again does not revive it either): its
# jobs were recovered, and the admin must not show a heartbeat later than its death. The worker
# behind it, back from a partition, finds no row to refresh and registers under a new id.
_HEARTBEAT = f"""
WITH beat AS (
    UPDATE soniq_workers SET last_heartbeat_at = {_NOW}
    WHERE id = %s::uuid AND status IN ('running', 'stopping') RETURNING status
)
SELECT status FROM beat
UNION ALL
SELECT status FROM soniq_workers WHERE id = %s::uuid AND status NOT IN ('running', 'stopping')
"""


def heartbeat(worker_id: str, now: datetime | None = None) -> Statement:
    """Refresh the heartbeat of a live row; returns the row's status (``dead`` if we were
    given up on: that row is left as it is)."""
    return Statement(_HEARTBEAT, (now, worker_id, worker_id))


def deregister_worker(worker_id: str, now: datetime | None = None) -> Statement:
    return Statement(
        f"UPDATE soniq_workers SET status = 'stopped', stopped_at = {_NOW} "
        "WHERE id = %s::uuid AND status <> 'dead'",
        (now, worker_id),
    )


def try_lock(key: int) -> Statement:
    """Take a session advisory lock without waiting; one boolean row."""
    return Statement("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))


# A worker is dead when its heartbeat is older than the timeout, or (sooner) when the session
# advisory lock its connection held is gone and it has not heartbeated within the grace period:
# a killed process loses its connection, and PostgreSQL drops the lock at once.
_DEAD_WORKER = f"""worker.status IN ('running', 'stopping') AND (
    worker.last_heartbeat_at < {_NOW} - make_interval(secs => %s)
    OR (
        worker.lock_key IS NOT NULL
        AND worker.last_heartbeat_at < {_NOW} - make_interval(secs => %s)
        -- After a server restart every lock is gone: workers get the grace period to
        -- reconnect and take theirs again before a missing lock means anything.
        AND pg_postmaster_start_time() < {_NOW} - make_interval(secs => %s)
        AND NOT EXISTS (
            SELECT 1 FROM pg_locks AS lock
            WHERE lock.locktype = 'advisory' AND lock.granted
              AND lock.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND lock.classid = %s::oid AND lock.objid = worker.lock_key::oid
              AND lock.objsubid = 2
        )
    )
)"""

# The jobs of dead workers, by what the worker was doing with each:
# - claimed but not recorded as started: back to the queue as they were, uncharged (the attempt
#   is given back, no loss, no error), marked UNCONFIRMED_START, since a job that killed its
#   worker at once could not have its start written: its next start is written first;
# - running: the lost run counts as a failed attempt, with a soniq.WorkerLost error, and as a
#   lost worker (worker_losses). Back to the queue marked LOST_WHILE_RUNNING, so that it runs
#   alone next time; or to the dead letters once it has lost max_losses workers (reason
#   worker_lost: a job that kills its worker must not loop forever), or when that was its
#   last attempt (reason max_attempts).
# Jobs keep their scheduled_at, and so their place in the queue.
# The entry is built once per lost job (in ``lost``), where the moved and the requeued jobs
# read it, with the history limit.
_LOST_ERROR = (
    "jsonb_build_array(jsonb_build_object('attempt', job.attempts, 'error_type', "
    "'soniq.WorkerLost', "
    "'message', 'the worker running this job stopped responding', 'traceback', '', "
    f"'worker_id', job.worker_id::text, 'failed_at', {_NOW}))"
)
_MOVED_HISTORY = "moved.errors || moved.lost_error"
_REQUEUED_HISTORY = "job.errors || lost.lost_error"

# The whole recovery pass is ONE statement: one worker at a time runs it (the leader lock, a
# transaction-level advisory lock taken without waiting), and a lock held across round trips
# would be held for as long as its worker is stalled (paused, cut off), with nobody recovering
# anything meanwhile. Within one statement the server finishes on its own. The branches touch
# disjoint rows; data-modifying CTEs all run to completion.
_RECOVERY_PASS = f"""
WITH leader AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(%s, %s) AS granted
),
found AS (
    SELECT worker.id FROM soniq_workers AS worker, leader
    WHERE leader.granted AND {_DEAD_WORKER}
    FOR UPDATE OF worker SKIP LOCKED
),
marked AS (
    UPDATE soniq_workers AS worker SET status = 'dead', stopped_at = {_NOW}
    FROM found WHERE worker.id = found.id
    RETURNING worker.id
),
lost AS (
    -- Jobs of the workers found dead, and of any worker that is not running at all (it
    -- stopped or was pruned while still holding a job: an interrupted shutdown, for example).
    SELECT id, attempts, max_attempts, worker_id, worker_losses,
           started_at IS NOT NULL AS ran,
           worker_losses + 1 >= %s AS quarantined,
           {_LOST_ERROR} AS lost_error, %s::int AS history_limit
    FROM soniq_jobs AS job, leader
    WHERE leader.granted AND status = 'processing' AND (
        worker_id IN (SELECT id FROM found)
        OR NOT EXISTS (
            SELECT 1 FROM soniq_workers AS worker
            WHERE worker.id = job.worker_id AND worker.status = 'running'
        )
    )
    FOR UPDATE OF job SKIP LOCKED
),
moved AS (
    DELETE FROM soniq_jobs AS job USING lost
    WHERE job.id = lost.id AND lost.ran AND (lost.quarantined OR lost.attempts >= lost.max_attempts)
    RETURNING job.*, lost.lost_error, lost.history_limit,
              CASE WHEN lost.quarantined THEN 'worker_lost' ELSE 'max_attempts' END AS reason
),
dead AS (
    INSERT INTO soniq_dead_letter_jobs ({_DEAD_LETTER_COLUMNS})
    SELECT id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at,
           created_at, started_at, {_NOW}, worker_id,
           {_kept_errors(_MOVED_HISTORY, "moved.history_limit")},
           errors_dropped + {_dropped_errors(_MOVED_HISTORY, "moved.history_limit")},
           reason, dedup_key, lock, lock_order
    FROM moved
    RETURNING id
),
requeued AS (
    UPDATE soniq_jobs AS job
    SET {_BACK_OR_ABORTED.format(row="job")},
        worker_id = NULL, claimed_at = NULL, started_at = NULL,
        worker_losses = job.worker_losses + 1, suspicion = {Suspicion.LOST_WHILE_RUNNING.value},
        errors = {_kept_errors(_REQUEUED_HISTORY, "lost.history_limit")},
        errors_dropped = job.errors_dropped
            + {_dropped_errors(_REQUEUED_HISTORY, "lost.history_limit")}
    FROM lost
    WHERE job.id = lost.id AND lost.ran
      AND NOT (lost.quarantined OR lost.attempts >= lost.max_attempts)
    RETURNING job.id
),
released AS (
    UPDATE soniq_jobs AS job
    SET {_BACK_OR_ABORTED.format(row="job")}, worker_id = NULL, claimed_at = NULL,
        attempts = GREATEST(job.attempts - 1, 0),
        suspicion = GREATEST(job.suspicion, {Suspicion.UNCONFIRMED_START.value})
    FROM lost
    WHERE job.id = lost.id AND NOT lost.ran
    RETURNING job.id
)
SELECT (SELECT granted FROM leader), ARRAY(SELECT id::text FROM marked),
       (SELECT count(*) FROM dead), (SELECT count(*) FROM requeued),
       (SELECT count(*) FROM released)
"""


def recovery_pass(
    *,
    heartbeat_timeout: float,
    lock_grace: float,
    max_losses: int,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    now: datetime | None = None,
) -> Statement:
    """Find dead workers, mark them, and put back the jobs of every worker that is not
    running; one row: (led this pass, dead worker ids, dead-lettered, requeued, released)."""
    # Parameter order follows the placeholders: leader, found (dead worker, with the lock
    # grace twice: since the heartbeat, and since the server started), marked, lost (losses,
    # the error's time, the history limit), dead.
    return Statement(
        _RECOVERY_PASS,
        (
            LOCK_NAMESPACE,
            CLEANUP_LOCK_KEY,
            now,
            heartbeat_timeout,
            now,
            lock_grace,
            now,
            lock_grace,
            LOCK_NAMESPACE,
            now,
            max_losses,
            now,
            history_limit,
            now,
        ),
    )


_PRUNE_FINISHED = f"""
DELETE FROM soniq_jobs WHERE id IN (
    SELECT id FROM soniq_jobs
    WHERE status IN ('done', 'cancelled')
      AND finished_at < {_NOW} - make_interval(secs => %s)
    LIMIT %s
    FOR UPDATE SKIP LOCKED  -- several workers may prune at once; none waits on another
)
"""


def prune_finished(retention: float, batch: int, now: datetime | None = None) -> Statement:
    """Delete up to ``batch`` jobs finished more than ``retention`` seconds ago."""
    return Statement(_PRUNE_FINISHED, (now, retention, batch))


def prune_workers(retention: float, now: datetime | None = None) -> Statement:
    return Statement(
        "DELETE FROM soniq_workers WHERE status IN ('stopped', 'dead') "
        f"AND stopped_at < {_NOW} - make_interval(secs => %s)",
        (now, retention),
    )


def prune_schedule_fires(retention: float, now: datetime | None = None) -> Statement:
    """Fire records older than the retention: their slots are long past next_fire_at, so
    nothing can fire them again."""
    return Statement(
        f"DELETE FROM soniq_schedule_fires WHERE fire_time < {_NOW} - make_interval(secs => %s)",
        (now, retention),
    )


# A live worker's safety net: a job the database says it holds but it is not running (the
# reply to a claim was lost with its connection, say) goes back to the queue, uncharged.
_RELEASE_STRAYS = f"""
UPDATE soniq_jobs AS job
SET {_BACK_OR_ABORTED.format(row="job")},
    worker_id = NULL, claimed_at = NULL, started_at = NULL, attempts = GREATEST(attempts - 1, 0)
WHERE {_FENCE} AND id <> ALL(%s::uuid[])
  AND claimed_at < {_NOW} - make_interval(secs => %s)
RETURNING id
"""


def release_strays(
    worker_id: str, running: Sequence[str], older_than: float, now: datetime | None = None
) -> Statement:
    return Statement(_RELEASE_STRAYS, (worker_id, list(running), now, older_than))


def analyze_if_never_analyzed() -> Statement:
    """Statistics for a fresh table, so the claim is planned on its index from the start."""
    return Statement(
        """
        DO $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM pg_stat_user_tables
                WHERE relname = 'soniq_jobs'
                  AND last_analyze IS NULL AND last_autoanalyze IS NULL
            ) THEN
                ANALYZE soniq_jobs;
            END IF;
        END
        $$
        """,
        (),
    )
