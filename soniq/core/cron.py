"""Cron strings for recurring jobs: validation and a small builder DSL.

Every terminal returns a plain ``str`` (a 5-field cron expression), so the result plugs
straight into ``@app.periodic(cron=...)`` or ``app.scheduler.add(cron=...)``::

    every(5).minutes()                 # "*/5 * * * *"
    every(2).hours()                   # "0 */2 * * *"
    every(3).days()                    # "0 0 */3 * *"
    every(30).seconds()                # timedelta(seconds=30): a fixed interval, not cron
    daily().at("09:00")                # "0 9 * * *"
    weekly().on("monday").at("09:00")  # "0 9 * * 1"
    monthly().on_day(15).at("12:00")   # "0 12 15 * *"
    cron("*/15 * * * *")               # "*/15 * * * *" (validated passthrough)

Conventions:

* A step of one is written as a plain ``*``: ``every(1).minutes()`` is ``"* * * * *"``,
  ``every(1).hours()`` is ``"0 * * * *"`` and ``every(1).days()`` is ``"0 0 * * *"``.
* The builders ``daily()``, ``weekly()`` and ``monthly()`` are themselves usable wherever
  "an object whose ``__str__`` is a cron expression" is accepted. Left un-terminated they fire
  at midnight: ``str(daily())`` is ``"0 0 * * *"``, ``str(weekly().on("monday"))`` is
  ``"0 0 * * 1"`` and ``str(monthly().on_day(15))`` is ``"0 0 15 * *"``. Without ``.on()``,
  ``weekly()`` means Sunday and ``monthly()`` the 1st, as cron's ``@weekly`` and ``@monthly``.
* Cron steps restart at every boundary of the enclosing unit: ``*/7`` minutes fires at
  :00, :07, ..., :56 and then :00 again, ``*/5`` hours at 00:00, 05:00, ..., 20:00 and then
  00:00, ``*/3`` days on the 1st, 4th, ... of every month. Pick a divisor of 60, 24 or the
  month length for an even rhythm, or use ``every(n).seconds()`` for a fixed interval.

Bad input raises :class:`InvalidScheduleError`, a :class:`~soniq.core.errors.JobDefinitionError`
(and so a ``ValueError``) whose message names the argument at fault and how to fix it.

This module is pure: no Django, no database, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from soniq.core.errors import JobDefinitionError

__all__ = [
    "Daily",
    "Every",
    "InvalidScheduleError",
    "Monthly",
    "Weekly",
    "cron",
    "daily",
    "every",
    "monthly",
    "validate_cron",
    "weekly",
]


class InvalidScheduleError(JobDefinitionError):
    """A schedule (cron expression, time of day, weekday, interval, ...) is not valid.

    ``argument`` names the parameter at fault (``"expression"``, ``"time"``, ``"day"``,
    ``"n"``).
    """

    def __init__(self, message: str, *, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


# -- weekdays ----------------------------------------------------------------------------------

_WEEKDAY_NAMES: Final = (
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
)
# Cron numbering: Sunday is 0. Full names and 3-letter abbreviations, lower-cased.
_WEEKDAYS: Final[dict[str, int]] = {
    **{name: number for number, name in enumerate(_WEEKDAY_NAMES)},
    **{name[:3]: number for number, name in enumerate(_WEEKDAY_NAMES)},
}
_MONTH_ABBREVIATIONS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_VALID_WEEKDAYS_TEXT: Final = ", ".join(
    f"{name!r}/{name[:3]!r}"
    for name in (*_WEEKDAY_NAMES[1:], _WEEKDAY_NAMES[0])  # Monday first reads naturally
)


def _weekday_number(day: object) -> int:
    if not isinstance(day, str):
        raise InvalidScheduleError(
            f"weekly().on(day): day must be a weekday name such as 'monday' or 'mon', "
            f"got {type(day).__name__} {day!r}. Valid names (case-insensitive): "
            f"{_VALID_WEEKDAYS_TEXT}.",
            argument="day",
        )
    number = _WEEKDAYS.get(day.strip().lower())
    if number is None:
        raise InvalidScheduleError(
            f"weekly().on(day): {day!r} is not a weekday. Use a full name or its 3-letter "
            f"abbreviation (case-insensitive): {_VALID_WEEKDAYS_TEXT}.",
            argument="day",
        )
    return number


# -- time of day -------------------------------------------------------------------------------

_TIME_RE: Final = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _parse_time(method: str, time: object) -> tuple[int, int]:
    """``(hour, minute)`` from ``"H:MM"`` or ``"HH:MM"`` (24-hour clock)."""
    if not isinstance(time, str):
        raise InvalidScheduleError(
            f"{method}.at(time): time must be a string 'HH:MM' on the 24-hour clock, "
            f"e.g. '09:00' or '17:30'; got {type(time).__name__} {time!r}.",
            argument="time",
        )
    match = _TIME_RE.fullmatch(time.strip())
    if match is None:
        raise InvalidScheduleError(
            f"{method}.at(time): {time!r} is not a time of day. Write it as 'HH:MM' on the "
            f"24-hour clock with two-digit minutes, e.g. '09:00', '9:05' or '17:30'.",
            argument="time",
        )
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise InvalidScheduleError(
            f"{method}.at(time): hour {hour} in {time!r} is out of range; the hour must be "
            f"00-23 (24-hour clock, '00:00' is midnight).",
            argument="time",
        )
    if minute > 59:
        raise InvalidScheduleError(
            f"{method}.at(time): minute {minute} in {time!r} is out of range; the minute "
            f"must be 00-59.",
            argument="time",
        )
    return hour, minute


# -- builders ----------------------------------------------------------------------------------


def _check_count(value: object, *, call: str, argument: str) -> int:
    """``value`` as a positive int (``bool`` refused), or :class:`InvalidScheduleError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidScheduleError(
            f"{call}: {argument} must be a positive whole number (int), "
            f"got {type(value).__name__} {value!r}.",
            argument=argument,
        )
    if value < 1:
        raise InvalidScheduleError(
            f"{call}: {argument} must be at least 1, got {value}.",
            argument=argument,
        )
    return value


@dataclass(frozen=True, slots=True)
class Every:
    """``every(n)``: finish with ``.minutes()``, ``.hours()``, ``.days()`` or ``.seconds()``."""

    n: int

    def __repr__(self) -> str:
        return f"every({self.n})"

    def _step(self, unit: str, maximum: int, hint: str) -> str:
        if self.n > maximum:
            raise InvalidScheduleError(
                f"every({self.n}).{unit}(): n must be 1-{maximum} for a cron {unit[:-1]} "
                f"step, got {self.n}. {hint}",
                argument="n",
            )
        return "*" if self.n == 1 else f"*/{self.n}"

    def minutes(self) -> str:
        """``"*/n * * * *"`` (``"* * * * *"`` for n=1); n must be 1-59."""
        step = self._step(
            "minutes",
            59,
            f"For longer periods use every(n).hours(), or a fixed interval such as "
            f"every({self.n * 60}).seconds().",
        )
        return f"{step} * * * *"

    def hours(self) -> str:
        """``"0 */n * * *"`` (``"0 * * * *"`` for n=1), on the hour; n must be 1-23."""
        step = self._step(
            "hours",
            23,
            f"For longer periods use every(n).days() or daily(), or a fixed interval such "
            f"as every({self.n * 3600}).seconds().",
        )
        return f"0 {step} * * *"

    def days(self) -> str:
        """``"0 0 */n * *"`` (``"0 0 * * *"`` for n=1), at midnight; n must be 1-31."""
        step = self._step(
            "days",
            31,
            f"For longer periods use monthly(), or a fixed interval such as "
            f"every({self.n * 86400}).seconds().",
        )
        return f"0 0 {step} * *"

    def seconds(self) -> timedelta:
        """A fixed interval of n seconds (any positive n), as a :class:`~datetime.timedelta`."""
        return timedelta(seconds=self.n)


def every(n: int) -> Every:
    """Start an interval: ``every(5).minutes()`` is ``"*/5 * * * *"``."""
    return Every(_check_count(n, call=f"every({n!r})", argument="n"))


@dataclass(frozen=True, slots=True)
class Daily:
    """``daily()``: ``.at("HH:MM")`` gives the cron string; ``str(daily())`` is midnight."""

    def __repr__(self) -> str:
        return "daily()"

    def __str__(self) -> str:
        return "0 0 * * *"

    def at(self, time: str) -> str:
        """``"M H * * *"`` for ``time`` as ``"HH:MM"``: ``daily().at("09:00")`` is ``"0 9 * * *"``.

        ``time`` is on the 24-hour clock; the hour may have one digit, the minutes need two.
        """
        hour, minute = _parse_time("daily()", time)
        return f"{minute} {hour} * * *"


def daily() -> Daily:
    """Once a day: ``daily().at("09:00")`` is ``"0 9 * * *"``; without ``.at()``, midnight."""
    return Daily()


@dataclass(frozen=True, slots=True)
class Weekly:
    """``weekly()``: ``.on("monday")`` picks the day, ``.at()`` the time.

    Without ``.on()`` the day is Sunday (as cron's ``@weekly``); without ``.at()``, midnight.
    """

    weekday: int = 0

    def __repr__(self) -> str:
        return f"weekly().on({_WEEKDAY_NAMES[self.weekday]!r})"

    def __str__(self) -> str:
        return f"0 0 * * {self.weekday}"

    def on(self, day: str) -> Weekly:
        """The weekday, as a full name or 3-letter abbreviation, case-insensitive."""
        return Weekly(_weekday_number(day))

    def at(self, time: str) -> str:
        """``"M H * * D"``: ``weekly().on("monday").at("09:00")`` is ``"0 9 * * 1"``."""
        hour, minute = _parse_time(repr(self), time)
        return f"{minute} {hour} * * {self.weekday}"


def weekly() -> Weekly:
    """Once a week: ``weekly().on("monday").at("09:00")`` is ``"0 9 * * 1"``."""
    return Weekly()


@dataclass(frozen=True, slots=True)
class Monthly:
    """``monthly()``: ``.on_day(15)`` picks the day (the 1st if never called), ``.at()`` the time.

    Days 29-31 are skipped in the months that do not have them.
    """

    day: int = 1

    def __repr__(self) -> str:
        return f"monthly().on_day({self.day})"

    def __str__(self) -> str:
        return f"0 0 {self.day} * *"

    def on_day(self, day: int) -> Monthly:
        """The day of the month, 1-31."""
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31:
            raise InvalidScheduleError(
                f"monthly().on_day(day): day must be a day of the month, an int 1-31, got "
                f"{type(day).__name__} {day!r}. Days 29-31 are skipped in shorter months.",
                argument="day",
            )
        return Monthly(day)

    def at(self, time: str) -> str:
        """``"M H D * *"``: ``monthly().on_day(15).at("12:00")`` is ``"0 12 15 * *"``."""
        hour, minute = _parse_time(repr(self), time)
        return f"{minute} {hour} {self.day} * *"


def monthly() -> Monthly:
    """Once a month: ``monthly().on_day(15).at("12:00")`` is ``"0 12 15 * *"``."""
    return Monthly()


# -- cron expressions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # lower-case names standing for low, low + 1, ...

    def value(self, token: str) -> int | None:
        """The number a token stands for, or ``None`` for an unknown name."""
        if token.isdigit():
            return int(token)
        lowered = token.lower()
        return self.names.index(lowered) + self.low if lowered in self.names else None


_FIELDS: Final = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_ABBREVIATIONS),
    _Field("day-of-week", 0, 7, tuple(name[:3] for name in _WEEKDAY_NAMES)),
)
_FIELD_LAYOUT: Final = "minute hour day-of-month month day-of-week"
# One comma-separated item: "*", "5", "mon", "1-5", "*/15", "0/5", "mon-fri/2". Items this does
# not match ("L", "1#2", "15W", ...) are left to croniter.
_ITEM_RE: Final = re.compile(
    r"(?P<start>\*|[0-9]+|[a-z]+)(?:-(?P<end>[0-9]+|[a-z]+))?(?:/(?P<step>[0-9]+))?",
    re.IGNORECASE | re.ASCII,
)
# A fixed start, so that the "can this ever fire" check is deterministic (2000 is a leap year).
_PROBE_START: Final = datetime(2000, 1, 1)


def _cron_error(expression: str, problem: str) -> InvalidScheduleError:
    return InvalidScheduleError(f"cron expression {expression!r}: {problem}", argument="expression")


def _check_field(expression: str, field: _Field, text: str) -> str | None:
    """Raise on a number or step out of range; return the problem with an unknown name.

    Unknown names are only reported when croniter rejects the expression too, so that its
    own letters (``L`` for the last day of the month, ...) keep working.
    """
    unknown_name: str | None = None
    for item in text.split(","):
        match = _ITEM_RE.fullmatch(item)
        if match is None:
            continue
        for token in (match.group("start"), match.group("end")):
            if token is None or token == "*":
                continue
            value = field.value(token)
            if value is None:
                names = f" or one of {', '.join(field.names)}" if field.names else ""
                unknown_name = unknown_name or (
                    f"{token!r} in the {field.name} field is not valid; use a number "
                    f"{field.low}-{field.high}{names}."
                )
            elif not field.low <= value <= field.high:
                raise _cron_error(
                    expression,
                    f"{field.name} {value} is out of range; the {field.name} field takes "
                    f"{field.low}-{field.high}.",
                )
        step = match.group("step")
        if step is not None and not 1 <= int(step) <= field.high:
            raise _cron_error(
                expression,
                f"step /{step} in the {field.name} field is out of range; a {field.name} "
                f"step must be 1-{field.high}.",
            )
    return unknown_name


def validate_cron(expression: str) -> str:
    """Check a 5-field cron expression and return it normalized (stripped, single-spaced).

    The fields are ``minute hour day-of-month month day-of-week``. Raises
    :class:`InvalidScheduleError` naming the field at fault.
    """
    if not isinstance(expression, str):
        raise InvalidScheduleError(
            f"cron expression must be a str such as '*/15 * * * *', got "
            f"{type(expression).__name__} {expression!r}. For a builder such as "
            f"daily().at('09:00') call the terminal, or pass str(builder).",
            argument="expression",
        )
    fields = expression.split()
    normalized = " ".join(fields)
    if normalized.startswith("@"):
        raise _cron_error(
            expression,
            "nicknames such as '@daily' are not supported; write the 5 fields "
            "(e.g. '0 0 * * *') or use the builders (daily(), weekly(), monthly()).",
        )
    if len(fields) != 5:
        raise _cron_error(
            expression,
            f"has {len(fields)} field{'' if len(fields) == 1 else 's'}, a cron expression "
            f"needs exactly 5: {_FIELD_LAYOUT} (e.g. '*/15 * * * *'). Seconds and years "
            f"fields are not supported; for sub-minute periods use every(n).seconds().",
        )
    unknown_names = [
        problem
        for field, text in zip(_FIELDS, fields, strict=True)
        if (problem := _check_field(expression, field, text)) is not None
    ]
    # Imported on first use: croniter and dateutil add about 5 MiB to a process (a worker)
    # that never meets a cron expression.
    from croniter import CroniterBadDateError, CroniterError, croniter

    try:
        iterator = croniter(normalized, _PROBE_START)
    except CroniterError as exc:
        if unknown_names:
            raise _cron_error(expression, unknown_names[0]) from exc
        raise _cron_error(
            expression, f"is not a valid cron expression ({exc}). Fields: {_FIELD_LAYOUT}."
        ) from exc
    try:
        iterator.get_next(datetime)
    except CroniterBadDateError as exc:
        raise _cron_error(
            expression,
            "never fires: no month has the day-of-month it asks for (e.g. 30 or 31 "
            "in February). Pick a day that exists in the month(s).",
        ) from exc
    return normalized


def cron(expression: str) -> str:
    """A raw cron expression, validated: ``cron("*/15 * * * *")`` is ``"*/15 * * * *"``."""
    return validate_cron(expression)
