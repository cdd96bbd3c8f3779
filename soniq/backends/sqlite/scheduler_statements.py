"""The SQLite statements of the scheduler, on the tables Django's migrations create.

Values follow Django's SQLite storage (see :mod:`soniq.backends.sqlite.statements`): times as
naive UTC text with microseconds, so text order is time order and a slot is always the same
text (the unique (schedule_name, fire_time) key of ``soniq_schedule_fires`` depends on it),
UUIDs as 32 hex digits, JSON as text. Placeholders are ``?`` (sqlite3's own).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from soniq.backends.base import Statement
from soniq.backends.sqlite.statements import format_time
from soniq.core.periodic import ScheduleDefinition

# The column order :func:`soniq.backends.sqlite.scheduler_ops.decode_schedule` reads.
SCHEDULE_COLUMNS = (
    "name, task_name, cron, interval_seconds, timezone, args, queue, priority, status, "
    "catch_up, catch_up_window_seconds, source, last_fired_at, next_fire_at"
)

# As on PostgreSQL: adding a schedule again updates it in place, and its timing is recomputed
# only when the timing itself changed, so re-syncing the code schedules at every start never
# delays a due slot. ``IS`` is SQLite's null-safe equality.
_UPSERT = """
INSERT INTO soniq_schedules (name, task_name, cron, interval_seconds, timezone, args, queue,
    priority, status, catch_up, catch_up_window_seconds, source, last_fired_at, next_fire_at,
    created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, NULL, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    task_name = excluded.task_name, args = excluded.args, queue = excluded.queue,
    priority = excluded.priority, catch_up = excluded.catch_up,
    catch_up_window_seconds = excluded.catch_up_window_seconds, source = excluded.source,
    updated_at = excluded.updated_at,
    next_fire_at = CASE
        WHEN soniq_schedules.cron IS excluded.cron
         AND soniq_schedules.interval_seconds IS excluded.interval_seconds
         AND soniq_schedules.timezone = excluded.timezone
        THEN soniq_schedules.next_fire_at ELSE excluded.next_fire_at END,
    cron = excluded.cron, interval_seconds = excluded.interval_seconds,
    timezone = excluded.timezone
"""


def upsert_schedule(
    definition: ScheduleDefinition, *, source: str, next_fire_at: datetime, now: datetime
) -> Statement:
    stamp = format_time(now)
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
            format_time(next_fire_at),
            stamp,
            stamp,
        ),
    )


def select_schedule(name: str) -> Statement:
    return Statement(f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules WHERE name = ?", (name,))


def list_schedules(status: str | None) -> Statement:
    return Statement(
        f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules "
        "WHERE ? IS NULL OR status = ? ORDER BY name",
        (status, status),
    )


def set_status(name: str, status: str, next_fire_at: datetime | None, now: datetime) -> Statement:
    return Statement(
        "UPDATE soniq_schedules SET status = ?, updated_at = ?, "
        "next_fire_at = COALESCE(?, next_fire_at) WHERE name = ? RETURNING name",
        (status, format_time(now), _time(next_fire_at), name),
    )


def delete_schedule(name: str) -> Statement:
    return Statement("DELETE FROM soniq_schedules WHERE name = ? RETURNING name", (name,))


# Run inside the tick's BEGIN IMMEDIATE transaction: it holds SQLite's write lock, so no other
# scheduler reads these rows as due until this one has committed (or rolled back).
def due_schedules(now: datetime, limit: int) -> Statement:
    return Statement(
        f"SELECT {SCHEDULE_COLUMNS} FROM soniq_schedules "
        "WHERE status = 'active' AND next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
        (format_time(now), limit),
    )


def record_fire(name: str, fire_time: datetime, job_id: str, fired_at: datetime) -> Statement:
    return Statement(
        "INSERT INTO soniq_schedule_fires (schedule_name, fire_time, job_id, fired_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (schedule_name, fire_time) DO NOTHING RETURNING id",
        (name, format_time(fire_time), uuid.UUID(job_id).hex, format_time(fired_at)),
    )


def point_fire_at(name: str, fire_time: datetime, job_id: str) -> Statement:
    return Statement(
        "UPDATE soniq_schedule_fires SET job_id = ? WHERE schedule_name = ? AND fire_time = ?",
        (uuid.UUID(job_id).hex, name, format_time(fire_time)),
    )


def advance(name: str, last_fired_at: datetime | None, next_fire_at: datetime) -> Statement:
    return Statement(
        "UPDATE soniq_schedules SET last_fired_at = COALESCE(?, last_fired_at), "
        "next_fire_at = ? WHERE name = ?",
        (_time(last_fired_at), format_time(next_fire_at), name),
    )


def next_due_at() -> Statement:
    return Statement("SELECT min(next_fire_at) FROM soniq_schedules WHERE status = 'active'", ())


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)
