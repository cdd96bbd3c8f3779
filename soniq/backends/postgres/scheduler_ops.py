"""The scheduler's storage operations on PostgreSQL, mixed into :class:`PostgresBackend`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.postgres import scheduler_statements as ss
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.rows import from_json, to_utc
from soniq.core.errors import SoniqError
from soniq.core.periodic import Schedule, ScheduleDefinition, due_slots
from soniq.core.records import NewJob

logger = logging.getLogger("soniq.scheduler")

MakeJob = Callable[[ScheduleDefinition, datetime], NewJob]
Fired = tuple[str, datetime, str]  # schedule name, slot, job id


def decode_schedule(row: Row) -> Schedule:
    (
        name,
        task_name,
        cron,
        interval,
        timezone,
        args,
        queue,
        priority,
        status,
        catch_up,
        window,
        source,
        last_fired_at,
        next_fire_at,
    ) = row
    definition = ScheduleDefinition(
        name=name,
        task_name=task_name,
        cron=cron,
        interval=None if interval is None else float(interval),
        timezone=timezone,
        args=from_json(args) or {},
        queue=queue,
        priority=None if priority is None else int(priority),
        catch_up=catch_up,
        catch_up_window=None if window is None else float(window),
    )
    return Schedule(definition, status, source, to_utc(last_fired_at), to_utc(next_fire_at))


class PostgresSchedulerOps:
    """Needs ``_fetch`` and ``_in_transaction`` from :class:`PostgresBackend`."""

    async def _fetch(self, statement: Statement) -> list[Row]:
        raise NotImplementedError  # provided by PostgresBackend

    async def _in_transaction(self, body: Any) -> Any:
        raise NotImplementedError  # provided by PostgresBackend

    async def upsert_schedule(
        self, definition: ScheduleDefinition, *, source: str, next_fire_at: datetime
    ) -> None:
        await self._fetch(ss.upsert_schedule(definition, source=source, next_fire_at=next_fire_at))

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._fetch(ss.select_schedule(name))
        return decode_schedule(rows[0]) if rows else None

    async def list_schedules(self, status: str | None = None) -> list[Schedule]:
        return [decode_schedule(row) for row in await self._fetch(ss.list_schedules(status))]

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool:
        return bool(await self._fetch(ss.set_status(name, status, next_fire_at)))

    async def delete_schedule(self, name: str) -> bool:
        return bool(await self._fetch(ss.delete_schedule(name)))

    async def next_due_at(self) -> datetime | None:
        rows = await self._fetch(ss.next_due_at())
        return to_utc(rows[0][0]) if rows else None

    async def fire_due_schedules(
        self, now: datetime, make_job: MakeJob, limit: int = 100
    ) -> list[Fired]:
        """Fire every due slot, each exactly once: the fire record and the job are written in
        one transaction, under a unique (schedule, slot) key."""

        async def body(fetch: plans.AsyncExecute) -> list[Fired]:
            fired: list[Fired] = []
            dialect = PostgresDialect()
            for row in await fetch(ss.lock_due_schedules(now, limit)):
                schedule = decode_schedule(row)
                assert schedule.next_fire_at is not None
                slots, upcoming = due_slots(schedule.definition, schedule.next_fire_at, now)
                try:
                    jobs = [(slot, make_job(schedule.definition, slot)) for slot in slots]
                except SoniqError:
                    # A broken schedule (its args no longer fit the job, say) must not stop
                    # the others: it stays due, and is logged at every tick until fixed.
                    logger.exception("schedule %s cannot fire", schedule.name)
                    continue
                for slot, job in jobs:
                    if await fetch(ss.record_fire(schedule.name, slot, str(job.id))):
                        [job_id] = await plans.run_async(plans.insert_jobs(dialect, [job]), fetch)
                        if job_id != str(job.id):
                            # A unique job already queued: the fire points at that one.
                            await fetch(ss.point_fire_at(schedule.name, slot, job_id))
                        fired.append((schedule.name, slot, job_id))
                await fetch(ss.advance(schedule.name, slots[-1] if slots else None, upcoming))
            return fired

        result: list[Fired] = await self._in_transaction(body)
        return result
