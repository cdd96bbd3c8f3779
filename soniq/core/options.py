"""Validation of the per-job options shared by ``@app.job()`` and ``enqueue()``.

Each function raises ``ValueError`` with a message that completes the sentence
"<option> ..."; callers wrap it into the error type that fits their context
(:class:`JobDefinitionError` at decoration time, :class:`InvalidOptionError` at enqueue time).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from soniq.core.codec import text_problem
from soniq.core.settings import QUEUE_NAME_RULE, is_valid_queue_name

MIN_PRIORITY = 1
MAX_PRIORITY = 1000
DEFAULT_PRIORITY = 100
DEFAULT_QUEUE = "default"
DEFAULT_RETRIES = 3
MAX_NAME_LENGTH = 255
MAX_DEDUP_KEY_LENGTH = 255


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_priority(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"must be from {MIN_PRIORITY} (most urgent) to {MAX_PRIORITY}, got {value}"
        )
    return value


def check_queue(value: Any) -> str:
    if not is_valid_queue_name(value):
        raise ValueError(f"{_shown(value)} is not a valid queue name ({QUEUE_NAME_RULE})")
    return str(value)


def check_task_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_LENGTH or value != value.strip():
        raise ValueError(
            f"must be at most {MAX_NAME_LENGTH} characters without surrounding spaces, "
            f"got {_shown(value)}"
        )
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{_shown(value)}: {problem}")
    return value


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut short: a message must not carry a megabyte of text."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)


def check_retries(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"must be a non-negative integer, got {value!r}")
    return value


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_seconds(value: Any, *, allow_zero: bool = True) -> float:
    """A finite, non-negative number of seconds."""
    if not _is_number(value) or not _finite(value):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


def check_retry_delay(value: Any) -> float | tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("must not be an empty list; use 0 for no delay")
        return tuple(check_seconds(item) for item in value)
    return check_seconds(value)


def check_exception_types(value: Any) -> tuple[type[Exception], ...]:
    """An exception class, or a list or tuple of them (``retry_on``, ``no_retry_on``)."""
    given = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not given:
        raise ValueError("must name at least one exception class")
    for item in given:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise ValueError(
                f"must be exception classes (subclasses of Exception), got {_shown(item)}"
            )
    return given


def check_dedup_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if len(value) > MAX_DEDUP_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_DEDUP_KEY_LENGTH} characters, got {len(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{_shown(value)}: {problem}")
    return value


# The latest instant Python's datetime can hold; PostgreSQL and SQLite store any aware datetime
# up to it.
LATEST = datetime.max.replace(tzinfo=UTC)


def _too_far(given: str, value: Any = None) -> ValueError:
    hint = ""
    if _is_number(value) and value > 1e9:
        hint = (
            "; a number is a delay in seconds, not a Unix timestamp: for a timestamp pass "
            "datetime.fromtimestamp(ts, timezone.utc)"
        )
    return ValueError(
        f"{given} is past the latest date a job can be scheduled for ({LATEST.isoformat()}){hint}"
    )


def resolve_run_at(value: Any, now: datetime) -> datetime | None:
    """Turn ``scheduled_at``/``run_at`` into an aware UTC datetime (``None``: run now).

    Accepts an aware datetime, a ``timedelta`` or a number of seconds from ``now``. A naive
    datetime is refused: it is ambiguous, and guessing the zone wrong silently delays a job
    by hours.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"must be timezone-aware, got naive {value.isoformat()}; "
                "use datetime.now(timezone.utc) or django.utils.timezone.now()"
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"{value.isoformat()} is out of range: in UTC it falls outside the years 1 to 9999"
            ) from None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds < 0:
            raise ValueError(f"must not be a negative delay, got {value}")
        try:
            return now + value
        except OverflowError:
            raise _too_far(f"a delay of {value}") from None
    if _is_number(value):
        seconds = check_seconds(value)
        try:
            return now + timedelta(seconds=seconds)
        except OverflowError:
            raise _too_far(f"{value!r} seconds from now", value) from None
    raise ValueError(
        f"must be an aware datetime, a timedelta or seconds from now, got {type(value).__name__}"
    )
