"""Flow control's rules: rates, limits, the settings, and the limited claim's choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soniq import Soniq
from soniq.core.errors import ConfigurationError
from soniq.core.limits import (
    ClaimLimits,
    Limit,
    Rate,
    Usage,
    check_lock,
    open_scope,
    parse_rate,
    pick,
    rate_frees_at,
    room,
    started_per_key,
)
from soniq.core.settings import build_settings
from soniq.worker.claiming import NOTICED_GAP, Claimer, task_limits


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/s", 10, 1.0),
        ("100/m", 100, 60.0),
        ("1000/h", 1000, 3600.0),
        ("5000/d", 5000, 86400.0),
        ("50/15m", 50, 900.0),
        (" 3 / 2.5 sec ", 3, 2.5),
        ("7/minute", 7, 60.0),
        ("1/HOUR", 1, 3600.0),
    ],
)
def test_rates_are_parsed(text: str, count: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)
    assert str(rate) == text.strip()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ten per sec", "is not a rate"),
        ("0/s", "count must be from 1"),
        ("10", "is not a rate"),
        ("10/fortnight", "is not a rate"),
        ("-1/s", "is not a rate"),
        ("1/0s", "period must be from 1 ms"),
        ("1/400d", "period must be from 1 ms"),
        (10, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_bad_rates_say_what_is_wrong(value: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rate(value)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (42, "must be a string"),
        (b"lock", "must be a string"),
        ("", "must be 1 to 255 characters"),
        ("x" * 256, "must be 1 to 255 characters"),
        ("a\x00b", "NUL"),
        ("\ud800", "surrogate"),
    ],
)
def test_bad_locks_are_refused(value: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_lock(value)


def test_queue_limits_are_read_from_settings_and_the_environment() -> None:
    limits = build_settings(
        overrides={"queue_limits": {"partner": {"concurrency": 5, "rate": "10/s"}}}
    ).queue_limits
    assert limits == {"partner": Limit(5, Rate(10, 1.0, "10/s"))}
    from_env = build_settings(environ={"SONIQ_QUEUE_LIMITS": '{"p": {"rate": "2/m"}}'})
    assert from_env.queue_limits["p"].rate == Rate(2, 60.0, "2/m")
    assert build_settings(environ={"SONIQ_QUEUE_LIMITS": ""}).queue_limits == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"p": {"rate": "ten per sec"}}, "'p': rate 'ten per sec' is not a rate"),
        ({"p": {"concurrency": -1}}, "'p': concurrency must be from 1"),
        ({"p": {"concurrency": True}}, "'p': concurrency must be a whole number"),
        ({"p": {}}, "'p': must be a dict"),
        ({"p": {"burst": 3}}, "unknown key"),
        ({"bad queue": {"rate": "1/s"}}, "queue name 'bad queue' is not valid"),
        ([("p", 1)], "must be a dict of queue name"),
        ("{not json", "must be JSON"),
    ],
)
def test_bad_queue_limits_are_refused_at_start(value: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_LIMITS") as raised:
        build_settings(overrides={"queue_limits": value})
    assert says in str(raised.value)


def _limits() -> ClaimLimits:
    return ClaimLimits.build(
        ["a", "b", "plain"],
        {
            "a": Limit(concurrency=1),
            "b": Limit(concurrency=5, rate=parse_rate("2/s")),
            "x": Limit(1),
        },
        {"partner": Limit(concurrency=1), "other": Limit(concurrency=3)},
        scope=None,
    )


def test_claim_limits_split_plain_and_limited_work() -> None:
    limits = _limits()
    assert limits.plain_tasks == ("plain",)
    assert set(limits.tasks) == {"a", "b"}, "tasks this worker does not serve are left out"
    assert limits.limited_queues == ("other", "partner")
    assert limits.keys_of("a", "partner") == ["task:a", "queue:partner"]
    assert limits.keys_of("plain", "default") == []
    assert not ClaimLimits.build(["plain"], {}, {})
    scoped = ClaimLimits.build(["plain"], {}, {"partner": Limit(1)}, scope=["default"])
    assert scoped.limited_queues == () and not scoped


def test_room_takes_the_tightest_of_each_limit() -> None:
    limits = _limits()
    usage = {"task:a": Usage(running=1), "task:b": Usage(running=1, started=1)}
    free = room(limits, usage, wanted=10)
    assert free == {"task:a": 0, "task:b": 1, "queue:other": 3, "queue:partner": 1}
    scope = open_scope(limits, free)
    assert scope.tasks == ("b",) and scope.open_queues == ("other", "partner")


def test_pick_passes_over_full_limits_and_counts_every_key() -> None:
    limits = _limits()
    free = {"task:a": 1, "task:b": 5, "queue:partner": 1, "queue:other": 3}
    candidates = [
        ("1", "a", "partner"),  # takes a's and partner's room
        ("2", "a", "default"),  # a is full: passed over
        ("3", "b", "partner"),  # partner is full: passed over
        ("4", "b", "default"),
        ("5", "plain", "other"),
    ]
    chosen, passed_over = pick(limits, candidates, free, wanted=10)
    assert (chosen, passed_over) == (["1", "4", "5"], True)
    assert free == {"task:a": 0, "task:b": 4, "queue:partner": 0, "queue:other": 2}
    assert started_per_key(limits, [("b", "default"), ("b", "partner")]) == {"task:b": 2}


def test_a_full_rate_frees_when_its_oldest_start_leaves_the_window() -> None:
    limits = _limits()
    oldest = datetime(2026, 1, 1, tzinfo=UTC)
    usage = {"task:b": Usage(started=2, oldest_start=oldest)}
    free = room(limits, usage, 10)
    assert free["task:b"] == 0
    assert rate_frees_at(limits, usage, free) == oldest + timedelta(seconds=1)
    assert rate_frees_at(limits, {}, room(limits, {}, 10)) is None


class _Backend:
    """Counts the claims a Claimer makes."""

    def __init__(self) -> None:
        self.limited = 0
        self.plain: list[tuple[Any, ...]] = []
        self.room = 0

    async def claim_limited_jobs(self, worker_id: str, limits: ClaimLimits, wanted: int) -> Any:
        from soniq.core.limits import LimitedClaim

        self.limited += 1
        return LimitedClaim([], retry_after=None)

    async def claim_jobs(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.plain.append((args, kwargs))
        return []


@pytest.mark.asyncio
async def test_the_limited_claim_is_repeated_only_when_something_may_have_changed() -> None:
    app = Soniq(database_url="memory://")

    @app.job(name="lim.capped", concurrency_limit=2)
    def capped() -> None:
        return None

    @app.job(name="lim.plain")
    def plain() -> None:
        return None

    assert task_limits(app.registry) == {"lim.capped": Limit(concurrency=2)}
    backend = _Backend()
    claimer = Claimer(backend, app.registry, {}, None, concurrency=4, poll_interval=3600)
    await claimer.claim("w", 8)
    assert backend.limited == 1
    assert backend.plain[-1] == (("w", ("lim.plain",), None, 8), {"skip_queues": ()})
    await claimer.claim("w", 8)
    assert backend.limited == 1, "came back short: not again until something changes"
    assert not claimer.finished(["unknown"])
    claimer.rearm()
    await claimer.claim("w", 8)
    assert backend.limited == 2
    assert claimer.wait_limit(5.0) == 5.0
    # A notification right after a limited claim: the next one waits out NOTICED_GAP.
    claimer.noticed()
    await claimer.claim("w", 8)
    assert backend.limited == 2
    assert 0 < claimer.wait_limit(5.0) <= NOTICED_GAP
    claimer._last_limited -= NOTICED_GAP  # as if the gap went by
    await claimer.claim("w", 8)
    assert backend.limited == 3
