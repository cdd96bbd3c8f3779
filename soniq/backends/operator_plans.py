"""Operator actions as plans (see ``plans``): the same body on Django's connection, psycopg or
the standalone SQLite backend. Each runs in one transaction per batch of ids; the jobs an action
skipped are then read back to tell the operator why."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from soniq.backends.base import Dialect, Row, Statement
from soniq.backends.plans import Plan
from soniq.backends.rows import to_uuid_text
from soniq.core import operations
from soniq.core.operations import ActionResult, JobState

Explain = Callable[[JobState | None], str]


def _changed(rows: list[Row]) -> tuple[tuple[str, ...], frozenset[str]]:
    ids = tuple(to_uuid_text(row[0]) or "" for row in rows)
    queues = frozenset(str(row[1]) for row in rows if len(row) > 1)
    return ids, queues


def _explain(
    dialect: Dialect, job_ids: Sequence[str], applied: Sequence[str], explain: Explain
) -> Plan[dict[str, str]]:
    done = set(applied)
    skipped = [job_id for job_id in job_ids if job_id not in done]
    if not skipped:
        return {}
    rows = yield dialect.operator.job_states(skipped)
    states = {
        state.id: state
        for state in (
            JobState(to_uuid_text(row[0]) or "", row[1], row[2], row[3], bool(row[4]))
            for row in rows
        )
    }
    return {job_id: explain(states.get(job_id)) for job_id in skipped}


def _one_statement(
    build: Callable[[Dialect], Callable[[Sequence[str]], Statement]], explain: Explain
) -> Callable[[Dialect, Sequence[str]], Plan[ActionResult]]:
    def plan(dialect: Dialect, job_ids: Sequence[str]) -> Plan[ActionResult]:
        rows = yield build(dialect)(job_ids)
        applied, queues = _changed(rows)
        refused = yield from _explain(dialect, job_ids, applied, explain)
        return ActionResult(applied, refused, queues)

    return plan


cancel_jobs = _one_statement(lambda d: d.operator.cancel_jobs, operations.why_not_cancelled)
delete_dead_letters = _one_statement(
    lambda d: d.operator.delete_dead_letters, operations.why_not_deleted
)


def abort_jobs(dialect: Dialect, job_ids: Sequence[str], by: str) -> Plan[ActionResult]:
    """Queued jobs are cancelled; running ones get their abort requested (their worker stops
    them). Finished jobs are refused."""
    rows = yield dialect.operator.cancel_jobs(job_ids)
    cancelled, _ = _changed(rows)
    done = set(cancelled)
    rest = [job_id for job_id in job_ids if job_id not in done]
    aborting: tuple[str, ...] = ()
    if rest:
        aborting, _ = _changed((yield dialect.operator.request_aborts(rest, by)))
    applied = cancelled + aborting
    refused = yield from _explain(dialect, job_ids, applied, operations.why_not_aborted)
    return ActionResult(applied, refused)


def requeue_dead_letters(
    dialect: Dialect, job_ids: Sequence[str], explain: Explain = operations.why_not_requeued
) -> Plan[ActionResult]:
    first, *rest = dialect.operator.requeue_dead_letters(job_ids)
    applied, queues = _changed((yield first))
    # Not `yield from`: a list iterator cannot receive the rows the driver sends back.
    for statement in rest:  # noqa: UP028
        yield statement
    refused = yield from _explain(dialect, job_ids, applied, explain)
    return ActionResult(applied, refused, queues)


def retry_jobs(dialect: Dialect, job_ids: Sequence[str]) -> Plan[ActionResult]:
    """Run now: queued jobs become due, cancelled ones and dead letters go back to the queue.
    A running job is refused (there is no safe way to run it twice at once)."""
    rows = yield dialect.operator.retry_jobs(job_ids)
    applied, queues = _changed(rows)
    done = set(applied)
    rest = [job_id for job_id in job_ids if job_id not in done]
    result = ActionResult(applied, {}, queues)
    if rest:
        result = result.merge(
            (yield from requeue_dead_letters(dialect, rest, operations.why_not_retried))
        )
    return result


Action = Callable[[Dialect, Sequence[str]], Plan[ActionResult]]

# A job that makes a dedup key live again is checked against the statement's snapshot; an
# enqueue committing the same key meanwhile breaks the unique index. The batch then rolls back
# whole (nothing lost, nothing moved) and runs again, now seeing that job and refusing the id.
# A batch can also deadlock with a worker's batched write: both lock many rows, and a row that
# moved from queued to processing between their snapshots makes each wait for the other.
# PostgreSQL aborts one of them; the worker retries its write, and a batch runs again too.
KEY_RACE_ROUNDS = 3
DEADLOCK_SQLSTATE = "40P01"


def batches(job_ids: Sequence[str], size: int | None = None) -> list[list[str]]:
    """Ids in transaction-sized groups (``operations.BATCH_SIZE`` unless ``size``, read at
    each call), duplicates dropped (order kept)."""
    size = operations.BATCH_SIZE if size is None else size
    unique = list(dict.fromkeys(job_ids))
    return [unique[start : start + size] for start in range(0, len(unique), size)]


class SQLOperatorMixin:
    """The :class:`soniq.backends.base.OperatorBackend` methods for a backend that can run a
    plan in a transaction (``_operate`` / ``_operate_sync``, one call per batch)."""

    async def _operate(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        raise NotImplementedError

    def _operate_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        raise NotImplementedError

    async def _batched(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        return ActionResult.combine([await self._operate(action, b) for b in batches(job_ids)])

    def _batched_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        return ActionResult.combine([self._operate_sync(action, b) for b in batches(job_ids)])

    async def retry_jobs(self, job_ids: Sequence[str]) -> ActionResult:
        return await self._batched(retry_jobs, job_ids)

    def retry_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult:
        return self._batched_sync(retry_jobs, job_ids)

    async def cancel_jobs(self, job_ids: Sequence[str]) -> ActionResult:
        return await self._batched(cancel_jobs, job_ids)

    def cancel_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult:
        return self._batched_sync(cancel_jobs, job_ids)

    async def abort_jobs(self, job_ids: Sequence[str], by: str) -> ActionResult:
        return await self._batched(functools.partial(abort_jobs, by=by), job_ids)

    def abort_jobs_sync(self, job_ids: Sequence[str], by: str) -> ActionResult:
        return self._batched_sync(functools.partial(abort_jobs, by=by), job_ids)

    async def requeue_dead_letters(self, job_ids: Sequence[str]) -> ActionResult:
        return await self._batched(requeue_dead_letters, job_ids)

    def requeue_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult:
        return self._batched_sync(requeue_dead_letters, job_ids)

    async def delete_dead_letters(self, job_ids: Sequence[str]) -> ActionResult:
        return await self._batched(delete_dead_letters, job_ids)

    def delete_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult:
        return self._batched_sync(delete_dead_letters, job_ids)
