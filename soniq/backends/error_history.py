"""The cap on a job's error history, as every backend applies it.

Each failed attempt (and each run lost with its worker) appends one entry to the job's
``errors``. A job retried without end, dead letter requeued after dead letter, would grow that
array without bound, so every append keeps only the newest ``ERROR_HISTORY_LIMIT`` entries and
adds the number it drops to ``errors_dropped``, in the same write. Both travel with the job
between ``soniq_jobs`` and ``soniq_dead_letter_jobs``. The SQL backends write the rule in their
worker statements; :func:`append_capped` is the rule itself, for the memory backend.
"""

from __future__ import annotations

from soniq.core.settings import SoniqSettings

# What the statement builders use when their caller gives no limit.
DEFAULT_HISTORY_LIMIT: int = SoniqSettings.model_fields["error_history_limit"].default


def append_capped(entries: list[str], entry: str, limit: int) -> int:
    """Append ``entry`` to ``entries``, then drop the oldest beyond ``limit``; returns how many
    were dropped."""
    entries.append(entry)
    dropped = max(len(entries) - limit, 0)
    del entries[:dropped]
    return dropped
