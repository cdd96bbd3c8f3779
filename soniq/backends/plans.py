"""Storage operations written once, run by a sync or an async driver.

A plan is a generator that yields :class:`Statement` objects and receives their result rows.
It holds the logic (the dedup retry loop, the order of ids); drivers only execute. This is how
one body serves ``enqueue_sync`` on Django's connection and ``await enqueue`` on psycopg's
``AsyncConnection`` without two hand-written copies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TypeVar

from soniq.backends.base import Dialect, Row, Statement
from soniq.backends.rows import decode_job_info, to_uuid_text
from soniq.core.errors import EnqueueContentionError
from soniq.core.records import JobInfo, NewJob

T = TypeVar("T")
Plan = Generator[Statement, list[Row], T]
SyncExecute = Callable[[Statement], list[Row]]
AsyncExecute = Callable[[Statement], Awaitable[list[Row]]]

# A deduplicated insert can lose a race twice in a row (the live duplicate finishes between
# our INSERT ... DO NOTHING and the SELECT that looks it up); a handful of rounds settles it.
DEDUP_ROUNDS = 5


def insert_jobs(dialect: Dialect, jobs: Sequence[NewJob]) -> Plan[list[str]]:
    """Insert ``jobs``; returns their ids in input order (a duplicate's existing id)."""
    ids = [str(job.id) for job in jobs]
    plain = [job for job in jobs if not job.inserted_alone]
    if plain:
        # Not `yield from`: a list iterator cannot receive the rows the driver sends back.
        for statement in dialect.insert_jobs(plain):  # noqa: UP028
            yield statement
    for index, job in enumerate(jobs):
        if job.dedup_key is not None:
            ids[index] = yield from _insert_deduplicated(dialect, job)
        elif job.lock is not None:
            yield dialect.insert_job(job)
    return ids


def _insert_deduplicated(dialect: Dialect, job: NewJob) -> Plan[str]:
    assert job.dedup_key is not None
    for _ in range(DEDUP_ROUNDS):
        rows = yield dialect.insert_job(job)
        if rows:
            return to_uuid_text(rows[0][0]) or str(job.id)
        # ON CONFLICT DO NOTHING: a live job holds the key. A new statement sees it, even if
        # it committed while our INSERT waited on its lock.
        rows = yield dialect.find_live_duplicate(job.task_name, job.dedup_key)
        if rows:
            return to_uuid_text(rows[0][0]) or str(job.id)
    raise EnqueueContentionError(
        f"{job.task_name}: could not settle dedup key {job.dedup_key!r} after "
        f"{DEDUP_ROUNDS} rounds; jobs holding it keep finishing as new ones are enqueued"
    )


def get_job(dialect: Dialect, job_id: str) -> Plan[JobInfo | None]:
    rows = yield dialect.select_job(job_id)
    return decode_job_info(rows[0]) if rows else None


def run_sync(plan: Plan[T], execute: SyncExecute) -> T:
    try:
        statement = next(plan)
        while True:
            statement = plan.send(execute(statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(plan: Plan[T], execute: AsyncExecute) -> T:
    try:
        statement = next(plan)
        while True:
            statement = plan.send(await execute(statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
