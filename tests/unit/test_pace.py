"""How far a worker claims ahead: what its recent pace starts within the horizon."""

from __future__ import annotations

import pytest

from soniq.worker.pace import HORIZON, WINDOW, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_with_no_history_claims_nothing_ahead() -> None:
    assert Pace(Clock()).ahead(200) == 0


def test_short_jobs_fill_the_prefetch_and_long_ones_claim_nothing_ahead() -> None:
    clock = Clock()
    fast = Pace(clock)
    clock.now += WINDOW
    for _ in range(1000):  # a thousand jobs finished within the last second
        fast.finished()
        clock.now += 0.0005
    assert fast.ahead(200) == min(200, int(1000 / WINDOW * HORIZON)) == 50
    assert fast.ahead(10) == 10, "never more than PREFETCH"
    assert fast.ahead(0) == 0, "PREFETCH 0: never ahead"

    slow = Pace(clock)
    clock.now += 1.0
    for _ in range(4):  # four slots, jobs of a second each, all finished at once
        slow.finished()
    assert slow.ahead(200) == 0


def test_a_worker_that_just_started_claims_at_its_pace_so_far() -> None:
    """Its first jobs' pace, not that pace spread over a whole window it has not lived yet:
    2,000 jobs in its first 0.1 s is 20,000 a second."""
    clock = Clock()
    pace = Pace(clock)
    for _ in range(2000):
        clock.now += 0.00005
        pace.finished()
    assert pace.per_second() == pytest.approx(20_000)
    assert pace.ahead(10_000) in (int(20_000 * HORIZON) - 1, int(20_000 * HORIZON))
    # Its very first jobs, within a millisecond, count over one slice at least.
    young = Pace(clock)
    clock.now += 0.001
    young.finished(10)
    assert young.ahead(10_000) == int(10 / 0.05 * HORIZON) == 10


def test_a_restarted_worker_forgets_its_pace() -> None:
    clock = Clock()
    pace = Pace(clock)
    clock.now += WINDOW
    pace.finished(1000)
    clock.now += 0.5
    pace.restart()
    assert pace.ahead(200) == 0


def test_the_pace_forgets_what_finished_more_than_a_window_ago() -> None:
    clock = Clock()
    pace = Pace(clock)
    clock.now += WINDOW
    pace.finished(1000)
    assert pace.ahead(200) == 50
    clock.now += WINDOW + 0.1
    assert pace.per_second() == 0
    assert pace.ahead(200) == 0
