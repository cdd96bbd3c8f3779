"""How job data is shown in the admin: masked, escaped, pretty-printed, truncated.

Job arguments and results are whatever applications put there, so nothing is trusted: every
value goes through Django's escaping, and is masked and redacted
(:class:`~soniq.core.redaction.Redaction`) before anything is rendered; list columns redact a
text before they cut it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from soniq.core import masking
from soniq.core.periodic import format_period
from soniq.core.redaction import Redaction

MASK = masking.MASK
PREVIEW_CHARS = 80
# What a list reads of a long text before cutting it to a column: more than it shows, so that a
# secret across the cut is recognised whole and hidden, not shown in part.
PREVIEW_SOURCE_CHARS = 1000


def pretty_json(value: Any) -> SafeString:
    """A ``<pre>`` block of indented JSON (escaped)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="soniq-json">{}</pre>', text)


def preview(value: Any, redaction: Redaction, limit: int = PREVIEW_CHARS) -> str:
    """One line of compact JSON of ``value`` for a list: masked, and redacted as text over its
    first :data:`PREVIEW_SOURCE_CHARS` characters only (a list never scans a big value whole),
    then cut to ``limit``."""
    text = json.dumps(
        redaction.masked(value), separators=(", ", ": "), ensure_ascii=False, default=str
    )
    return shown_text(text, redaction, limit)


def shown_text(text: str, redaction: Redaction, limit: int = PREVIEW_CHARS) -> str:
    """The start of ``text`` for a list column: redacted before it is cut to ``limit``, so a
    secret that straddles the cut is hidden whole instead of shown in part."""
    return truncate(redaction.text(text[:PREVIEW_SOURCE_CHARS]), limit)


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


# History entries written by a job's control (soniq.Retry, Snooze, Cancel, Discard) or an
# abort rather than by a failure, and how the attempt history names them.
CONTROL_LABELS = {
    "soniq.core.control.Retry": "retry requested",
    "soniq.core.control.Snooze": "snoozed (attempt not charged)",
    "soniq.core.control.Cancel": "cancelled by the job",
    "soniq.core.control.Aborted": "aborted",
    "soniq.core.control.Discard": "discarded by the job",
}


def _control_label(entry: Any) -> SafeString | str:
    kind = entry.get("error_type") if isinstance(entry, dict) else None
    label = CONTROL_LABELS.get(kind) if isinstance(kind, str) else None
    return "" if label is None else format_html('<em class="soniq-control">{}</em> · ', label)


def error_history(errors: Any, redaction: Redaction, dropped: int = 0) -> SafeString:
    """Every failed attempt kept, oldest first: type, message, when, where, and the traceback,
    each masked and redacted (:class:`~soniq.core.redaction.Redaction`). ``dropped``: older
    attempts not kept (``ERROR_HISTORY_LIMIT``), said first so nobody reads the first entry
    shown as the first failure."""
    note = _dropped_note(dropped)
    if not errors:
        empty = "No failed attempt kept." if dropped else "No failed attempt."
        return format_html("{}<p>{}</p>", note, empty)
    entries = errors if isinstance(errors, list) else [errors]
    seen: dict[str, str] = {}  # traceback -> the first attempt that showed it
    items = []
    for entry in entries:
        attempt, error_type, message, meta, traceback = _error_fields(entry, redaction)
        items.append(
            format_html(
                '<li class="soniq-error"><strong>Attempt {}</strong> · {}<code>{}</code>: {}'
                '<div class="soniq-error-meta">{}</div>{}</li>',
                attempt,
                _control_label(entry),
                error_type,
                message,
                meta,
                _traceback(traceback, seen.get(traceback)),
            )
        )
        if traceback:
            seen.setdefault(traceback, attempt)
    return format_html(
        '{}<ol class="soniq-errors">{}</ol>',
        note,
        format_html_join("\n", "{}", ((i,) for i in items)),
    )


def _dropped_note(dropped: int) -> SafeString | str:
    if dropped <= 0:
        return ""
    attempts = "attempt" if dropped == 1 else "attempts"
    return format_html(
        '<p class="soniq-errors-dropped">{} earlier failed {} not kept '
        "(only the newest are: ERROR_HISTORY_LIMIT).</p>",
        dropped,
        attempts,
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


def _error_fields(entry: Any, redaction: Redaction) -> tuple[str, ...]:
    """``(attempt, type, message, meta, traceback)`` of an error entry, masked and redacted
    (a message may be a structure: it is masked as one before it is written as text)."""
    if not isinstance(entry, dict):
        return ("?", "", redaction.text(str(entry)), "", "")
    shown = redaction.value(entry)
    meta = " · ".join(
        f"{label} {_when(shown[key]) if key == 'failed_at' else shown[key]}"
        for key, label in (("failed_at", "at"), ("worker_id", "worker"))
        if shown.get(key)
    )
    return (
        _as_text(shown.get("attempt", "?"), redaction),
        _as_text(shown.get("error_type", ""), redaction),
        _as_text(shown.get("message", ""), redaction),
        redaction.text(meta),
        _as_text(shown.get("traceback", ""), redaction).rstrip(),
    )


def _as_text(value: Any, redaction: Redaction) -> str:
    """A field of a redacted entry as text. Strings are redacted already; the ``repr`` of
    anything else writes its strings again, escaped, and its numbers: redact it as text."""
    return value if isinstance(value, str) else redaction.text(str(value))


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
