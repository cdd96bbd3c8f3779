"""One scheduler tick's firing, written once as a plan (see :mod:`soniq.backends.plans`) and
run inside each database's own tick transaction: PostgreSQL's (row locks, the lease on the
server) and SQLite's (``BEGIN IMMEDIATE``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from soniq.backends import plans
from soniq.backends.base import Dialect, Statement
from soniq.backends.rows import decode_schedule
from soniq.core.errors import SoniqError
from soniq.core.periodic import ScheduleDefinition, due_slots
from soniq.core.records import NewJob

logger = logging.getLogger("soniq.scheduler")

MakeJob = Callable[[ScheduleDefinition, datetime], NewJob]
Fired = tuple[str, datetime, str]  # schedule name, slot, job id

# A tick stops firing after this share of its lease (having fired at least one slot) and
# commits: the slots left stay due, and the next tick fires them.
WORK_SHARE = 0.5


@dataclass(frozen=True)
class FireStatements:
    """A database's statements for firing: the due schedules (locked for this tick), the
    fire record (no row back when the slot already fired), pointing a fire at an existing
    job, and advancing a schedule."""

    due: Callable[[datetime, int], Statement]
    record_fire: Callable[[str, datetime, str], Statement]
    point_fire_at: Callable[[str, datetime, str], Statement]
    advance: Callable[[str, datetime | None, datetime], Statement]


@dataclass
class Tick:
    fired: list[Fired] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)  # of the jobs enqueued


def fire_due(
    dialect: Dialect,
    statements: FireStatements,
    now: datetime,
    make_job: MakeJob,
    limit: int,
    lease: float,
) -> plans.Plan[Tick]:
    """Fire every due slot, each once: the fire record under the unique (schedule, slot) key,
    then its job, in the caller's transaction. After ``WORK_SHARE`` of ``lease`` the tick stops
    (having fired at least one slot): the slots left stay due for the next tick."""
    stop_at = time.monotonic() + lease * WORK_SHARE
    tick = Tick()
    done = 0  # slots dealt with by this tick
    for row in (yield statements.due(now, limit)):
        schedule = decode_schedule(row)
        assert schedule.next_fire_at is not None
        slots, upcoming = due_slots(schedule.definition, schedule.next_fire_at, now)
        last, following, out_of_time = None, upcoming, False
        for slot in slots:
            if done and time.monotonic() >= stop_at:
                following, out_of_time = slot, True  # this slot fires next tick
                break
            try:
                job = make_job(schedule.definition, slot)
            except SoniqError:
                # A broken schedule (its args no longer fit the job, say) must not stop the
                # others: it stays due, and is logged at every tick until fixed.
                logger.exception("schedule %s cannot fire", schedule.name)
                following = slot
                break
            if (yield statements.record_fire(schedule.name, slot, str(job.id))):
                [job_id] = yield from plans.insert_jobs(dialect, [job])
                if job_id != str(job.id):
                    # A unique job already queued: the fire points at that one.
                    yield statements.point_fire_at(schedule.name, slot, job_id)
                tick.fired.append((schedule.name, slot, job_id))
                tick.queues.add(job.queue)
            last = slot
            done += 1
        yield statements.advance(schedule.name, last, following)
        if out_of_time:
            break  # the other due schedules stay due for the next tick
    return tick
