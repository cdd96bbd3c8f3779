"""soniq.core.options: validation of per-job options shared by @app.job() and enqueue()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from soniq.core import options
from soniq.core.options import (
    check_dedup_key,
    check_priority,
    check_queue,
    check_retries,
    check_retry_delay,
    check_seconds,
    check_task_name,
    resolve_run_at,
)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_defaults() -> None:
    assert options.DEFAULT_PRIORITY == 100
    assert options.DEFAULT_QUEUE == "default"
    assert options.DEFAULT_RETRIES == 3
    assert (options.MIN_PRIORITY, options.MAX_PRIORITY) == (1, 1000)


# -- priority --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2, 100, 999, 1000])
def test_check_priority_accepts_1_to_1000(value: int) -> None:
    assert check_priority(value) == value


@pytest.mark.parametrize("value", [0, -1, 1001, 10**6])
def test_check_priority_refuses_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="must be from 1 \\(most urgent\\) to 1000"):
        check_priority(value)


@pytest.mark.parametrize("value", [True, False, 5.0, "5", None, [5]])
def test_check_priority_refuses_non_integers(value: Any) -> None:
    with pytest.raises(ValueError, match="must be an integer from 1 to 1000"):
        check_priority(value)


# -- queue -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["default", "emails", "a", "0", "_private", "high-priority", "tenant.1:jobs", "Q_9", "x" * 63],
)
def test_check_queue_accepts_valid_names(value: str) -> None:
    assert check_queue(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "a b", "x" * 64, "-x", ".x", ":x", "../x", "a/b", "émails", "abc\n", " a", None, 5, b"q"],
    ids=repr,
)
def test_check_queue_refuses_invalid_names(value: Any) -> None:
    with pytest.raises(ValueError, match="is not a valid queue name") as info:
        check_queue(value)
    assert repr(value) in str(info.value)


# -- task name -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "app.jobs.send_email", "with spaces inside", "n" * 255])
def test_check_task_name_accepts(value: str) -> None:
    assert check_task_name(value) == value


@pytest.mark.parametrize("value", ["", "   ", None, 5, b"name"], ids=repr)
def test_check_task_name_refuses_empty_or_non_string(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        check_task_name(value)


@pytest.mark.parametrize("value", [" lead", "trail ", "n" * 256], ids=repr)
def test_check_task_name_refuses_padding_and_long_names(value: str) -> None:
    with pytest.raises(ValueError, match="at most 255 characters without surrounding spaces"):
        check_task_name(value)


# -- retries and seconds ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 25])
def test_check_retries_accepts_non_negative_integers(value: int) -> None:
    assert check_retries(value) == value


@pytest.mark.parametrize("value", [-1, 1.0, True, "3", None])
def test_check_retries_refuses(value: Any) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        check_retries(value)


def test_check_seconds_returns_float_and_handles_zero() -> None:
    assert check_seconds(3) == 3.0
    assert isinstance(check_seconds(3), float)
    assert check_seconds(0) == 0.0
    with pytest.raises(ValueError, match="must be > 0 seconds"):
        check_seconds(0, allow_zero=False)


# -- retry_delay -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (5, 5.0), (2.5, 2.5)])
def test_check_retry_delay_accepts_a_number(value: float, expected: float) -> None:
    result = check_retry_delay(value)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize("value", [[1, 5, 30], (1, 5, 30)])
def test_check_retry_delay_accepts_a_list_and_returns_a_tuple_of_floats(value: Any) -> None:
    assert check_retry_delay(value) == (1.0, 5.0, 30.0)


@pytest.mark.parametrize("value", [[], ()])
def test_check_retry_delay_refuses_an_empty_list(value: Any) -> None:
    with pytest.raises(ValueError, match="must not be an empty list"):
        check_retry_delay(value)


@pytest.mark.parametrize(
    "value",
    [-1, -0.5, [1, -1], float("nan"), float("inf"), [1, float("nan")], "5", None, True, [True]],
    ids=repr,
)
def test_check_retry_delay_refuses_bad_values(value: Any) -> None:
    with pytest.raises(ValueError, match="seconds"):
        check_retry_delay(value)


# -- dedup_key -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["k", "order-42", "x" * 255])
def test_check_dedup_key_accepts(value: str) -> None:
    assert check_dedup_key(value) == value


@pytest.mark.parametrize("value", ["", None, 42, b"key"], ids=repr)
def test_check_dedup_key_refuses_empty_or_non_string(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        check_dedup_key(value)


def test_check_dedup_key_refuses_more_than_255_characters() -> None:
    with pytest.raises(ValueError, match="at most 255 characters, got 256"):
        check_dedup_key("x" * 256)


# -- resolve_run_at --------------------------------------------------------------------------


def test_resolve_run_at_none_means_now() -> None:
    assert resolve_run_at(None, NOW) is None


def test_resolve_run_at_converts_an_aware_datetime_to_utc() -> None:
    paris_summer = timezone(timedelta(hours=2))
    result = resolve_run_at(datetime(2024, 6, 1, 15, 30, tzinfo=paris_summer), NOW)
    assert result == datetime(2024, 6, 1, 13, 30, tzinfo=UTC)
    assert result is not None
    assert result.utcoffset() == timedelta(0)
    assert result.tzinfo == UTC


def test_resolve_run_at_keeps_an_utc_datetime() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert resolve_run_at(when, NOW) == when


def test_resolve_run_at_accepts_past_aware_datetimes() -> None:
    past = NOW - timedelta(days=1)
    assert resolve_run_at(past, NOW) == past


def test_resolve_run_at_adds_a_timedelta_to_now() -> None:
    assert resolve_run_at(timedelta(minutes=5), NOW) == NOW + timedelta(minutes=5)
    assert resolve_run_at(timedelta(0), NOW) == NOW


@pytest.mark.parametrize(("seconds", "delta"), [(30, 30.0), (1.5, 1.5), (0, 0.0)])
def test_resolve_run_at_adds_seconds_to_now(seconds: float, delta: float) -> None:
    result = resolve_run_at(seconds, NOW)
    assert result == NOW + timedelta(seconds=delta)
    assert result is not None
    assert result.tzinfo is not None


def test_resolve_run_at_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware") as info:
        resolve_run_at(datetime(2024, 6, 1, 12, 0), NOW)
    assert "naive 2024-06-01T12:00:00" in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.001, timedelta(seconds=-1)], ids=repr)
def test_resolve_run_at_refuses_negative_delays(value: Any) -> None:
    with pytest.raises(ValueError, match=r"negative|>= 0"):
        resolve_run_at(value, NOW)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=repr)
def test_resolve_run_at_refuses_non_finite_seconds(value: float) -> None:
    with pytest.raises(ValueError, match="must be a number of seconds"):
        resolve_run_at(value, NOW)


@pytest.mark.parametrize("value", ["2024-06-01T12:00:00+00:00", "10", True, [1], object()])
def test_resolve_run_at_refuses_other_types(value: Any) -> None:
    with pytest.raises(ValueError, match="must be an aware datetime, a timedelta or seconds"):
        resolve_run_at(value, NOW)
