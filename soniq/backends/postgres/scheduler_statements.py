"""The PostgreSQL statements of the scheduler."""

from __future__ import annotations

import json
from datetime import datetime

from soniq.backends.base import Statement
from soniq.core.periodic import ScheduleDefinition

SCHEDULE_COLUMNS = (
    "name, task_name, cron, interval_seconds, timezone, args::text, queue, priority, status, "
    "catch_up, catch_up_window_seconds, source, last_fired_at, next_fire_at"
)

# Adding a schedule again updates it in place. Its timing is recomputed only when the timing
# itself changed, so re-syncing code schedules at every start never delays a due slot.
_UPSERT = """
INSERT INTO soniq_schedules (name, task_name, cron, interval_seconds, timezone, args, queue,
    priority, status, catch_up, catch_up_window_seconds, source, last_fired_at, next_fire_at,
    created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, 'active', %s, %s, %s, NULL, %s, now(), now())
ON CONFLICT (name) DO UPDATE SET
    task_name = EXCLUDED.task_name, args = EXCLUDED.args, queue = EXCLUDED.queue,
    priority = EXCLUDED.priority, catch_up = EXCLUDED.catch_up,
    catch_up_window_seconds = EXCLUDED.catch_up_window_seconds, source = EXCLUDED.source,
    updated_at = now(),
    next_fire_at = CASE
        WHEN soniq_schedules.cron IS NOT DISTINCT FROM EXCLUDED.cron
         AND soniq_schedules.interval_seconds IS NOT DISTINCT FROM EXCLUDED.interval_seconds
         AND soniq_schedules.timezone = EXCLUDED.timezone
        THEN soniq_schedules.next_fire_at ELSE EXCLUDED.next_fire_at END,
    cron = EXCLUDED.cron, interval_seconds = EXCLUDED.interval_seconds,
    timezone = EXCLUDED.timezone
"""


def upsert_schedule(
    definition: ScheduleDefinition, *, source: str, next_fire_at: datetime
) -> Statement:
    return Statement(
        _UPSERT,
        (
            definition.name,
            definition.task_name,
            definition.cron,
            definition.interval,
            definition.timezone,
            json.dumps(definition.args),
            definition.queue,
            definition.priority,
            definition.catch_up,
            definition.catch_up_window,
            source,
            next_fire_at,
        ),
    )


def select_schedule(name: str) -> Statement:
    return Statement(f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules WHERE name = %s", (name,))


def list_schedules(status: str | None) -> Statement:
    return Statement(
        f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules "
        "WHERE %s::text IS NULL OR status = %s ORDER BY name",
        (status, status),
    )


def set_status(name: str, status: str, next_fire_at: datetime | None) -> Statement:
    return Statement(
        "UPDATE soniq_schedules SET status = %s, updated_at = now(), "
        "next_fire_at = COALESCE(%s, next_fire_at) WHERE name = %s RETURNING name",
        (status, next_fire_at, name),
    )


def delete_schedule(name: str) -> Statement:
    return Statement("DELETE FROM soniq_schedules WHERE name = %s RETURNING name", (name,))


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))  # 0 would mean "no limit"


def begin_tick(lease: float) -> str:
    """``BEGIN`` and, for that transaction only (``SET LOCAL``: nothing outlives it, so this
    works through PgBouncer in transaction mode), the limits that bound a tick on the server:
    a session that leaves the transaction idle for ``lease`` seconds (its scheduler hangs, or
    the network cut it off) is terminated, a statement is cancelled after ``lease`` seconds
    and a lock wait after half of it. Either way the transaction ends and its row locks are
    released. One round trip, sent as a simple query without parameters (nothing to
    prepare); the values are numbers computed here, never text from elsewhere."""
    lease_ms = _milliseconds(lease)
    return (
        "BEGIN; "
        f"SET LOCAL idle_in_transaction_session_timeout = {lease_ms}; "
        f"SET LOCAL statement_timeout = {lease_ms}; "
        f"SET LOCAL lock_timeout = {_milliseconds(lease / 2)}"
    )


# Due schedules, each locked by the scheduler that fires it; another scheduler skips it
# rather than wait (and the fire key below stops a slot from firing twice regardless).
def lock_due_schedules(now: datetime, limit: int) -> Statement:
    return Statement(
        f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules "
        "WHERE status = 'active' AND next_fire_at <= %s "
        "ORDER BY next_fire_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )


# fired_at is the moment of the fire (clock_timestamp()), not the start of the tick's
# transaction (now()): the two differ when a tick is slow.
def record_fire(name: str, fire_time: datetime, job_id: str) -> Statement:
    return Statement(
        "INSERT INTO soniq_schedule_fires (schedule_name, fire_time, job_id, fired_at) "
        "VALUES (%s, %s, %s::uuid, clock_timestamp()) "
        "ON CONFLICT (schedule_name, fire_time) DO NOTHING RETURNING id",
        (name, fire_time, job_id),
    )


def point_fire_at(name: str, fire_time: datetime, job_id: str) -> Statement:
    return Statement(
        "UPDATE soniq_schedule_fires SET job_id = %s::uuid "
        "WHERE schedule_name = %s AND fire_time = %s",
        (job_id, name, fire_time),
    )


def advance(name: str, last_fired_at: datetime | None, next_fire_at: datetime) -> Statement:
    return Statement(
        "UPDATE soniq_schedules SET last_fired_at = COALESCE(%s, last_fired_at), "
        "next_fire_at = %s WHERE name = %s",
        (last_fired_at, next_fire_at, name),
    )


def next_due_at() -> Statement:
    return Statement("SELECT min(next_fire_at) FROM soniq_schedules WHERE status = 'active'", ())
