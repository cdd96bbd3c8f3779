"""The PostgreSQL statements of the limited claim (see ``soniq.backends.limit_plans``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soniq.backends.base import Statement
from soniq.backends.postgres.statements import uuid_array
from soniq.backends.postgres.worker_statements import (
    CLAIM_RETURNING,
    CLAIMED_COLUMNS,
    LOCK_FREE,
    TAKE,
)
from soniq.core.limits import ClaimLimits, OpenScope

# First key of the advisory locks that serialise limited claims ("SONL"); the second is the
# hash of the limit's key. Distinct from the worker and cleanup locks' namespace.
LIMIT_LOCK_NAMESPACE = 0x534F4E4C

_NOW = "COALESCE(%s::timestamptz, now())"
# Read committed whatever the server's default: the usage statement must see every claim
# committed before the locks were granted, which a snapshot taken by the transaction's first
# statement (repeatable read) would not. JIT off: the candidates' filter makes the planner
# expect a scan of the whole backlog, and past jit_above_cost it would compile each statement
# first (hundreds of milliseconds for statements that run in one). No sequential scan and no
# sort where an index walks in order: with the statistics of a table analyzed while empty (a
# worker's start-up ANALYZE before a backlog arrives), the planner expects the task filter to
# leave one row and would read and sort the whole backlog (140 ms a claim at 100,000 jobs)
# instead of walking the claim index for the window. No parameters: all travel in one simple
# query.
_BEGIN = (
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCAL jit = off; "
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"
)

# Tried, never waited for: a worker whose limits another worker is claiming leaves them to it
# and looks again shortly, instead of holding up its own claims (and slots) in a queue of
# limited claims. Two keys whose hashes collide share a lock: less parallel, never less safe.
_LOCK = f"""
SELECT bool_and(pg_try_advisory_xact_lock({LIMIT_LOCK_NAMESPACE}, hashed))
FROM (SELECT DISTINCT hashtext(key) AS hashed FROM unnest(%s::text[]) AS key ORDER BY 1) AS keys
"""

# Counted on the clock at this statement (after the locks were granted), which is also the time
# the starts of this claim are recorded at: a start counts from the moment it was decided.
# Starts out of their window are pruned on the way.
_USAGE = """
WITH clock AS (SELECT COALESCE(%s::timestamptz, clock_timestamp()) AS at),
limits AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[])
        AS limits(key, kind, name, period)
),
pruned AS (
    DELETE FROM soniq_limit_starts AS start USING limits, clock
    WHERE start.key = limits.key AND limits.period > 0
      AND start.started_at <= clock.at - make_interval(secs => limits.period)
)
SELECT limits.key,
       (SELECT count(*) FROM soniq_jobs AS job
        WHERE job.status = 'processing'
          AND ((limits.kind = 'task' AND job.task_name = limits.name)
               OR (limits.kind = 'queue' AND job.queue = limits.name))),
       recent.started, recent.oldest, clock.at
FROM limits CROSS JOIN clock
CROSS JOIN LATERAL (
    SELECT COALESCE(sum(start.count), 0) AS started, min(start.started_at) AS oldest
    FROM soniq_limit_starts AS start
    WHERE start.key = limits.key AND limits.period > 0
      AND start.started_at > clock.at - make_interval(secs => limits.period)
) AS recent
"""

# Limited tasks with room (outside full limited queues), and plain tasks in limited queues
# with room, their locks free, among the first LIMITED_WINDOW due jobs of the worker's tasks in
# claim order. No index serves the task filter (one on task_name lures the plain claim off its
# index), so the walk of the claim index is bounded: without it, a limited claim finding
# nothing behind a million other jobs would read them all. Deeper jobs come within reach as the
# ones ahead of them run. The rows are then taken by primary key (as the plain claim does),
# those another claim holds skipped.
LIMITED_WINDOW = 500
_CANDIDATES = f"""
SELECT id, task_name, queue FROM soniq_jobs AS job
WHERE job.id = ANY(ARRAY(
    SELECT id FROM (
        SELECT id, task_name, queue, priority, scheduled_at, lock, lock_order
        FROM soniq_jobs
        WHERE status = 'queued' AND scheduled_at <= {_NOW} AND task_name = ANY(%s::text[]){{scope}}
        ORDER BY priority, scheduled_at
        LIMIT {LIMITED_WINDOW}
    ) AS job
    WHERE ((task_name = ANY(%s::text[]) AND queue <> ALL(%s::text[]))
           OR (task_name = ANY(%s::text[]) AND queue = ANY(%s::text[])))
      AND id <> ALL(%s::uuid[])
      AND {LOCK_FREE}
    ORDER BY priority, scheduled_at
    LIMIT %s
))
  AND job.status = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM soniq_workers
      WHERE soniq_workers.id = %s::uuid AND soniq_workers.status IN ('dead', 'stopped')
  )
ORDER BY priority, scheduled_at
FOR UPDATE SKIP LOCKED
"""
_CANDIDATES_ANY_QUEUE = _CANDIDATES.format(scope="")
_CANDIDATES_SCOPED = _CANDIDATES.format(scope=" AND queue = ANY(%s::text[])")

_CLAIM = f"""
WITH claimed AS (
    UPDATE soniq_jobs AS job
    SET {TAKE}
    WHERE job.id = ANY(%s::uuid[]) AND job.status = 'queued'
    RETURNING {CLAIM_RETURNING}
)
SELECT {CLAIMED_COLUMNS} FROM claimed ORDER BY priority, scheduled_at
"""

_RECORD_STARTS = """
INSERT INTO soniq_limit_starts (key, started_at, count)
SELECT key, %s::timestamptz, count FROM unnest(%s::text[], %s::int[]) AS starts(key, count)
"""


class PostgresLimitStatements:
    def begin(self) -> list[Statement]:
        return [Statement(_BEGIN, ())]

    def lock(self, keys: Sequence[str]) -> Statement | None:
        return Statement(_LOCK, (list(keys),))

    def usage(self, limits: ClaimLimits, now: Any) -> Statement:
        keyed = limits.keyed
        return Statement(
            _USAGE,
            (
                now,
                [k.key for k in keyed],
                [k.kind for k in keyed],
                [k.name for k in keyed],
                [k.limit.rate.period if k.limit.rate else 0.0 for k in keyed],
            ),
        )

    def candidates(
        self,
        limits: ClaimLimits,
        scope: OpenScope,
        worker_id: str,
        seen: Sequence[str],
        limit: int,
        now: Any,
    ) -> Statement:
        queues = [] if limits.scope is None else [list(limits.scope)]
        sql = _CANDIDATES_ANY_QUEUE if limits.scope is None else _CANDIDATES_SCOPED
        return Statement(
            sql,
            (
                now,
                list(limits.served),
                *queues,
                list(scope.tasks),
                list(scope.full_queues),
                list(limits.plain_tasks),
                list(scope.open_queues),
                uuid_array(seen),
                limit,
                worker_id,
            ),
        )

    def claim(self, worker_id: str, job_ids: Sequence[str], now: Any) -> Statement:
        return Statement(_CLAIM, (now, worker_id, uuid_array(job_ids)))

    def record_starts(self, counts: dict[str, int], at: Any) -> Statement:
        return Statement(_RECORD_STARTS, (at, list(counts), list(counts.values())))

    def prune_starts(self, limits: ClaimLimits) -> Statement | None:
        return None  # pruned by the usage statement
