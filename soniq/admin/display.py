"""How job data is shown in the admin: masked, escaped, pretty-printed, truncated.

Job arguments and results are whatever applications put there, so nothing is trusted: every
value goes through Django's escaping, and keys that look like credentials are masked at any
depth before anything is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

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
    items = format_html_join(
        "\n",
        '<li class="soniq-error"><strong>Attempt {}</strong> · <code>{}</code>: {}'
        '<div class="soniq-error-meta">{}</div><pre class="soniq-traceback">{}</pre></li>',
        (
            tuple(redact(field, secrets) for field in _error_fields(entry, names))
            for entry in entries
        ),
    )
    return format_html('<ol class="soniq-errors">{}</ol>', items)


def _error_fields(entry: Any, names: Iterable[str]) -> tuple[str, ...]:
    if not isinstance(entry, dict):
        return ("?", "", str(entry), "", "")
    masked = mask(entry, names)
    meta = " · ".join(
        f"{label} {masked[key]}"
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


def status_badge(status: str, title: str = "") -> SafeString:
    return format_html(
        '<span class="soniq-status soniq-status-{}" title="{}">{}</span>',
        status,
        title,
        status.replace("_", " "),
    )
