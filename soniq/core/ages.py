"""A duration as people read it, in the admin and the ``soniq`` commands alike."""

from __future__ import annotations

from datetime import timedelta


def format_age(age: timedelta | None) -> str:
    """``"45 s"``, ``"3 min 12 s"``, ``"2 h 5 min"``, ``"3 d 4 h"``; ``"-"`` for ``None``."""
    if age is None:
        return "-"
    seconds = max(int(age.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
