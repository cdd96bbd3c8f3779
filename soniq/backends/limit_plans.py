"""The limited claim, written once and run by the PostgreSQL and SQLite drivers.

A worker serving limited tasks or queues claims their jobs here, apart from the plain claim.
The claim runs in one transaction that first makes every other limited claim on the same
limits wait (PostgreSQL: transaction-level advisory locks, taken in one order; SQLite: its
single writer), then counts, in a new statement and so a fresh snapshot, the jobs running
under each limit and the starts within each rate's window. It looks only at jobs whose
limits have room, chooses among them in claim order (:func:`soniq.core.limits.pick`), takes
them and records their starts, and commits: the next limited claim counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from soniq.backends.base import Row, Statement
from soniq.backends.plans import Plan
from soniq.backends.rows import to_utc, to_uuid_text
from soniq.core.limits import (
    ClaimLimits,
    LimitedClaim,
    OpenScope,
    Usage,
    open_scope,
    pick,
    rate_frees_at,
    room,
    started_per_key,
)


class LimitStatements(Protocol):
    """A backend's statements for :func:`claim_limited`."""

    def begin(self) -> list[Statement]:
        """The transaction's first statements (its settings), if any."""
        ...

    def lock(self, keys: Sequence[str]) -> Statement | None:
        """Take ``keys`` for this transaction, without waiting: one row whose first column
        says whether every key was free (``None``: the backend's transactions are serialised
        already). A claim that finds a key taken leaves the limits to the claim holding it."""
        ...

    def usage(self, limits: ClaimLimits, now: Any) -> Statement:
        """Rows ``(key, running, started, oldest start, clock)`` for each limit, with the
        clock starts are counted on (the same in every row); old starts may be pruned."""
        ...

    def candidates(
        self,
        limits: ClaimLimits,
        scope: OpenScope,
        worker_id: str,
        seen: Sequence[str],
        limit: int,
        now: Any,
    ) -> Statement:
        """Rows ``(id, task_name, queue)`` of due, queued jobs within ``scope``, their locks
        free, not in ``seen``, most urgent first, locked for this transaction."""
        ...

    def claim(self, worker_id: str, job_ids: Sequence[str], now: Any) -> Statement:
        """Take ``job_ids``; the claimed rows, as the plain claim returns them."""
        ...

    def record_starts(self, counts: dict[str, int], at: Any) -> Statement:
        """Count ``counts`` starts at ``at`` against each rate-limited key."""
        ...

    def prune_starts(self, limits: ClaimLimits) -> Statement | None:
        """Forget starts out of their window (``None``: :meth:`usage` does)."""
        ...


def claim_limited(
    statements: LimitStatements,
    limits: ClaimLimits,
    worker_id: str,
    wanted: int,
    now: Any = None,
) -> Plan[LimitedClaim]:
    """Claim up to ``wanted`` jobs under ``limits``: the claimed rows (in ``jobs``), the
    seconds until a rate limit that is full has room again, and whether another claim held
    the limits (``busy``: try again shortly)."""
    # Not `yield from`: a list iterator cannot receive the rows the driver sends back.
    for statement in statements.begin():  # noqa: UP028
        yield statement
    # Any limited job due at all? Usually not: then nothing is locked or counted, and the
    # claims of the other workers are not held up by this one.
    everything = OpenScope(tuple(sorted(limits.tasks)), (), limits.limited_queues)
    if not (yield statements.candidates(limits, everything, worker_id, [], 1, now)):
        return LimitedClaim([])
    lock = statements.lock([keyed.key for keyed in limits.keyed])
    if lock is not None:
        [row] = yield lock
        if not row[0]:
            return LimitedClaim([], busy=True)
    prune = statements.prune_starts(limits)
    if prune is not None:
        yield prune
    rows = yield statements.usage(limits, now)
    usage = {
        str(key): Usage(int(running), int(started), to_utc(oldest))
        for key, running, started, oldest, _ in rows
    }
    clock = rows[0][4] if rows else now
    free = room(limits, usage, wanted)
    chosen: list[str] = []
    taken: list[tuple[str, str]] = []
    seen: list[str] = []
    while len(chosen) < wanted:
        scope = open_scope(limits, free)
        if not scope:
            break
        found = yield statements.candidates(
            limits, scope, worker_id, seen, wanted - len(chosen), now
        )
        if not found:
            break
        candidates = [(to_uuid_text(row[0]) or "", str(row[1]), str(row[2])) for row in found]
        ids, passed_over = pick(limits, candidates, free, wanted - len(chosen))
        picked = set(ids)
        chosen.extend(ids)
        taken.extend((task, queue) for job_id, task, queue in candidates if job_id in picked)
        seen.extend(job_id for job_id, _, _ in candidates)
        # Nothing passed over: these were all there was (or all that was wanted). Otherwise a
        # limit filled up, and the next round looks past its jobs.
        if not passed_over:
            break
    counts = started_per_key(limits, taken)
    claimed: list[Row] = []
    if chosen:
        # Claimed at the clock the starts are counted on: claimed_at is when the limit
        # counts the job started.
        claimed = yield statements.claim(worker_id, chosen, clock)
        if counts:
            yield statements.record_starts(counts, clock)
    after = dict(usage)
    moment = to_utc(clock)
    for key, count in counts.items():
        before = usage.get(key, Usage())
        after[key] = Usage(before.running, before.started + count, before.oldest_start or moment)
    return LimitedClaim(claimed, seconds_until(rate_frees_at(limits, after, free), moment))


def seconds_until(moment: datetime | None, clock: datetime | None) -> float | None:
    """Seconds from ``clock`` to ``moment`` (at least a millisecond; ``None`` for no moment).
    Both are the database's clock: the worker waits that long on its own."""
    if moment is None or clock is None:
        return None
    return max((moment - clock) / timedelta(seconds=1), 0.001)
