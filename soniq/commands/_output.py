"""How the commands print: aligned plain-text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from soniq.core.codec import one_line


class Out(Protocol):
    """Where a command prints: ``sys.stdout``, or a management command's ``self.stdout``."""

    def write(self, text: str, /) -> Any: ...


def table(out: Out, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    # Control characters escaped: text from the database must not drive the terminal.
    cells = [[one_line(str(cell)) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line(list(headers)) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def aware(value: datetime) -> datetime:
    """A time read through Django, in UTC: with ``USE_TZ = False`` Django gives naive times
    in ``TIME_ZONE``."""
    from django.utils import timezone

    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value.astimezone(UTC)


def now() -> datetime:
    """Now, to compare with times read through Django (naive in ``TIME_ZONE`` without
    ``USE_TZ``, which SQLite's backend insists on)."""
    from django.utils import timezone

    return timezone.now()


def moment(value: datetime | None) -> str:
    return "-" if value is None else aware(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def compact(data: Any) -> str:
    """``data`` as one line of JSON, every character past ASCII escaped: job data must not
    drive the terminal (C1 controls, right-to-left overrides)."""
    return json.dumps(data, default=_default)


def dump(out: Out, data: Any) -> None:
    """``data`` as indented JSON; datetimes in ISO 8601."""
    out.write(json.dumps(data, indent=2, default=_default) + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return aware(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
