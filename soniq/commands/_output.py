"""How the commands print: aligned plain-text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
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


def moment(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def compact(data: Any) -> str:
    """``data`` as one line of JSON."""
    return json.dumps(data, default=_default, ensure_ascii=False)


def dump(out: Out, data: Any) -> None:
    """``data`` as indented JSON; datetimes in ISO 8601."""
    out.write(json.dumps(data, indent=2, default=_default) + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
