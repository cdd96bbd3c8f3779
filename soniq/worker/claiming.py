"""How a worker claims: plain jobs in one statement, and the jobs of limited tasks and queues
through the limited claim (see :mod:`soniq.core.limits`).

A worker without limits claims exactly as it always did: one statement for every task it
runs. With limits, its plain claim leaves out the limited tasks and queues, and a limited claim
takes them within their limits. The limited claim costs a short transaction, so it is not
repeated while it cannot find more: after it comes back short, it waits until something may
have changed (a notification or the poll, a limited job of this worker finishing, or the
moment a full rate limit has room again).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from soniq.core.limits import ClaimLimits, Limit
from soniq.core.records import ClaimedJob
from soniq.core.registry import JobRegistry


def task_limits(registry: JobRegistry) -> dict[str, Limit]:
    """The limits the registered tasks declare (``concurrency_limit``, ``rate_limit``)."""
    limits = {}
    for name in registry.names():
        spec = registry.get(name)
        if spec is not None and spec.limit:
            limits[name] = spec.limit
    return limits


# Most limited claims a worker makes per second on account of notifications: under a stream of
# enqueues every notification would otherwise cost one, though few concern limited jobs. A job
# of its own under a limit ending still makes one at once.
NOTICED_GAP = 0.05


class Claimer:
    def __init__(
        self,
        backend: Any,
        registry: JobRegistry,
        queue_limits: dict[str, Limit],
        queues: tuple[str, ...] | None,
        concurrency: int,
        poll_interval: float,
    ) -> None:
        self.backend = backend
        self.names = tuple(registry.names())
        self.queues = queues
        self.limits = ClaimLimits.build(self.names, task_limits(registry), queue_limits, queues)
        # A limited claim takes at most this many at once: jobs held under a limit should
        # start at once, not wait behind others claimed ahead.
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._armed = True
        self._noticed = False  # a notification came since the last limited claim
        self._last_limited = 0.0  # time.monotonic() of the last limited claim
        self._rate_frees_at: float | None = None  # time.monotonic()
        self._held: set[str] = set()
        self._limited_in_flight = False

    def rearm(self) -> None:
        """Something may have changed: the next claim tries the limited jobs again."""
        self._armed = True

    def noticed(self) -> None:
        """A notification or a poll: jobs may have come. The limited jobs are tried again,
        at most once every :data:`NOTICED_GAP` seconds."""
        self._noticed = True

    def wait_limit(self, at_most: float) -> float:
        """How long an idle worker may wait before it should claim again: ``at_most``, or
        less if a full rate limit has room sooner, or a notification is still to be acted on."""
        now = time.monotonic()
        moments = [now + at_most]
        if self._rate_frees_at is not None:
            moments.append(self._rate_frees_at)
        if self._noticed and not self._armed and self.limits:
            moments.append(self._last_limited + NOTICED_GAP)
        return max(min(moments) - now, 0.0)

    def finished(self, job_ids: Iterable[str]) -> bool:
        """Jobs of this worker ended (their end written): True if one held a limit, whose
        room the next claim may take."""
        if not self._held:
            return False
        freed = False
        for job_id in job_ids:
            if job_id in self._held:
                self._held.discard(job_id)
                freed = True
        if freed:
            self._armed = True
        return freed

    def limited_due(self) -> bool:
        """Whether to make a limited claim now (none is in flight, and something may have
        changed since the last one came back short)."""
        return bool(self.limits) and not self._limited_in_flight and self._limited_due()

    def limited_wanted(self, wanted: int, free: int) -> int:
        """How many jobs a limited claim asks for: at most ``free`` (the slots free now), or
        one when none is. A job held under a limit holds its room until it starts, so none
        waits long behind busy slots, and yet limited jobs go on flowing beside others."""
        return max(min(wanted, self.concurrency, max(free, 1)), 1)

    async def claim_limited(self, worker_id: str, asked: int) -> list[ClaimedJob]:
        """Up to ``asked`` jobs of limited tasks and queues, within their limits."""
        self._limited_in_flight = True
        self._last_limited = time.monotonic()
        self._noticed = False
        try:
            result = await self.backend.claim_limited_jobs(worker_id, self.limits, asked)
        except BaseException:
            self._noticed = True  # look again shortly
            raise
        finally:
            self._limited_in_flight = False
        self._held.update(job.id for job in result.jobs)
        self._armed = len(result.jobs) >= asked
        # Another worker was claiming under these limits: look again shortly.
        self._noticed = result.busy
        self._rate_frees_at = (
            None if result.retry_after is None else time.monotonic() + result.retry_after
        )
        return list(result.jobs)

    async def claim_plain(self, worker_id: str, wanted: int) -> list[ClaimedJob]:
        """Up to ``wanted`` jobs of the worker's other tasks, outside limited queues."""
        if wanted <= 0:
            return []
        if not self.limits:
            plain: list[ClaimedJob] = await self.backend.claim_jobs(
                worker_id, self.names, self.queues, wanted
            )
        elif self.limits.plain_tasks:
            plain = await self.backend.claim_jobs(
                worker_id,
                self.limits.plain_tasks,
                self.queues,
                wanted,
                skip_queues=self.limits.limited_queues,
            )
        else:
            return []
        # Jobs with a lock are held too: the next of their lock may go once their end is
        # written, so that end wakes the worker.
        self._held.update(job.id for job in plain if job.lock is not None)
        return plain

    async def claim(
        self, worker_id: str, wanted: int, free: int | None = None
    ) -> tuple[list[ClaimedJob], list[ClaimedJob]]:
        """Up to ``wanted`` jobs, one claim after the other: ``(limited, plain)``, each most
        urgent first (``run_once``; the continuous worker makes its limited claims beside its
        plain ones)."""
        limited: list[ClaimedJob] = []
        if self.limited_due():
            free_now = wanted if free is None else free
            limited = await self.claim_limited(worker_id, self.limited_wanted(wanted, free_now))
        plain = await self.claim_plain(worker_id, wanted - len(limited))
        return limited, plain

    def _limited_due(self) -> bool:
        """Whether to try the limited jobs now: something may have changed since the last
        try came back short, or a poll interval went by (limits other workers held may have
        room: they do not tell this one)."""
        now = time.monotonic()
        if self._rate_frees_at is not None and now >= self._rate_frees_at:
            self._armed = True
        if self._noticed and now - self._last_limited >= NOTICED_GAP:
            self._armed = True
        if now - self._last_limited >= self.poll_interval:
            self._armed = True
        return self._armed
