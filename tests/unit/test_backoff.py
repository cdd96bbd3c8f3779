"""The wait between retries after a database error."""

from __future__ import annotations

from soniq.core.backoff import FIRST_DELAY, Backoff


def test_doubles_from_a_tenth_of_a_second_up_to_the_cap() -> None:
    backoff = Backoff(cap=1.0)
    assert [backoff.delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failures == 6


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(cap=5.0)
    for _ in range(10):
        backoff.delay()
    backoff.reset()
    assert (backoff.failures, backoff.delay()) == (0, FIRST_DELAY)


def test_a_cap_below_the_first_delay_never_makes_a_retry_loop_spin() -> None:
    for cap in (0, 0.05):
        backoff = Backoff(cap=cap)
        assert [backoff.delay() for _ in range(3)] == [FIRST_DELAY] * 3


def test_a_long_outage_does_not_overflow() -> None:
    backoff = Backoff(cap=5.0)
    assert [backoff.delay() for _ in range(2000)][-1] == 5.0
