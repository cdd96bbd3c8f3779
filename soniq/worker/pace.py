"""How many jobs a worker may claim ahead of its free slots: what it will start soon.

Claiming ahead saves a round trip per job when jobs are short, and hoards when they are long:
a job held by a busy worker waits while another worker sits idle. So the worker claims ahead
only the jobs it expects to start within ``HORIZON`` seconds at its recent pace, and never
more than the ``PREFETCH`` setting. The pace is that of slots freeing up (jobs finished per
second over the last ``WINDOW`` seconds, or since the worker started if that is less), not of
starts: slots filling at once when a worker starts say nothing about how soon they free again.
With 10,000 short jobs a second that is the whole ``PREFETCH``; with jobs of a second or more
it is nothing, and every job stays in the queue for whichever worker frees a slot first.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

HORIZON = 0.05  # seconds
WINDOW = 1.0  # seconds of history behind the pace
_SLICE = 0.05  # starts are counted per slice of this many seconds


class Pace:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slices: deque[tuple[float, int]] = deque()  # (slice start, jobs finished in it)
        self._since = clock()

    def restart(self) -> None:
        """Forget the history: the worker starts (again) now."""
        self._slices.clear()
        self._since = self._clock()

    def finished(self, count: int = 1) -> None:
        now = self._clock()
        if self._slices and now - self._slices[-1][0] < _SLICE:
            start, counted = self._slices[-1]
            self._slices[-1] = (start, counted + count)
        else:
            self._slices.append((now, count))
        self._forget(now)

    def per_second(self) -> float:
        now = self._clock()
        self._forget(now)
        # Over the time actually observed: a worker that started 0.1 s ago and finished 2,000
        # jobs runs at 20,000 a second, not 2,000 (its first second would be spent claiming a
        # tenth of what its slots start). At least one slice, so that the first few jobs do not
        # make a rate of thousands out of a millisecond.
        observed = min(WINDOW, max(now - self._since, _SLICE))
        return sum(counted for _, counted in self._slices) / observed

    def ahead(self, prefetch: int) -> int:
        """Jobs to hold beyond the free slots: as many as slots are expected to free within
        HORIZON."""
        if prefetch <= 0:
            return 0
        return min(prefetch, math.floor(self.per_second() * HORIZON))

    def _forget(self, now: float) -> None:
        while self._slices and now - self._slices[0][0] > WINDOW:
            self._slices.popleft()
