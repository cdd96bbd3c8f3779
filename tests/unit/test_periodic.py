"""Schedule definitions, due slots under each catch-up policy, and DST edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soniq import JobDefinitionError, Soniq
from soniq.core.periodic import build_definition, due_slots, next_slot

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _every(seconds: float, **options: object) -> object:
    return build_definition(name="s", task_name="s", every=seconds, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of cron= or every="),
        ({"cron": "* * * * *", "every": 5}, "exactly one"),
        ({"cron": "61 * * * *"}, "61"),
        ({"every": 0}, "positive"),
        ({"every": -timedelta(seconds=1)}, "positive"),
        ({"every": "5"}, "timedelta or seconds"),
        ({"every": 5, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 5, "catch_up": "some"}, "catch_up must be one of"),
        ({"every": 5, "catch_up_window": 0}, "catch_up_window"),
        ({"every": 5, "args": {"x": {1, 2}}}, "set is not JSON"),
        ({"every": 5, "queue": "bad queue"}, "queue"),
    ],
)
def test_bad_definitions_are_refused(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(JobDefinitionError, match=fragment):
        build_definition(name="s", task_name="s", **kwargs)  # type: ignore[arg-type]


def test_periodic_decorator_validates_at_decoration_time() -> None:
    app = Soniq(database_url="postgresql://unused")
    with pytest.raises(JobDefinitionError, match="61"):

        @app.periodic(cron="61 * * * *")
        def broken() -> None: ...

    assert len(app.registry) == 0
    with pytest.raises(JobDefinitionError, match="exactly one"):
        app.periodic(cron="* * * * *", every=5)(lambda: None)

    @app.periodic(cron="0 9 * * 1", queue="reports", name="weekly.report", timezone="Europe/Paris")
    def report() -> None: ...

    assert app.registry.get("weekly.report") is not None  # also an ordinary job
    definition = app.periodic_schedules["weekly.report"]
    assert (definition.cron, definition.timezone, definition.task_name) == (
        "0 9 * * 1",
        "Europe/Paris",
        "weekly.report",
    )


def test_not_due_yet() -> None:
    assert due_slots(_every(10), T0 + timedelta(seconds=5), T0) == ([], T0 + timedelta(seconds=5))  # type: ignore[arg-type]


def test_on_time_slot_fires_under_every_policy() -> None:
    for policy in ("latest", "skip", "all"):
        slots, upcoming = due_slots(_every(10, catch_up=policy), T0, T0)  # type: ignore[arg-type]
        assert slots == [T0]
        assert upcoming == T0 + timedelta(seconds=10)


def test_latest_fires_the_most_recent_missed_slot_once() -> None:
    now = T0 + timedelta(hours=1, seconds=3)
    slots, upcoming = due_slots(_every(60), T0, now)  # type: ignore[arg-type]
    assert slots == [T0 + timedelta(hours=1)]
    assert upcoming == T0 + timedelta(hours=1, minutes=1)


def test_skip_fires_nothing_late() -> None:
    now = T0 + timedelta(hours=1, seconds=90)
    slots, upcoming = due_slots(_every(3600, catch_up="skip"), T0, now)  # type: ignore[arg-type]
    assert slots == []
    assert upcoming == T0 + timedelta(hours=2)


def test_all_fires_every_missed_slot_within_the_window() -> None:
    now = T0 + timedelta(minutes=10)
    definition = _every(60, catch_up="all", catch_up_window=300)
    slots, upcoming = due_slots(definition, T0, now)  # type: ignore[arg-type]
    assert slots == [T0 + timedelta(minutes=m) for m in range(5, 11)]
    assert upcoming == T0 + timedelta(minutes=11)


def test_a_due_run_is_never_pushed_into_the_future() -> None:
    for policy in ("latest", "all"):
        slots, upcoming = due_slots(_every(60, catch_up=policy), T0, T0 + timedelta(days=3))  # type: ignore[arg-type]
        assert slots and slots[-1] <= T0 + timedelta(days=3) < upcoming


def test_cron_in_a_time_zone() -> None:
    definition = build_definition(name="c", task_name="c", cron="0 9 * * *", timezone="Asia/Tokyo")
    assert next_slot(definition, T0) == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)  # 09:00 JST


def test_dst_spring_forward_fires_after_the_gap() -> None:
    definition = build_definition(
        name="c", task_name="c", cron="30 2 * * *", timezone="Europe/Paris"
    )
    slot = next_slot(definition, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    local = slot.astimezone(definition.zone)
    assert (local.date().isoformat(), local.hour, local.minute) == ("2026-03-29", 3, 0)


def test_dst_fall_back_named_hour_fires_once() -> None:
    definition = build_definition(
        name="c", task_name="c", cron="30 2 * * *", timezone="Europe/Paris"
    )
    first = next_slot(definition, datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    second = next_slot(definition, first)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first one
    assert second == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # the next day


def test_dst_fall_back_hourly_fires_both_real_hours() -> None:
    definition = build_definition(
        name="c", task_name="c", cron="0 * * * *", timezone="Europe/Paris"
    )
    slot = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    slots = []
    for _ in range(4):
        slot = next_slot(definition, slot)
        slots.append(slot)
    assert [s.hour for s in slots] == [0, 1, 2, 3]  # UTC: every real hour, 02:00 twice locally


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10, "10 s"), (10.0, "10 s"), (2.5, "2.5 s"), (90, "90 s"), (300, "5 min"), (7200, "2 h")],
)
def test_periods_read_as_people_write_them(seconds: float, text: str) -> None:
    from soniq.core.periodic import format_period

    assert format_period(seconds) == text
