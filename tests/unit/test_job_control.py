"""soniq.Retry and soniq.Discard: what a job may ask, and what it may not."""

from __future__ import annotations

import copy
import pickle
from datetime import timedelta

import pytest

from soniq import Discard, JobControl, Retry


def test_retry_takes_seconds_or_a_timedelta() -> None:
    assert Retry(30).delay == 30.0
    assert Retry(delay=timedelta(minutes=2)).delay == 120.0
    assert Retry().delay == 0.0
    assert str(Retry(1.5)) == "retry requested in 1.5 s"
    assert str(Retry(5, reason="partner busy")) == "partner busy"
    assert isinstance(Retry(), JobControl) and isinstance(Discard(), Exception)


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        (-1, "must be >= 0 seconds"),
        (float("nan"), "must be a number of seconds"),
        ("soon", "must be a number of seconds"),
        (True, "must be a number of seconds"),
        (timedelta(days=-1), "must be >= 0 seconds"),
        (400 * 24 * 3600, "must be at most a year"),
    ],
)
def test_retry_refuses_a_delay_that_is_not_a_time(delay: object, message: str) -> None:
    # Raised inside the job: an ordinary failure of that attempt, retried or not as usual.
    with pytest.raises(ValueError, match=message):
        Retry(delay)  # type: ignore[arg-type]


def test_they_survive_pickling_and_copying() -> None:
    again = pickle.loads(pickle.dumps(Retry(30, reason="busy")))
    assert (type(again), again.delay, again.reason, str(again)) == (Retry, 30.0, "busy", "busy")
    assert copy.copy(Retry(timedelta(seconds=5))).delay == 5.0
    dropped = pickle.loads(pickle.dumps(Discard("gone")))
    assert (type(dropped), dropped.reason) == (Discard, "gone")


def test_discard_keeps_its_reason_as_the_message() -> None:
    assert str(Discard("customer 42 closed the account")) == "customer 42 closed the account"
    assert str(Discard()) == "discarded by the job"
