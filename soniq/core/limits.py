"""Flow control: the limits a claim must respect, and how a claim chooses within them.

A job may be held back by three things, each enforced when a worker claims, whatever worker
and host it runs on:

- its **lock** (``enqueue(..., lock="customer:42")``): jobs that share a lock run one at a
  time, in order (priority first, then enqueue order);
- a **concurrency limit**, of its task (``@app.job(concurrency_limit=3)``) or of its queue
  (``QUEUE_LIMITS = {"partner": {"concurrency": 5}}``): at most that many running at once;
- a **rate limit**, of its task (``rate_limit="100/m"``) or of its queue: at most that many
  starts in any window of the period.

Locks are a condition of every claim. Limits are counted by a separate, serialised claim that
only workers serving limited tasks or queues make (see :class:`ClaimLimits`): a worker without
limits claims exactly as before. This module holds what every backend shares: parsing and
checking the options, the keys of the limits, and the greedy choice among candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from soniq.core.codec import text_problem

MAX_LOCK_LENGTH = 255
MAX_CONCURRENCY_LIMIT = 1_000_000
MAX_RATE_COUNT = 1_000_000

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*")
RATE_FORMAT = (
    "'<count>/<period>', the period a unit (s, m, h, d) with an optional number before it: "
    "'10/s', '100/m', '1000/h', '50/15m'"
)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any window of ``period`` seconds."""

    count: int
    period: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_rate(value: Any) -> Rate:
    """``"100/m"`` and the like as a :class:`Rate`; ``ValueError`` completing "<option> ..."."""
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a string such as '100/m', got {type(value).__name__} {value!r}")
    found = _RATE.fullmatch(value.lower())
    if found is None or found.group(3) not in _UNITS:
        raise ValueError(f"{value!r} is not a rate: write {RATE_FORMAT}")
    count = int(found.group(1))
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"{value!r}: the count must be from 1 to {MAX_RATE_COUNT:,}")
    multiple = float(found.group(2)) if found.group(2) else 1.0
    period = multiple * _UNITS[found.group(3)]
    if not 0.001 <= period <= 366 * 86400:
        raise ValueError(f"{value!r}: the period must be from 1 ms to 366 days")
    return Rate(count, period, value.strip())


def check_concurrency_limit(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"must be a whole number of jobs, got {type(value).__name__} {value!r}")
    if not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        raise ValueError(f"must be from 1 to {MAX_CONCURRENCY_LIMIT:,}, got {value}")
    return value


def check_lock(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__} {value!r}")
    if not value or len(value) > MAX_LOCK_LENGTH:
        raise ValueError(f"must be 1 to {MAX_LOCK_LENGTH} characters, got {len(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{value[:80]!r}: {problem}")
    return value


@dataclass(frozen=True, slots=True)
class Limit:
    """The limits of one task or queue (either may be ``None``: not limited that way)."""

    concurrency: int | None = None
    rate: Rate | None = None

    def __bool__(self) -> bool:
        return self.concurrency is not None or self.rate is not None


def parse_queue_limits(value: Any) -> dict[str, Limit]:
    """The ``QUEUE_LIMITS`` setting: ``{queue: {"concurrency": N, "rate": "10/s"}}``."""
    # Imported here: settings imports this module for its validator.
    from soniq.core.settings import QUEUE_NAME_RULE, is_valid_queue_name

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            "must be a dict of queue name to limits, such as "
            '{"partner": {"concurrency": 5, "rate": "10/s"}}'
        )
    limits: dict[str, Limit] = {}
    for queue, given in value.items():
        if not is_valid_queue_name(queue):
            raise ValueError(f"queue name {queue!r} is not valid ({QUEUE_NAME_RULE})")
        if isinstance(given, Limit):
            limits[queue] = given
            continue
        if not isinstance(given, Mapping) or not given:
            raise ValueError(
                f"{queue!r}: must be a dict with 'concurrency' and/or 'rate', got {given!r}"
            )
        unknown = sorted(set(given) - {"concurrency", "rate"})
        if unknown:
            raise ValueError(f"{queue!r}: unknown key(s) {unknown}; use 'concurrency' and 'rate'")
        try:
            concurrency = (
                None
                if given.get("concurrency") is None
                else check_concurrency_limit(given["concurrency"])
            )
        except ValueError as exc:
            raise ValueError(f"{queue!r}: concurrency {exc}") from None
        try:
            rate = None if given.get("rate") is None else parse_rate(given["rate"])
        except ValueError as exc:
            raise ValueError(f"{queue!r}: rate {exc}") from None
        if concurrency is None and rate is None:
            raise ValueError(f"{queue!r}: give 'concurrency' or 'rate' (or leave the queue out)")
        limits[queue] = Limit(concurrency, rate)
    return limits


def task_key(name: str) -> str:
    return f"task:{name}"


def queue_key(name: str) -> str:
    return f"queue:{name}"


@dataclass(frozen=True, slots=True)
class KeyedLimit:
    """One limit as the claim counts it: its key, what it covers and its bounds."""

    key: str
    kind: str  # "task" or "queue"
    name: str
    limit: Limit


@dataclass(frozen=True)
class ClaimLimits:
    """The limits that apply to what a worker claims.

    ``tasks``: its limited tasks; ``queues``: the limited queues it serves; ``served``: every
    task it runs. Plain claims take ``plain_tasks`` outside ``limited_queues``; the limited
    claim takes the rest, counting every limit it touches.
    """

    tasks: Mapping[str, Limit]
    queues: Mapping[str, Limit]
    served: tuple[str, ...]
    scope: tuple[str, ...] | None = None
    plain_tasks: tuple[str, ...] = field(init=False)
    limited_queues: tuple[str, ...] = field(init=False)
    keyed: tuple[KeyedLimit, ...] = field(init=False)

    def __post_init__(self) -> None:
        limited = set(self.tasks)
        object.__setattr__(
            self, "plain_tasks", tuple(name for name in self.served if name not in limited)
        )
        queues = sorted(q for q in self.queues if self.scope is None or q in self.scope)
        object.__setattr__(self, "limited_queues", tuple(queues))
        keyed = [KeyedLimit(task_key(n), "task", n, self.tasks[n]) for n in sorted(self.tasks)]
        keyed += [KeyedLimit(queue_key(q), "queue", q, self.queues[q]) for q in queues]
        object.__setattr__(self, "keyed", tuple(keyed))

    @classmethod
    def build(
        cls,
        served: Iterable[str],
        task_limits: Mapping[str, Limit],
        queue_limits: Mapping[str, Limit],
        scope: Sequence[str] | None = None,
    ) -> ClaimLimits:
        names = tuple(served)
        return cls(
            tasks={name: limit for name, limit in task_limits.items() if name in names and limit},
            queues={queue: limit for queue, limit in queue_limits.items() if limit},
            served=names,
            scope=None if scope is None else tuple(scope),
        )

    def __bool__(self) -> bool:
        return bool(self.keyed)

    def keys_of(self, task_name: str, queue: str) -> list[str]:
        """The keys of the limits a job of ``task_name`` in ``queue`` counts against."""
        keys = []
        if task_name in self.tasks:
            keys.append(task_key(task_name))
        if queue in self.limited_queues:
            keys.append(queue_key(queue))
        return keys

    def limits_job(self, task_name: str, queue: str) -> bool:
        return task_name in self.tasks or queue in self.limited_queues


@dataclass(frozen=True, slots=True)
class Usage:
    """How full one limit is: jobs running now, and starts within its rate's window (with
    the oldest of them, which leaves the window first)."""

    running: int = 0
    started: int = 0
    oldest_start: datetime | None = None


def room(limits: ClaimLimits, usage: Mapping[str, Usage], wanted: int) -> dict[str, int]:
    """How many more jobs each limit lets start now (at most ``wanted``)."""
    free: dict[str, int] = {}
    for keyed in limits.keyed:
        used = usage.get(keyed.key, Usage())
        left = wanted
        if keyed.limit.concurrency is not None:
            left = min(left, keyed.limit.concurrency - used.running)
        if keyed.limit.rate is not None:
            left = min(left, keyed.limit.rate.count - used.started)
        free[keyed.key] = max(left, 0)
    return free


@dataclass(frozen=True, slots=True)
class OpenScope:
    """What a limited claim may look at, given the room left: limited tasks with room (not
    in a full limited queue), and plain tasks in limited queues with room."""

    tasks: tuple[str, ...]
    full_queues: tuple[str, ...]
    open_queues: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.tasks or self.open_queues)


def open_scope(limits: ClaimLimits, free: Mapping[str, int]) -> OpenScope:
    return OpenScope(
        tasks=tuple(n for n in sorted(limits.tasks) if free.get(task_key(n), 0) > 0),
        full_queues=tuple(q for q in limits.limited_queues if free.get(queue_key(q), 0) <= 0),
        open_queues=tuple(q for q in limits.limited_queues if free.get(queue_key(q), 0) > 0),
    )


def pick(
    limits: ClaimLimits,
    candidates: Sequence[tuple[str, str, str]],
    free: dict[str, int],
    wanted: int,
) -> tuple[list[str], bool]:
    """Choose, in the candidates' order (most urgent first), the ``(id, task, queue)`` that
    every limit they count against still has room for, taking that room from ``free``.
    Returns the chosen ids, and whether a candidate was passed over (a limit filled up)."""
    chosen: list[str] = []
    passed_over = False
    for job_id, task_name, queue in candidates:
        if len(chosen) >= wanted:
            break
        keys = limits.keys_of(task_name, queue)
        if all(free.get(key, 0) > 0 for key in keys):
            for key in keys:
                free[key] -= 1
            chosen.append(job_id)
        else:
            passed_over = True
    return chosen, passed_over


def started_per_key(limits: ClaimLimits, claimed: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Starts to record per rate-limited key, for jobs ``(task, queue)`` just claimed."""
    rated = {k.key for k in limits.keyed if k.limit.rate is not None}
    counts: dict[str, int] = {}
    for task_name, queue in claimed:
        for key in limits.keys_of(task_name, queue):
            if key in rated:
                counts[key] = counts.get(key, 0) + 1
    return counts


def rate_frees_at(
    limits: ClaimLimits, usage: Mapping[str, Usage], free: Mapping[str, int]
) -> datetime | None:
    """The earliest moment a rate limit that is full now has room again (``None``: none is
    full). Past it, a worker held back by that rate should look again."""
    moments = []
    for keyed in limits.keyed:
        rate = keyed.limit.rate
        used = usage.get(keyed.key)
        if rate is None or used is None or used.oldest_start is None:
            continue
        if free.get(keyed.key, 0) <= 0 and used.started >= rate.count:
            moments.append(used.oldest_start + timedelta(seconds=rate.period))
    return min(moments) if moments else None


@dataclass(frozen=True, slots=True)
class LimitedClaim:
    """What a limited claim took, and in how many seconds a rate limit that is full has room
    again (``None``: none is full): a worker held back by it looks again then. ``busy``:
    another worker's limited claim held the limits; this one took nothing and should look
    again shortly."""

    jobs: list[Any]
    retry_after: float | None = None
    busy: bool = False
