"""Recurring schedules: their definition, validation, and which slots are due.

A schedule fires at *slots*: the times its cron expression (read in its IANA time zone) or its
interval names. What happens to slots missed while no scheduler ran is the schedule's catch-up
policy:

- ``"latest"`` (default): fire the most recent missed slot once;
- ``"skip"``: fire nothing that is late by more than the scheduler's grace period;
- ``"all"``: fire every missed slot no older than ``catch_up_window`` seconds (default a day).

Daylight-saving time, for cron schedules in a zone that has it: a wall-clock time skipped when
clocks go forward fires at the first valid time after the gap; a wall-clock time that happens
twice when clocks go back fires once, at its first occurrence, when the expression names its
hours and the repeated time directly follows its first occurrence ("30 2 * * *"); an
expression with several times inside the repeated hour ("0,30 2 * * *") fires them in both
occurrences, and one that runs every hour ("0 * * * *") fires both, as they are two different
real hours. Interval schedules count real seconds and ignore the zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from soniq.core import codec, options
from soniq.core.cron import validate_cron
from soniq.core.errors import JobDefinitionError

CATCH_UP_POLICIES = ("latest", "skip", "all")
DEFAULT_CATCH_UP_WINDOW = 86400.0
# A slot is "on time" (fired even under the skip policy) when it is at most this late.
ON_TIME_GRACE = 60.0
# Never fire more than this many missed slots in one go, whatever the window says.
MAX_CATCH_UP_SLOTS = 1000


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    """A recurring job: keyed by ``name`` (the resolved task name unless given)."""

    name: str
    task_name: str
    cron: str | None = None
    interval: float | None = None
    timezone: str = "UTC"
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    catch_up: str = "latest"
    catch_up_window: float | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        if self.cron:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {format_period(self.interval or 0)}"


def _fail(name: str, message: str) -> JobDefinitionError:
    return JobDefinitionError(f"schedule {name!r}: {message}")


def build_definition(
    *,
    name: str,
    task_name: str,
    cron: Any = None,
    every: Any = None,
    timezone: str = "UTC",
    args: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    catch_up: str = "latest",
    catch_up_window: float | None = None,
) -> ScheduleDefinition:
    """Validate everything a schedule says; raise :class:`JobDefinitionError` naming the fix."""
    if (cron is None) == (every is None):
        raise _fail(name, "pass exactly one of cron= or every=")
    expression = None
    interval = None
    if cron is not None:
        try:
            expression = validate_cron(str(cron))
        except ValueError as exc:
            raise _fail(name, str(exc)) from None
    else:
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise _fail(name, f"every= must be a timedelta or seconds, got {every!r}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise _fail(name, f"every= must be a positive duration, got {every!r}")
        interval = float(seconds)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(
            name, f"unknown time zone {timezone!r}; use an IANA name like 'Europe/Paris'"
        ) from None
    if catch_up not in CATCH_UP_POLICIES:
        raise _fail(
            name, f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}"
        )
    if catch_up_window is not None and (
        isinstance(catch_up_window, bool)
        or not isinstance(catch_up_window, (int, float))
        or catch_up_window <= 0
    ):
        raise _fail(name, f"catch_up_window must be positive seconds, got {catch_up_window!r}")
    values = dict(args or {})
    try:
        codec.check_json(values, "args")
        if queue is not None:
            options.check_queue(queue)
        if priority is not None:
            options.check_priority(priority)
        options.check_task_name(name)
    except ValueError as exc:
        raise _fail(name, str(exc)) from None
    return ScheduleDefinition(
        name=name,
        task_name=task_name,
        cron=expression,
        interval=interval,
        timezone=timezone,
        args=values,
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        catch_up_window=None if catch_up_window is None else float(catch_up_window),
    )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def next_slot(definition: ScheduleDefinition, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (aware datetimes, returned in UTC)."""
    if definition.interval is not None:
        return _utc(after) + timedelta(seconds=definition.interval)
    assert definition.cron is not None
    # Imported on first use: croniter and dateutil add about 5 MiB to a process (a worker)
    # that never meets a cron expression.
    from croniter import croniter

    local = after.astimezone(definition.zone)
    following: datetime = croniter(definition.cron, local).get_next(datetime)
    hour_field = definition.cron.split()[1]
    if following.replace(tzinfo=None) == local.replace(tzinfo=None) and not hour_field.startswith(
        "*"
    ):
        # The same wall-clock time again: the hour that repeats when clocks go back. A
        # schedule that names its hours fires once, at the first occurrence (one that runs
        # every hour fires both, as they are different real hours).
        following = croniter(definition.cron, following).get_next(datetime)
    return _utc(following)


def _interval_slot_at_or_before(
    definition: ScheduleDefinition, anchor: datetime, moment: datetime
) -> datetime:
    assert definition.interval is not None
    steps = math.floor((moment - anchor).total_seconds() / definition.interval)
    return anchor + timedelta(seconds=steps * definition.interval)


def due_slots(
    definition: ScheduleDefinition, next_fire: datetime, now: datetime, grace: float = ON_TIME_GRACE
) -> tuple[list[datetime], datetime]:
    """The slots to fire at ``now`` given the first unfired slot ``next_fire``, and the next
    slot to wait for (always after ``now``: a due run is never pushed into the future)."""
    if next_fire > now:
        return [], next_fire
    # The latest slot at or before now, found without walking every missed slot.
    if definition.interval is not None:
        latest = _interval_slot_at_or_before(definition, next_fire, now)
    else:
        assert definition.cron is not None
        from croniter import croniter  # on first use, as in next_slot()

        local_now = (now + timedelta(microseconds=1)).astimezone(definition.zone)
        latest = max(next_fire, _utc(croniter(definition.cron, local_now).get_prev(datetime)))
    upcoming = next_slot(definition, latest)
    if definition.catch_up == "latest":
        return [latest], upcoming
    if definition.catch_up == "skip":
        return ([latest] if (now - latest).total_seconds() <= grace else []), upcoming
    window = definition.catch_up_window or DEFAULT_CATCH_UP_WINDOW
    earliest = max(next_fire, now - timedelta(seconds=window))
    slots: list[datetime] = []
    slot = next_fire
    if slot < earliest and definition.interval is not None:
        # Stay on the interval's grid (anchored at next_fire).
        steps = math.ceil((earliest - next_fire).total_seconds() / definition.interval)
        slot = next_fire + timedelta(seconds=steps * definition.interval)
    elif slot < earliest:
        slot = next_slot(definition, earliest - timedelta(microseconds=1))
    while slot <= latest:
        slots.append(slot)
        slot = next_slot(definition, slot)
    # The newest ones, if the window holds more than we will fire at once.
    return slots[-MAX_CATCH_UP_SLOTS:], upcoming


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored: its definition, its state and its timing."""

    definition: ScheduleDefinition
    status: str
    source: str
    last_fired_at: datetime | None
    next_fire_at: datetime | None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def paused(self) -> bool:
        return self.status == "paused"


def upcoming_slots(definition: ScheduleDefinition, first: datetime, count: int) -> list[datetime]:
    """``first`` (a schedule's stored next fire time) and the ``count - 1`` slots after it."""
    slots = [_utc(first)]
    while len(slots) < count:
        slots.append(next_slot(definition, slots[-1]))
    return slots[:count]


def format_period(seconds: float) -> str:
    """A period as people write it: "10 s", "2.5 s", "5 min", "2 h"."""
    if seconds > 0 and float(seconds).is_integer():
        whole = int(seconds)
        for unit, size in (("h", 3600), ("min", 60)):
            if whole % size == 0:
                return f"{whole // size} {unit}"
        return f"{whole} s"
    return f"{round(float(seconds), 2):g} s"
