"""Calling user hooks: sync or async, and never allowed to stop the worker."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger("soniq.worker")

HOOK_EVENTS = ("before_job", "after_job", "on_error")
Hooks = Mapping[str, Sequence[Callable[..., Any]]]


def check_hooks(hooks: Hooks | None) -> dict[str, list[Callable[..., Any]]]:
    """A copy with every event present; unknown events are an error, not silently ignored."""
    result: dict[str, list[Callable[..., Any]]] = {event: [] for event in HOOK_EVENTS}
    for event, callbacks in (hooks or {}).items():
        if event not in result:
            raise ValueError(f"unknown hook event {event!r}; known: {', '.join(HOOK_EVENTS)}")
        result[event].extend(callbacks)
    return result


async def call_hooks(callbacks: Sequence[Callable[..., Any]], *args: Any) -> None:
    for callback in callbacks:
        try:
            outcome = callback(*args)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            # A broken hook is the hook's problem: log it and carry on with the job.
            logger.exception("soniq hook %r failed", callback)
