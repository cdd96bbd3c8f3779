"""soniq.Retry and soniq.Discard: what a job may ask, and what it may not."""

from __future__ import annotations

import copy
import pickle
from datetime import timedelta

import pytest

from soniq import MAX_SNOOZES, Cancel, Discard, JobControl, Retry, Snooze
from soniq.core import operations
from soniq.core.control import Aborted, ends_the_job, snooze_refused
from soniq.core.operations import JobState, requester, why_not_aborted


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
def test_retry_and_snooze_refuse_a_delay_that_is_not_a_time(delay: object, message: str) -> None:
    # Raised inside the job: an ordinary failure of that attempt, retried or not as usual.
    with pytest.raises(ValueError, match=message):
        Retry(delay)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"Snooze.*{message}"):
        Snooze(delay)  # type: ignore[arg-type]


def test_they_survive_pickling_and_copying() -> None:
    again = pickle.loads(pickle.dumps(Retry(30, reason="busy")))
    assert (type(again), again.delay, again.reason, str(again)) == (Retry, 30.0, "busy", "busy")
    assert copy.copy(Retry(timedelta(seconds=5))).delay == 5.0
    dropped = pickle.loads(pickle.dumps(Discard("gone")))
    assert (type(dropped), dropped.reason) == (Discard, "gone")


def test_discard_keeps_its_reason_as_the_message() -> None:
    assert str(Discard("customer 42 closed the account")) == "customer 42 closed the account"
    assert str(Discard()) == "discarded by the job"


def test_snooze_cancel_and_aborted_say_what_happened() -> None:
    assert Snooze(timedelta(minutes=1)).delay == 60.0
    assert str(Snooze(2)) == "snoozed for 2 s"
    assert str(Snooze(2, reason="file not there")) == "file not there"
    assert str(Cancel()) == "cancelled by the job"
    assert str(Cancel("order withdrawn")) == "order withdrawn"
    aborted = Aborted("admin:alice", "2026-12-06T04:00:00+00:00")
    assert str(aborted) == "abort requested by admin:alice at 2026-12-06T04:00:00+00:00"
    for control in (Snooze(3, "x"), Cancel("y"), aborted):
        again = pickle.loads(pickle.dumps(control))
        assert (type(again), str(again)) == (type(control), str(control))


def test_which_controls_end_the_job() -> None:
    assert ends_the_job(None, Cancel(), 1, 4)
    assert ends_the_job(None, Aborted(), 1, 4)
    assert not ends_the_job(None, Snooze(), 4, 4), "a snooze does not spend the last attempt"
    assert snooze_refused(Snooze(), MAX_SNOOZES - 1) is None
    assert snooze_refused(Snooze(), MAX_SNOOZES) == "max_snoozes"
    assert ends_the_job(None, Snooze(), 1, 4, snoozes=MAX_SNOOZES)
    assert snooze_refused(Retry(), MAX_SNOOZES) is None


def test_who_asks_is_recorded_bounded() -> None:
    assert requester("ops") == "ops"
    assert len(requester("x" * 1000)) == operations.REQUESTER_LENGTH
    assert "@" in requester()
    with pytest.raises(TypeError, match="by must be text"):
        requester(42)  # type: ignore[arg-type]


def test_an_abort_refusal_says_why() -> None:
    def state(status: str) -> JobState:
        return JobState("id", status, None, None, False)

    assert "already finished successfully" in why_not_aborted(state("done"))
    assert "it is cancelled" in why_not_aborted(state("cancelled"))
    assert "a dead letter" in why_not_aborted(state("dead_letter"))
    assert "no such job" in why_not_aborted(None)
