"""Decoding result rows into core records, whatever driver produced them.

The same statement can run on psycopg directly or on Django's cursor (which hands back JSON as
text, and on SQLite UUIDs as 32-digit hex and times as naive UTC), so values are normalised
here rather than trusted to a driver's adapters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from soniq.core import codec
from soniq.core.periodic import Schedule, ScheduleDefinition
from soniq.core.records import ClaimedJob, JobInfo
from soniq.core.status import JobStatus, Suspicion

# The column order of every statement that selects a job (see Dialect.select_job).
JOB_COLUMNS = (
    "id",
    "task_name",
    "status",
    "args",
    "queue",
    "priority",
    "attempts",
    "max_attempts",
    "scheduled_at",
    "created_at",
    "started_at",
    "finished_at",
    "worker_id",
    "result",
    "errors",
    "errors_dropped",
    "dedup_key",
    "dead_letter_reason",
    "snoozes",
    "abort_requested_at",
    "abort_requested_by",
    "lock",
)


def to_uuid_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(str(value)))


def to_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime (naive means UTC) or ISO text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def from_json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return codec.loads(value)
    return value


def decode_job_info(row: tuple[Any, ...]) -> JobInfo:
    data = dict(zip(JOB_COLUMNS, row, strict=True))
    return JobInfo(
        id=to_uuid_text(data["id"]) or "",
        task_name=data["task_name"],
        status=JobStatus(data["status"]),
        args=from_json(data["args"]) or {},
        queue=data["queue"],
        priority=int(data["priority"]),
        attempts=int(data["attempts"]),
        max_attempts=int(data["max_attempts"]),
        scheduled_at=to_utc(data["scheduled_at"]),
        created_at=to_utc(data["created_at"]),
        started_at=to_utc(data["started_at"]),
        finished_at=to_utc(data["finished_at"]),
        worker_id=to_uuid_text(data["worker_id"]),
        result=from_json(data["result"]),
        errors=from_json(data["errors"]) or [],
        errors_dropped=int(data["errors_dropped"]),
        dedup_key=data["dedup_key"],
        dead_letter_reason=data["dead_letter_reason"],
        snoozes=int(data["snoozes"] or 0),
        abort_requested_at=to_utc(data["abort_requested_at"]),
        abort_requested_by=data["abort_requested_by"],
        lock=data["lock"],
    )


# By stored value: an enum's call costs more than the rest of a claimed row's decoding.
_SUSPICIONS = {int(member): member for member in Suspicion}


def decode_claimed(
    row: tuple[Any, ...], worker_id: str, args: dict[str, Any] | None = None
) -> ClaimedJob:
    """A row of a claim statement (id, task_name, args, queue, priority, attempts,
    max_attempts, scheduled_at, created_at, suspicion, snoozes, lock), on either database;
    ``args``: its arguments already decoded (see :func:`decode_claimed_rows`)."""
    return ClaimedJob(
        id=to_uuid_text(row[0]) or "",
        task_name=row[1],
        args=(from_json(row[2]) if args is None else args) or {},
        queue=row[3],
        priority=int(row[4]),
        attempt=int(row[5]),
        max_attempts=int(row[6]),
        scheduled_at=to_utc(row[7]),
        created_at=to_utc(row[8]),
        claimed_by=worker_id,
        suspicion=_SUSPICIONS[row[9] or 0],
        snoozes=row[10] or 0,
        lock=row[11],
    )


def decode_claimed_rows(rows: Sequence[tuple[Any, ...]], worker_id: str) -> list[ClaimedJob]:
    """Every row of a claim: the arguments of all of them parsed as one JSON array, one call
    of the C parser instead of one ``json.loads`` per job (a sixth of the worker's time per
    no-op job went into those calls)."""
    texts = [row[2] for row in rows]
    if len(texts) < 2 or not all(type(text) is str for text in texts):
        return [decode_claimed(row, worker_id) for row in rows]
    parsed = codec.loads("[" + ",".join(texts) + "]")
    return [decode_claimed(row, worker_id, args) for row, args in zip(rows, parsed, strict=True)]


def decode_schedule(row: tuple[Any, ...]) -> Schedule:
    """A schedule from a row of ``SCHEDULE_COLUMNS`` (the same columns, in the same order, in
    PostgreSQL's and SQLite's scheduler statements)."""
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
