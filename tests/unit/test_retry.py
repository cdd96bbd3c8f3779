"""Retry delays: fixed, per-attempt lists, exponential backoff with jitter, the cap."""

from __future__ import annotations

import pytest

from soniq import Soniq
from soniq.core.retry import MAX_RETRY_DELAY, retry_delay_seconds
from soniq.core.spec import JobSpec


def _spec(**params: object) -> JobSpec:
    app = Soniq(database_url="postgresql://unused")

    @app.job(name="t.job", **params)
    def job() -> None:
        return None

    spec = app.registry.get("t.job")
    assert spec is not None
    return spec


def test_no_delay_by_default() -> None:
    assert [retry_delay_seconds(_spec(), n) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_fixed_delay() -> None:
    spec = _spec(retry_delay=7)
    assert [retry_delay_seconds(spec, n) for n in (1, 2, 5)] == [7.0, 7.0, 7.0]


def test_per_attempt_list_repeats_its_last_value() -> None:
    spec = _spec(retry_delay=[1, 5, 30])
    assert [retry_delay_seconds(spec, n) for n in (1, 2, 3, 4, 9)] == [1, 5, 30, 30, 30]


def test_backoff_doubles_with_bounded_jitter() -> None:
    spec = _spec(retry_delay=2, retry_backoff=True)
    lowest = [retry_delay_seconds(spec, n, rand=lambda: 0.0) for n in (1, 2, 3, 4)]
    highest = [retry_delay_seconds(spec, n, rand=lambda: 1.0) for n in (1, 2, 3, 4)]
    assert lowest == [1.0, 2.0, 4.0, 8.0]
    assert highest == [2.0, 4.0, 8.0, 16.0]


def test_backoff_over_a_list() -> None:
    spec = _spec(retry_delay=[1, 10], retry_backoff=True)
    assert [retry_delay_seconds(spec, n, rand=lambda: 1.0) for n in (1, 2, 3)] == [1, 20, 40]


@pytest.mark.parametrize("attempt", [1, 3, 10, 500])
def test_max_delay_caps_everything(attempt: int) -> None:
    spec = _spec(retry_delay=3, retry_backoff=True, retry_max_delay=10)
    assert retry_delay_seconds(spec, attempt, rand=lambda: 1.0) <= 10
    assert retry_delay_seconds(_spec(retry_delay=60, retry_max_delay=10), attempt) == 10


def test_no_retry_is_scheduled_more_than_a_year_away() -> None:
    far = _spec(retry_delay=3600, retry_backoff=True, retries=50)
    assert retry_delay_seconds(far, 40, rand=lambda: 1.0) == MAX_RETRY_DELAY == 365 * 86400
    assert retry_delay_seconds(_spec(retry_delay=1e300), 1) == MAX_RETRY_DELAY
