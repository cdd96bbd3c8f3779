"""The SQLite statements of the limited claim (see ``soniq.backends.limit_plans``).

SQLite has one writer at a time: the claim's ``BEGIN IMMEDIATE`` already makes every other
claim wait, so there is nothing to lock. Times are the backend's clock, in Django's format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from soniq.backends.base import Statement
from soniq.backends.sqlite.statements import format_time
from soniq.backends.sqlite.worker_statements import (
    CLAIMED,
    LOCK_FREE,
    TAKE,
    WORKER_ALIVE,
    hex_id,
)
from soniq.core.limits import ClaimLimits, OpenScope

_USAGE = """
WITH limits AS (
    SELECT json_extract(value, '$[0]') AS key, json_extract(value, '$[1]') AS kind,
           json_extract(value, '$[2]') AS name, json_extract(value, '$[3]') AS since
    FROM json_each(?)
)
SELECT limits.key,
       (SELECT count(*) FROM soniq_jobs AS job
        WHERE job.status = 'processing'
          AND ((limits.kind = 'task' AND job.task_name = limits.name)
               OR (limits.kind = 'queue' AND job.queue = limits.name))),
       (SELECT coalesce(sum(start.count), 0) FROM soniq_limit_starts AS start
        WHERE start.key = limits.key AND limits.since IS NOT NULL
          AND start.started_at > limits.since),
       (SELECT min(start.started_at) FROM soniq_limit_starts AS start
        WHERE start.key = limits.key AND limits.since IS NOT NULL
          AND start.started_at > limits.since),
       ?
FROM limits
"""

_CANDIDATES = f"""
SELECT id, task_name, queue FROM soniq_jobs AS job
WHERE status = 'queued' AND scheduled_at <= ?
  AND ((task_name IN (SELECT value FROM json_each(?))
        AND queue NOT IN (SELECT value FROM json_each(?)))
       OR (task_name IN (SELECT value FROM json_each(?))
           AND queue IN (SELECT value FROM json_each(?))))
  AND (? IS NULL OR queue IN (SELECT value FROM json_each(?)))
  AND id NOT IN (SELECT value FROM json_each(?))
  AND {WORKER_ALIVE}
  AND {LOCK_FREE}
ORDER BY priority, scheduled_at
LIMIT ?
"""

_CLAIM = f"""
UPDATE soniq_jobs
SET {TAKE}
WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued'
RETURNING {CLAIMED}
"""

_RECORD_STARTS = """
INSERT INTO soniq_limit_starts (key, started_at, count)
SELECT json_extract(value, '$[0]'), ?, json_extract(value, '$[1]') FROM json_each(?)
"""

_PRUNE_STARTS = """
DELETE FROM soniq_limit_starts
WHERE EXISTS (
    SELECT 1 FROM json_each(?) AS pruned
    WHERE json_extract(pruned.value, '$[0]') = soniq_limit_starts.key
      AND soniq_limit_starts.started_at <= json_extract(pruned.value, '$[1]')
)
"""


class SQLiteLimitStatements:
    """The statements of one limited claim, at ``now`` (the backend's clock)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.now_text = format_time(now)

    def _windows(self, limits: ClaimLimits) -> list[tuple[str, str]]:
        """``(key, start of its window)`` for each rate-limited key."""
        return [
            (k.key, format_time(self.now - timedelta(seconds=k.limit.rate.period)))
            for k in limits.keyed
            if k.limit.rate is not None
        ]

    def begin(self) -> list[Statement]:
        return []

    def lock(self, keys: Sequence[str]) -> Statement | None:
        return None

    def usage(self, limits: ClaimLimits, now: Any) -> Statement:
        since = dict(self._windows(limits))
        rows = [[k.key, k.kind, k.name, since.get(k.key)] for k in limits.keyed]
        return Statement(_USAGE, (json.dumps(rows), self.now_text))

    def candidates(
        self,
        limits: ClaimLimits,
        scope: OpenScope,
        worker_id: str,
        seen: Sequence[str],
        limit: int,
        now: Any,
    ) -> Statement:
        queues = None if limits.scope is None else json.dumps(list(limits.scope))
        return Statement(
            _CANDIDATES,
            (
                self.now_text,
                json.dumps(list(scope.tasks)),
                json.dumps(list(scope.full_queues)),
                json.dumps(list(limits.plain_tasks)),
                json.dumps(list(scope.open_queues)),
                queues,
                queues,
                json.dumps([hex_id(job_id) for job_id in seen]),
                hex_id(worker_id),
                limit,
            ),
        )

    def claim(self, worker_id: str, job_ids: Sequence[str], now: Any) -> Statement:
        ids = json.dumps([hex_id(job_id) for job_id in job_ids])
        return Statement(_CLAIM, (self.now_text, hex_id(worker_id), ids))

    def record_starts(self, counts: dict[str, int], at: Any) -> Statement:
        return Statement(_RECORD_STARTS, (self.now_text, json.dumps(list(counts.items()))))

    def prune_starts(self, limits: ClaimLimits) -> Statement | None:
        windows = self._windows(limits)
        return Statement(_PRUNE_STARTS, (json.dumps(windows),)) if windows else None
