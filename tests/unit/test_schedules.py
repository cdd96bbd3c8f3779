"""soniq.schedules / soniq.core.cron: the cron-string builders and validate_cron."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from soniq.core.errors import JobDefinitionError
from soniq.schedules import (
    InvalidScheduleError,
    cron,
    daily,
    every,
    monthly,
    validate_cron,
    weekly,
)

# -- the documented examples -------------------------------------------------------------------


def test_spec_examples_exactly() -> None:
    assert every(5).minutes() == "*/5 * * * *"
    assert every(2).hours() == "0 */2 * * *"
    assert every(30).seconds() == timedelta(seconds=30)
    assert daily().at("09:00") == "0 9 * * *"
    assert weekly().on("monday").at("09:00") == "0 9 * * 1"
    assert monthly().on_day(15).at("12:00") == "0 12 15 * *"
    assert cron("*/15 * * * *") == "*/15 * * * *"


def test_terminals_return_plain_str() -> None:
    for value in (
        every(5).minutes(),
        every(2).hours(),
        every(3).days(),
        daily().at("09:00"),
        weekly().on("monday").at("09:00"),
        monthly().on_day(15).at("12:00"),
        cron("*/15 * * * *"),
    ):
        assert type(value) is str
        assert validate_cron(value) == value


def test_schedules_module_exports() -> None:
    import soniq.schedules as schedules

    assert {"cron", "every", "daily", "weekly", "monthly", "validate_cron"} <= set(
        schedules.__all__
    )
    for name in schedules.__all__:
        assert hasattr(schedules, name)


def test_error_is_a_job_definition_error_and_a_value_error() -> None:
    assert issubclass(InvalidScheduleError, JobDefinitionError)
    assert issubclass(InvalidScheduleError, ValueError)


# -- every(n) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "* * * * *"), (2, "*/2 * * * *"), (15, "*/15 * * * *"), (59, "*/59 * * * *")],
)
def test_every_minutes(n: int, expected: str) -> None:
    assert every(n).minutes() == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "0 * * * *"), (2, "0 */2 * * *"), (6, "0 */6 * * *"), (23, "0 */23 * * *")],
)
def test_every_hours(n: int, expected: str) -> None:
    assert every(n).hours() == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "0 0 * * *"), (2, "0 0 */2 * *"), (31, "0 0 */31 * *")],
)
def test_every_days(n: int, expected: str) -> None:
    assert every(n).days() == expected


@pytest.mark.parametrize("n", [1, 30, 59, 60, 3600, 86400 * 400])
def test_every_seconds_is_any_positive_timedelta(n: int) -> None:
    assert every(n).seconds() == timedelta(seconds=n)


@pytest.mark.parametrize("n", [0, -1, -60])
def test_every_rejects_non_positive(n: int) -> None:
    with pytest.raises(JobDefinitionError, match="at least 1") as info:
        every(n)
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "n"
    assert f"every({n})" in str(info.value)


@pytest.mark.parametrize("n", [1.5, 5.0, "5", None, True, False])
def test_every_rejects_non_int(n: Any) -> None:
    with pytest.raises(JobDefinitionError, match="whole number") as info:
        every(n)
    assert "int" in str(info.value)
    assert type(n).__name__ in str(info.value)


@pytest.mark.parametrize(
    ("unit", "n", "limit", "suggestion"),
    [
        ("minutes", 60, "1-59", "every(3600).seconds()"),
        ("minutes", 61, "1-59", "every(3660).seconds()"),
        ("hours", 24, "1-23", "every(86400).seconds()"),
        ("days", 32, "1-31", "every(2764800).seconds()"),
    ],
)
def test_every_rejects_steps_beyond_the_cron_field(
    unit: str, n: int, limit: str, suggestion: str
) -> None:
    with pytest.raises(JobDefinitionError) as info:
        getattr(every(n), unit)()
    message = str(info.value)
    assert f"every({n}).{unit}()" in message
    assert limit in message
    assert suggestion in message
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "n"


def test_every_repr() -> None:
    assert repr(every(5)) == "every(5)"


# -- daily / weekly / monthly ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("09:00", "0 9 * * *"),
        ("9:00", "0 9 * * *"),
        ("9:05", "5 9 * * *"),
        ("09:05", "5 9 * * *"),
        ("00:00", "0 0 * * *"),
        ("0:00", "0 0 * * *"),
        ("23:59", "59 23 * * *"),
        ("17:30", "30 17 * * *"),
        (" 09:00 ", "0 9 * * *"),
    ],
)
def test_daily_at(time: str, expected: str) -> None:
    assert daily().at(time) == expected


def test_builder_defaults_are_midnight() -> None:
    assert str(daily()) == "0 0 * * *"
    assert str(weekly().on("monday")) == "0 0 * * 1"
    assert str(monthly().on_day(15)) == "0 0 15 * *"
    # Without .on(): cron's @weekly (Sunday) and @monthly (the 1st).
    assert str(weekly()) == "0 0 * * 0"
    assert str(monthly()) == "0 0 1 * *"
    assert weekly().at("09:00") == "0 9 * * 0"
    assert monthly().at("09:00") == "0 9 1 * *"


def test_builder_str_is_a_valid_cron_expression() -> None:
    for builder in (daily(), weekly(), weekly().on("fri"), monthly(), monthly().on_day(31)):
        assert validate_cron(str(builder)) == str(builder)


def test_builder_reprs() -> None:
    assert repr(daily()) == "daily()"
    assert repr(weekly().on("MON")) == "weekly().on('monday')"
    assert repr(monthly().on_day(15)) == "monthly().on_day(15)"


def test_builders_are_immutable_and_chain_to_new_objects() -> None:
    base = weekly()
    monday = base.on("monday")
    assert monday is not base
    assert str(base) == "0 0 * * 0"
    assert base.on("monday").on("friday").at("08:00") == "0 8 * * 5"
    assert monthly().on_day(3).on_day(20).at("08:00") == "0 8 20 * *"


@pytest.mark.parametrize(
    ("day", "number"),
    [
        ("sunday", 0),
        ("monday", 1),
        ("tuesday", 2),
        ("wednesday", 3),
        ("thursday", 4),
        ("friday", 5),
        ("saturday", 6),
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
        ("Monday", 1),
        ("MONDAY", 1),
        ("Mon", 1),
        ("mOn", 1),
        ("SAT", 6),
        (" Friday ", 5),
    ],
)
def test_weekly_on_accepts_names_and_abbreviations_case_insensitively(
    day: str, number: int
) -> None:
    assert weekly().on(day).at("09:30") == f"30 9 * * {number}"


@pytest.mark.parametrize("day", ["mondy", "mo", "monday!", "", "tues", "weekday", "1"])
def test_weekly_on_rejects_unknown_names_and_lists_the_valid_ones(day: str) -> None:
    with pytest.raises(JobDefinitionError) as info:
        weekly().on(day)
    message = str(info.value)
    assert repr(day) in message
    assert "not a weekday" in message
    for name in ("monday", "mon", "sunday", "sun", "saturday", "sat"):
        assert repr(name) in message
    assert "case-insensitive" in message
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "day"


@pytest.mark.parametrize("day", [1, None, 1.0])
def test_weekly_on_rejects_non_strings(day: Any) -> None:
    with pytest.raises(JobDefinitionError, match="weekday name") as info:
        weekly().on(day)
    assert "'monday'" in str(info.value)


@pytest.mark.parametrize("day", [1, 15, 28, 29, 30, 31])
def test_monthly_on_day(day: int) -> None:
    assert monthly().on_day(day).at("06:15") == f"15 6 {day} * *"


@pytest.mark.parametrize("day", [0, 32, -1, 100])
def test_monthly_on_day_rejects_out_of_range(day: int) -> None:
    with pytest.raises(JobDefinitionError, match="1-31") as info:
        monthly().on_day(day)
    assert "on_day" in str(info.value)
    assert repr(day) in str(info.value)
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "day"


@pytest.mark.parametrize("day", ["15", 15.0, True, None])
def test_monthly_on_day_rejects_non_int(day: Any) -> None:
    with pytest.raises(JobDefinitionError, match="int 1-31"):
        monthly().on_day(day)


# -- at() validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "key_words"),
    [
        ("25:00", ["hour 25", "00-23"]),
        ("24:00", ["hour 24", "00-23"]),
        ("09:61", ["minute 61", "00-59"]),
        ("09:60", ["minute 60", "00-59"]),
        ("9", ["not a time of day", "HH:MM", "two-digit minutes"]),
        ("9:5", ["not a time of day", "HH:MM", "two-digit minutes"]),
        ("0900", ["not a time of day", "HH:MM"]),
        ("09:00:00", ["not a time of day", "HH:MM"]),
        ("9am", ["not a time of day", "HH:MM"]),
        ("009:00", ["not a time of day", "HH:MM"]),
        ("-1:00", ["not a time of day", "HH:MM"]),
        ("", ["not a time of day", "HH:MM"]),
    ],
)
def test_at_rejects_bad_times(time: str, key_words: list[str]) -> None:
    for builder in (daily(), weekly().on("monday"), monthly().on_day(15)):
        with pytest.raises(JobDefinitionError) as info:
            builder.at(time)
        message = str(info.value)
        assert repr(time) in message
        assert ".at(time)" in message
        for word in key_words:
            assert word in message
        assert isinstance(info.value, InvalidScheduleError)
        assert info.value.argument == "time"


def test_at_error_names_the_builder() -> None:
    with pytest.raises(JobDefinitionError, match=r"weekly\(\)\.on\('monday'\)\.at\(time\)"):
        weekly().on("monday").at("25:00")
    with pytest.raises(JobDefinitionError, match=r"monthly\(\)\.on_day\(15\)\.at\(time\)"):
        monthly().on_day(15).at("25:00")
    with pytest.raises(JobDefinitionError, match=r"daily\(\)\.at\(time\)"):
        daily().at("25:00")


@pytest.mark.parametrize("time", [900, None, 9.0])
def test_at_rejects_non_strings(time: Any) -> None:
    with pytest.raises(JobDefinitionError, match="must be a string 'HH:MM'"):
        daily().at(time)


# -- validate_cron / cron ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "*/15 * * * *",
        "* * * * *",
        "0 9 * * 1",
        "0 12 15 * *",
        "0 0 1 1 *",
        "0 9 * * 1-5",
        "0 9 * * mon-fri",
        "0 9 * * MON,WED,FRI",
        "0 0 1 jan,jul *",
        "0,30 8-18 * * *",
        "0 0 * * 7",
        "0/5 * * * *",
        "0 0 29 2 *",
        "0 0 31 * *",
        "59 23 31 12 6",
        "0 0 L * *",
        "0 0 15W * *",
        "0 9 * * mon#2",
    ],
)
def test_valid_expressions_pass_through_unchanged(expression: str) -> None:
    assert validate_cron(expression) == expression
    assert cron(expression) == expression


def test_validate_cron_normalizes_whitespace() -> None:
    assert validate_cron("  */15   *  * * *\n") == "*/15 * * * *"
    assert cron("\t0 9 * * 1 ") == "0 9 * * 1"


@pytest.mark.parametrize(
    ("expression", "count"),
    [("* * * *", "4 fields"), ("0 * * * * *", "6 fields"), ("", "0 fields"), ("5", "1 field,")],
)
def test_wrong_field_count(expression: str, count: str) -> None:
    with pytest.raises(JobDefinitionError) as info:
        validate_cron(expression)
    message = str(info.value)
    assert count in message
    assert "exactly 5" in message
    assert "minute hour day-of-month month day-of-week" in message
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "expression"


@pytest.mark.parametrize(
    ("expression", "key_words"),
    [
        ("61 * * * *", ["minute 61", "0-59"]),
        ("60 * * * *", ["minute 60", "0-59"]),
        ("0-61 * * * *", ["minute 61", "0-59"]),
        ("0,15,75 * * * *", ["minute 75", "0-59"]),
        ("0 24 * * *", ["hour 24", "0-23"]),
        ("* * 32 * *", ["day-of-month 32", "1-31"]),
        ("* * 0 * *", ["day-of-month 0", "1-31"]),
        ("* * * 13 *", ["month 13", "1-12"]),
        ("* * * 0 *", ["month 0", "1-12"]),
        ("* * * * 8", ["day-of-week 8", "0-7"]),
        ("*/0 * * * *", ["step /0", "minute", "1-59"]),
        ("*/60 * * * *", ["step /60", "minute", "1-59"]),
        ("0 */24 * * *", ["step /24", "hour", "1-23"]),
        ("* * * * mondy", ["'mondy'", "day-of-week", "mon"]),
        ("* * * foo *", ["'foo'", "month", "jan"]),
        ("mon * * * *", ["'mon'", "minute", "0-59"]),
        ("-1 * * * *", ["not a valid cron expression", "negative"]),
        ("1,,2 * * * *", ["not a valid cron expression"]),
        ("H * * * *", ["'H'", "minute", "0-59"]),
        ("* * * * L", ["'L'", "day-of-week", "sun"]),
        ("0 0 30 2 *", ["never fires", "February"]),
        ("0 0 31 4,6 *", ["never fires"]),
    ],
)
def test_invalid_expressions(expression: str, key_words: list[str]) -> None:
    with pytest.raises(JobDefinitionError) as info:
        cron(expression)
    message = str(info.value)
    assert f"cron expression {expression!r}" in message
    for word in key_words:
        assert word in message
    assert isinstance(info.value, InvalidScheduleError)
    assert info.value.argument == "expression"


def test_nicknames_are_refused_with_a_hint() -> None:
    with pytest.raises(JobDefinitionError, match="'@daily' are not supported") as info:
        validate_cron("@daily")
    assert "0 0 * * *" in str(info.value)
    assert "daily()" in str(info.value)


@pytest.mark.parametrize("expression", [None, 5, daily()])
def test_validate_cron_rejects_non_strings(expression: Any) -> None:
    with pytest.raises(JobDefinitionError, match="must be a str") as info:
        validate_cron(expression)
    assert type(expression).__name__ in str(info.value)


def test_error_is_catchable_as_value_error() -> None:
    with pytest.raises(ValueError, match="minute 61"):
        cron("61 * * * *")
