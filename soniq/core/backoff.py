"""Waiting between retries after a database error: short at first, doubling up to a cap.

A restart of PostgreSQL takes about a second; retrying every ``ERROR_RETRY_DELAY`` (5 s by
default) would leave work waiting for up to 5 s after the server is back. Starting at 0.1 s and
doubling finds the server within a fraction of a second of its return, while a long outage
costs no more than one attempt per cap.
"""

from __future__ import annotations

FIRST_DELAY = 0.1


class Backoff:
    """``delay()`` returns the next wait (0.1 s, 0.2 s, 0.4 s, ... up to ``cap``);
    ``reset()`` after a success starts again from the first. A cap below the first delay
    counts as the first delay: retrying with no pause at all would only spin while the
    database is away."""

    def __init__(self, cap: float, first: float = FIRST_DELAY) -> None:
        self.first = first
        self.cap = max(cap, first)
        self.failures = 0

    def delay(self) -> float:
        """The wait after one more failure."""
        self.failures += 1
        growth: float = 2.0 ** min(self.failures - 1, 32)
        return min(self.cap, self.first * growth)

    def reset(self) -> None:
        self.failures = 0
