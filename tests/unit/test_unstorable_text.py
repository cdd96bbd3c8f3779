"""Text that no database can store (a NUL, a lone surrogate) and dates past the calendar are
refused by the core checks, with messages that can themselves be printed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soniq import JobDefinitionError, Soniq, TaskRef
from soniq.core import codec, options
from soniq.core.codec import NotJSONError


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("ünïcødé ✓ 中文 \u2028 \ufeff \uffff", None),
        ("emoji \U0001f600 and \U0010ffff", None),
        ("control \x01\x1f\x7f\t\r\n", None),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogate ('\\ud800' at index 0)"),
        ("ok \udfff", "lone surrogate ('\\udfff' at index 3)"),
        ("pair \ud83d\ude00", "lone surrogate"),  # a surrogate pair in a str is still two
    ],
)
def test_text_problem(text: str, problem: str | None) -> None:
    found = codec.text_problem(text)
    if problem is None:
        assert found is None
        text.encode()
    else:
        assert found is not None and problem in found
        found.encode()


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": "\ud800"}, "args['a']"),
        ({"\udc00": 1}, "args"),
        ({"a": [{"b": ("x", "\udbff")}]}, "args['a'][0]['b'][1]"),
    ],
)
def test_check_json_refuses_lone_surrogates(value: Any, path: str) -> None:
    with pytest.raises(NotJSONError, match="lone surrogate") as caught:
        codec.check_json(value, "args")
    assert caught.value.path == path
    str(caught.value).encode()


def test_a_large_clean_string_is_checked_quickly() -> None:
    codec.check_json({"big": "é" * 5_000_000 + "\U0001f600"}, "args")


@pytest.mark.parametrize("name", ["a\x00b", "a\ud800", "\udfff"])
def test_task_names_and_dedup_keys_refuse_unstorable_text(name: str) -> None:
    with pytest.raises(ValueError, match=r"NUL|surrogate") as caught:
        options.check_task_name(name)
    str(caught.value).encode()
    with pytest.raises(ValueError, match=r"NUL|surrogate"):
        options.check_dedup_key(name)


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(ValueError, match="3000000 characters") as caught:
        options.check_task_name("x" * 3_000_000)
    assert len(str(caught.value)) < 300
    with pytest.raises(ValueError, match="not a valid queue name") as caught:
        options.check_queue("q" * 3_000_000)
    assert len(str(caught.value)) < 300


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (1e12, "Unix timestamp"),
        (1e300, "latest date"),
        (10**400, "number of seconds"),
        (timedelta(days=999_999_999), "latest date"),
        (timedelta.max, "latest date"),
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), None),
    ],
)
def test_scheduled_at_past_the_calendar(when: Any, text: str | None) -> None:
    if text is None:
        assert options.resolve_run_at(when, NOW) == when
        return
    with pytest.raises(ValueError, match=text):
        options.resolve_run_at(when, NOW)


def test_huge_integers_are_not_seconds() -> None:
    for check in (options.check_seconds, options.check_retry_delay):
        with pytest.raises(ValueError, match="number of seconds"):
            check(10**400)


@pytest.mark.parametrize(
    "define",
    [
        lambda app: app.job(name="a\x00b")(lambda: None),
        lambda app: app.job(name="a\ud800")(lambda: None),
        lambda app: app.periodic(every=60, name="a\x00b")(lambda: None),
        lambda app: TaskRef("a\x00b"),
        lambda app: TaskRef("a\ud800"),
        lambda app: TaskRef("ok", queue="a\x00b"),
        lambda app: app.job(queue="a\ud800")(lambda: None),
        lambda app: app.job(timeout=10**400)(lambda: None),
    ],
    ids=[
        "job-nul",
        "job-surrogate",
        "periodic-nul",
        "taskref-nul",
        "taskref-surrogate",
        "taskref-queue",
        "job-queue",
        "job-huge-timeout",
    ],
)
def test_bad_definitions_refused(define: Callable[[Soniq], Any]) -> None:
    app = Soniq(database_url="memory://")
    with pytest.raises(JobDefinitionError) as caught:
        define(app)
    str(caught.value).encode()  # printable: the message holds no lone surrogate itself
    assert len(app.registry) == 0
