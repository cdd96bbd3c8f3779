"""How job data is shown in the admin: masked, escaped, pretty-printed, truncated.

Job arguments and results are whatever applications put there, so nothing is trusted: every
value goes through Django's escaping, and keys that look like credentials are masked at any
depth before anything is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from soniq.core.periodic import format_period

MASK = "********"
PREVIEW_CHARS = 80


def mask(value: Any, names: Iterable[str]) -> Any:
    """``value`` with every dict entry whose key contains one of ``names`` (case-insensitive)
    replaced by :data:`MASK`, in nested dicts and lists too."""
    lowered = tuple(name.lower() for name in names if name)
    return _mask(value, lowered)


def _mask(value: Any, names: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if _sensitive(key, names) else _mask(item, names)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, names) for item in value]
    return value


def _sensitive(key: object, names: tuple[str, ...]) -> bool:
    text = str(key).lower()
    return any(name in text for name in names)


# Shorter masked values are not looked for in free text: "1" or "eu" would mask half a page.
MIN_SECRET_CHARS = 4


def secrets_in(value: Any, names: Iterable[str]) -> set[str]:
    """The values :func:`mask` hides in ``value`` (every scalar under a masked key, as text),
    so that they can be hidden in free text too: messages, tracebacks."""
    lowered = tuple(name.lower() for name in names if name)
    found: set[str] = set()
    _collect(value, lowered, found, hidden=False)
    return {secret for secret in found if len(secret) >= MIN_SECRET_CHARS}


def _collect(value: Any, names: tuple[str, ...], found: set[str], *, hidden: bool) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _collect(item, names, found, hidden=hidden or _sensitive(key, names))
    elif isinstance(value, list):
        for item in value:
            _collect(item, names, found, hidden=hidden)
    elif hidden and value is not None and not isinstance(value, bool):
        found.add(str(value))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of a secret replaced by :data:`MASK` (longest first, so
    a secret containing another is hidden whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def pretty_json(value: Any) -> SafeString:
    """A ``<pre>`` block of indented JSON (escaped)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="soniq-json">{}</pre>', text)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """One line of compact JSON, cut to ``limit`` characters (list pages)."""
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    return truncate(text, limit)


def truncate(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_time(value: datetime | None, now: datetime | None = None) -> SafeString | str:
    """A time short enough for a list column ("15:32:07" today, "Nov 21 09:14" this year),
    the full time in its tooltip. In the current time zone, as Django shows times."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    today = timezone.localtime(now or timezone.now())
    if local.date() == today.date():
        text = local.strftime("%H:%M:%S")
    elif local.year == today.year:
        text = local.strftime("%b %d %H:%M")
    else:
        text = local.strftime("%Y-%m-%d %H:%M")
    full = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), full, text)


FULL_TIME = "%Y-%m-%d %H:%M:%S %Z"


def full_time(value: datetime | None, zone: tzinfo | None = None) -> SafeString | str:
    """A time to the second with its zone, for a detail page: in ``zone``, else in the
    current time zone (as Django shows times); with the UTC time after it when the zone is
    not UTC ("2026-11-23 06:00:00 CET (05:00:00 UTC)") only when ``zone`` is given."""
    if value is None:
        return "-"
    local = value.astimezone(zone) if zone is not None else timezone.localtime(value)
    text = local.strftime(FULL_TIME)
    if zone is not None:
        aside = utc_aside(value, local)
        if aside:
            text = f"{text} ({aside})"
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), text)


def utc_aside(value: datetime, local: datetime) -> str:
    """The UTC time of ``value`` when ``local`` (the same moment in another zone) is not
    already UTC; its date too when that differs. Empty for a UTC ``local``."""
    if local.utcoffset() == timedelta(0):
        return ""
    utc = value.astimezone(UTC)
    if utc.date() == local.date():
        return utc.strftime("%H:%M:%S UTC")
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A period as people write it: "10 s", "2.5 s", "5 min", "2 h"."""
    return format_period(seconds)


def time_column(field: str, label: str) -> Callable[[Any, Any], SafeString | str]:
    """A list column showing ``field`` with :func:`compact_time`, sortable by the field."""

    @admin.display(description=label, ordering=field)
    def column(model_admin: Any, obj: Any) -> SafeString | str:
        return compact_time(getattr(obj, field))

    return column


def error_history(errors: Any, names: Iterable[str], secrets: Iterable[str] = ()) -> SafeString:
    """Every failed attempt, oldest first: type, message, when, where, and the traceback.
    Masked keys are masked; the job's masked values (``secrets``) are hidden in the text."""
    if not errors:
        return format_html("<p>{}</p>", "No failed attempt.")
    entries = errors if isinstance(errors, list) else [errors]
    secrets = tuple(secrets)
    seen: dict[str, str] = {}  # traceback -> the first attempt that showed it
    items = []
    for entry in entries:
        attempt, error_type, message, meta, traceback = (
            redact(field, secrets) for field in _error_fields(entry, names)
        )
        items.append(
            format_html(
                '<li class="soniq-error"><strong>Attempt {}</strong> · <code>{}</code>: {}'
                '<div class="soniq-error-meta">{}</div>{}</li>',
                attempt,
                error_type,
                message,
                meta,
                _traceback(traceback, seen.get(traceback)),
            )
        )
        if traceback:
            seen.setdefault(traceback, attempt)
    return format_html(
        '<ol class="soniq-errors">{}</ol>', format_html_join("\n", "{}", ((i,) for i in items))
    )


def _traceback(text: str, same_as: str | None) -> SafeString:
    """A traceback in full, or, when an earlier attempt had the very same one, a line saying
    so (the text still one click away)."""
    if same_as is None:
        return format_html('<pre class="soniq-traceback">{}</pre>', text)
    return format_html(
        '<details class="soniq-traceback-same"><summary>Same traceback as attempt {}</summary>'
        '<pre class="soniq-traceback">{}</pre></details>',
        same_as,
        text,
    )


def _error_fields(entry: Any, names: Iterable[str]) -> tuple[str, ...]:
    if not isinstance(entry, dict):
        return ("?", "", str(entry), "", "")
    masked = mask(entry, names)
    meta = " · ".join(
        f"{label} {_when(masked[key]) if key == 'failed_at' else masked[key]}"
        for key, label in (("failed_at", "at"), ("worker_id", "worker"))
        if masked.get(key)
    )
    return (
        str(masked.get("attempt", "?")),
        str(masked.get("error_type", "")),
        str(masked.get("message", "")),
        meta,
        str(masked.get("traceback", "")).rstrip(),
    )


def _when(value: Any) -> str:
    """An attempt's ISO time as the pages show times (to the second, with the zone); any
    other text as it is."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if timezone.is_naive(moment):
        return str(value)
    return timezone.localtime(moment).strftime(FULL_TIME)


def status_badge(status: str, title: str = "") -> SafeString:
    return format_html(
        '<span class="soniq-status soniq-status-{}" title="{}">{}</span>',
        status,
        title,
        status.replace("_", " "),
    )
