"""In-process wake-ups: a job enqueued in this process wakes this process's idle workers.

PostgreSQL delivers NOTIFY across processes; SQLite and the memory backend have nothing like
it, so the enqueue paths call :func:`notify` after their commit and a worker in the same process
(the testproject's demo, an embedded worker) starts at once instead of at its next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

Subscriber = Callable[[frozenset[str]], None]

_lock = threading.Lock()
_subscribers: list[Subscriber] = []


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call ``callback(queues)`` on every notify; returns the function that unsubscribes."""
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)

    return unsubscribe


def notify(queues: Iterable[str]) -> None:
    """New jobs are committed on these queues. Safe from any thread."""
    names = frozenset(queues)
    with _lock:
        subscribers = list(_subscribers)
    for callback in subscribers:
        callback(names)
