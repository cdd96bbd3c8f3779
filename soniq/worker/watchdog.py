"""The loop-stall watchdog: a warning, naming the culprit, while the event loop is blocked.

An ``async def`` job that calls blocking code (``time.sleep``, a sync HTTP client, heavy CPU
work) freezes every other job, the heartbeat and the fetch loop of its worker, and nothing
inside the loop can notice, because nothing inside the loop runs. So the measure is split:

- on the loop, a self-rescheduling ``call_later`` tick stores when the *next* tick is due;
- on a daemon thread, a check compares the clock with that due time. When the tick is overdue
  by more than ``threshold``, the loop has not run a ready callback for that long: the thread
  logs one warning with the running async jobs and the loop thread's current stack (the
  blocking call), then one more when the loop ticks again.

Lateness (now minus the due time), not "time since the last tick", is what is compared: it
leaves the tick interval out, so a reported stall really lasted at least ``threshold``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

THREAD_NAME = "soniq-loop-watchdog"

# A quarter of the threshold bounds the detection delay: a stall is reported at most
# threshold + 2 intervals (1.5 x threshold) after it began. The cap keeps long thresholds
# (say 10 s) reporting within half a second of crossing them; the floor keeps a silly
# threshold from turning the tick and the thread into busy loops.
_INTERVAL_FRACTION = 4
_MAX_INTERVAL = 0.25
_MIN_INTERVAL = 0.01

# How many frames of the loop's thread a warning shows: the blocking call, the job that made
# it, and a little context.
_STACK_FRAMES = 5
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep

# stop() runs on the loop's thread; a log handler wedged in the watchdog thread must not hang
# the worker's shutdown. The thread is a daemon, so leaving it behind is harmless.
_JOIN_TIMEOUT = 5.0


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


class LoopWatchdog:
    """Warn while the event loop is blocked longer than ``threshold`` seconds.

    ``describe`` returns the running async jobs, one string each (e.g. ``"send_email
    (<job id>)"``). It is called **from the watchdog thread** while the loop's thread is stuck
    somewhere else, so it must be safe to call from another thread: take a snapshot
    (``list(running.values())``) rather than iterate a dict the loop may change. If it raises,
    the warning says so and the watchdog carries on.

    ``threshold <= 0`` disables the watchdog: ``start()`` and ``stop()`` do nothing.
    """

    def __init__(
        self,
        threshold: float,
        describe: Callable[[], list[str]],
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        self.threshold = threshold
        self.describe = describe
        self.logger = logger or logging.getLogger("soniq.worker")
        self.interval = min(max(threshold / _INTERVAL_FRACTION, _MIN_INTERVAL), _MAX_INTERVAL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_ident = 0
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Written by the tick on the loop's thread, read by the watchdog thread: a float
        # attribute assignment is atomic in CPython, so no lock is needed.
        self._due = 0.0
        # The due time of the tick whose lateness was reported (None: no stall reported);
        # touched only by the watchdog thread.
        self._reported_due: float | None = None
        self._check_failed = False

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Begin watching ``loop`` (default: the running loop).

        Call it from the loop's thread, while the loop runs: that thread is the one whose
        stack a warning shows, and a loop that is not running yet would look stalled.
        """
        if not self.enabled:
            return
        if self._thread is not None:
            raise RuntimeError("the loop watchdog is already started")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = loop or running
        if loop is None:
            raise RuntimeError("LoopWatchdog.start() needs a loop: none is running here")
        if loop.is_running() and loop is not running:
            raise RuntimeError("LoopWatchdog.start() must be called from the loop's thread")
        self._loop = loop
        self._loop_thread_ident = threading.get_ident()
        self._reported_due = None
        self._stopping.clear()
        self._due = time.monotonic() + self.interval
        self._handle = loop.call_later(self.interval, self._tick)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns once the watchdog thread has ended. Idempotent.

        Call it from the loop's thread (it cancels the tick), before the loop stops.
        """
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()  # wakes the thread at once: it waits on this event
        thread.join(_JOIN_TIMEOUT)

    # -- the loop's side ---------------------------------------------------------------------

    def _tick(self) -> None:
        assert self._loop is not None
        self._due = time.monotonic() + self.interval
        self._handle = self._loop.call_later(self.interval, self._tick)

    # -- the watchdog thread's side -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._check()
            except Exception:
                # Never let the thread die; but a bug that fails every check must not log
                # four tracebacks a second, so only the first of a run of failures is logged.
                if not self._check_failed:
                    self.logger.exception("the loop watchdog's check failed")
                self._check_failed = True
            else:
                self._check_failed = False

    def _check(self) -> None:
        due = self._due
        if self._reported_due is not None:
            if due != self._reported_due:  # a tick ran: the loop is back
                ran_at = due - self.interval
                self.logger.warning(
                    "event loop responsive again after %s s", _seconds(ran_at - self._reported_due)
                )
                self._reported_due = None
            return
        late = time.monotonic() - due
        # A loop that was stopped without stop() is idle, not blocked: say nothing.
        if late <= self.threshold or self._loop is None or not self._loop.is_running():
            return
        self._reported_due = due
        self.logger.warning(
            "event loop blocked for %s s (threshold %g s): %s; %s",
            _seconds(late),
            self.threshold,
            self._jobs(),
            self._location(),
        )

    def _jobs(self) -> str:
        try:
            jobs = [str(job) for job in self.describe()]
        except Exception as exc:  # e.g. a dict that changed size under a careless describe()
            return f"running async job(s) unknown (describe() failed: {exc!r})"
        if not jobs:
            return "no async job running"
        return "running async job(s): " + ", ".join(jobs)

    def _location(self) -> str:
        frame = sys._current_frames().get(self._loop_thread_ident)
        if frame is None:
            return "the loop's thread has no Python frame"
        inner = frame.f_code
        return (
            f"the loop's thread is at {inner.co_filename}:{frame.f_lineno} in {inner.co_name}\n"
            "innermost frames of the loop's thread (most recent call last):\n"
            + "".join(_callback_stack(frame).format()).rstrip("\n")
        )


def _callback_stack(frame: FrameType) -> traceback.StackSummary:
    """The innermost frames of the callback the loop is running, without asyncio's own frames.

    Below a job's code lie the same few frames of the event loop in every stall; they tell an
    operator nothing and would push the job's frames out of a short summary. If the loop is
    stuck inside asyncio itself, show those frames rather than nothing.
    """
    frames: list[FrameType] = []
    current: FrameType | None = frame
    while current is not None and len(frames) < _STACK_FRAMES:
        if not current.f_code.co_filename.startswith(_ASYNCIO_DIR):
            frames.append(current)
        elif frames:
            break  # the callback's frames end where the loop's machinery begins
        current = current.f_back
    if not frames:
        return traceback.extract_stack(frame, limit=_STACK_FRAMES)
    return traceback.StackSummary.extract((f, f.f_lineno) for f in reversed(frames))
