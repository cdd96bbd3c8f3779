"""What a running attempt knows of an abort request (``cancel_jobs(..., abort=True)``).

One per running job that takes a context, set by the worker on its event loop when the
request reaches it. A sync job reads ``requested`` from its thread (a plain attribute: reading
it takes no lock); an async job can ``await`` :meth:`AbortState.wait` instead of polling.
"""

from __future__ import annotations

import asyncio

# The payload of the wake-up notification that says an abort was requested: no queue name
# starts with a punctuation, so workers tell it apart; each then looks which of its jobs it
# concerns.
ABORT_NOTICE = "!abort"


class AbortState:
    __slots__ = ("_event", "at", "by", "requested", "waiting")

    def __init__(self) -> None:
        self.requested = False
        self.by = ""
        self.at = ""
        self._event: asyncio.Event | None = None  # made by the first wait()
        # Awaits in wait() now: such a job reacts to the abort itself, and is not cancelled.
        self.waiting = 0

    def request(self, by: str, at: str) -> None:
        """Mark the abort as requested (on the worker's loop)."""
        if self.requested:
            return
        self.by, self.at = by, at
        self.requested = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Return once the abort is requested (at once if it already is)."""
        if self.requested:
            return
        if self._event is None:
            self._event = asyncio.Event()
        self.waiting += 1
        try:
            await self._event.wait()
        finally:
            self.waiting -= 1
