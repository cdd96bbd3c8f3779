"""Every running job's time limit on one timer.

``asyncio.timeout`` per job schedules (and cancels) a timer handle in the event loop for each
job and wraps it in a context manager: with thousands of short jobs a second that is a tenth of
the worker's time. Here the limits of all jobs share one heap and at most one timer, set for
the earliest deadline. Jobs of one task mostly share a timeout, so a new deadline is almost
never earlier than the ones already set, and arming a job costs one heap push. A job that ends
leaves its entry behind, dropped when the timer reaches it (or when such leftovers outnumber
the live entries, so that a long timeout cannot make the heap grow with every job).

Expiry behaves like ``asyncio.timeout``: the job's task is cancelled, and the
``CancelledError`` becomes a ``TimeoutError`` where the job is awaited, unless the task was
also cancelled for another reason (the worker stopping), which then wins.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Deadline:
    """One job's time limit; see :meth:`Deadlines.arm`."""

    __slots__ = ("cancelling", "expired", "live", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.live = True
        self.expired = False
        # The task's pending cancellations when armed: more than these at the end means the
        # task was also cancelled by someone else.
        self.cancelling = task.cancelling()


class Deadlines:
    """The deadlines of the jobs running on one event loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # ties in time never compare two Deadlines
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._live = 0

    def arm(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now for the current task; :meth:`release` it when the
        job ends."""
        task = asyncio.current_task()
        assert task is not None, "arm() runs in a task"
        loop = task.get_loop()
        deadline = Deadline(task, loop.time() + seconds)
        heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
        self._live += 1
        if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
            self._compact()
        if self._timer is None or deadline.when < self._timer_at:
            self._schedule(loop)
        return deadline

    def release(self, deadline: Deadline) -> bool:
        """Disarm ``deadline`` when its job ends (again: nothing happens). True when it
        expired and cancelled the task for it alone: the caller then raises ``TimeoutError``
        in place of the ``CancelledError``, as ``asyncio.timeout`` does."""
        if not deadline.live:
            return False
        deadline.live = False
        self._live -= 1
        if not deadline.expired:
            return False
        return deadline.task.uncancel() <= deadline.cancelling

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].live]
        heapq.heapify(self._heap)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._heap and not self._heap[0][2].live:
            heapq.heappop(self._heap)
        if self._heap:
            self._timer_at = self._heap[0][0]
            self._timer = loop.call_at(self._timer_at, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, deadline = heapq.heappop(self._heap)
            if deadline.live and not deadline.task.done():
                deadline.expired = True
                deadline.task.cancel()
        self._schedule(loop)
