"""The admin's value formatting: compact times, truncation, masking."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from soniq.admin import display
from soniq.core.redaction import Redaction

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


@override_settings(TIME_ZONE="UTC")
def test_compact_time_is_short_in_the_list_and_whole_in_the_tooltip() -> None:
    today = display.compact_time(datetime(2026, 11, 22, 9, 5, 7, tzinfo=UTC), NOW)
    assert ">09:05:07</time>" in today
    assert 'title="2026-11-22 09:05:07 UTC"' in today
    assert ">Nov 21 23:59</time>" in display.compact_time(
        datetime(2026, 11, 21, 23, 59, tzinfo=UTC), NOW
    )
    assert ">2025-01-02 03:04</time>" in display.compact_time(
        datetime(2025, 1, 2, 3, 4, tzinfo=UTC), NOW
    )
    assert display.compact_time(None, NOW) == "-"


def test_truncate_keeps_short_text_and_marks_the_cut() -> None:
    assert display.truncate("short") == "short"
    cut = display.truncate("x" * 500)
    assert len(cut) == display.PREVIEW_CHARS and cut.endswith("…")


def test_mask_matches_parts_of_names_at_any_depth() -> None:
    masked = Redaction.of(["password", "authorization"]).value(
        {"DB_Password": "p", "nested": [{"x-authorization": "a", "keep": 1}], "user": "u"}
    )
    assert masked == {
        "DB_Password": display.MASK,
        "nested": [{"x-authorization": display.MASK, "keep": 1}],
        "user": "u",
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (10.0, "10 s"),
        (90, "90 s"),
        (300.0, "5 min"),
        (7200.0, "2 h"),
        (5400.0, "90 min"),
        (2.5, "2.5 s"),
        (1 / 3, "0.33 s"),
    ],
)
def test_duration_writes_integers_without_decimals(seconds: float, shown: str) -> None:
    assert display.duration(seconds) == shown


@override_settings(TIME_ZONE="UTC")
def test_full_time_is_to_the_second_with_the_zone() -> None:
    at = datetime(2026, 11, 22, 23, 30, 7, tzinfo=UTC)
    assert ">2026-11-22 23:30:07 UTC</time>" in display.full_time(at)
    assert display.full_time(None) == "-"
    # In a given zone: the UTC time beside it when the zone is not UTC, with its date if other.
    paris = display.full_time(at, ZoneInfo("Europe/Paris"))
    assert ">2026-11-23 00:30:07 CET (2026-11-22 23:30:07 UTC)</time>" in paris
    tokyo = display.full_time(at.replace(hour=3), ZoneInfo("Asia/Tokyo"))
    assert ">2026-11-22 12:30:07 JST (03:30:07 UTC)</time>" in tokyo
    assert ">2026-11-22 23:30:07 UTC</time>" in display.full_time(at, ZoneInfo("UTC"))


@override_settings(TIME_ZONE="UTC")
def test_error_history_shows_a_repeated_traceback_once() -> None:
    same = "Traceback (most recent call last):\nValueError: x"
    errors = [
        {"attempt": n, "error_type": "ValueError", "message": "x", "traceback": tb}
        for n, tb in ((1, same), (2, ""), (3, same), (4, "other"), (5, "other"))
    ]
    errors[0]["failed_at"] = "2026-11-22T09:05:07.123456+00:00"
    errors[1]["failed_at"] = "yesterday"
    page = str(display.error_history(errors, Redaction(())))
    assert page.count("Same traceback as attempt") == 2
    assert "Same traceback as attempt 1" in page and "Same traceback as attempt 4" in page
    assert "at 2026-11-22 09:05:07 UTC" in page and "at yesterday" in page
    # Folded, not gone: the text is one click away.
    assert page.count("Traceback (most recent call last)") == 2


def test_a_redaction_hides_the_secrets_in_every_string_keys_included() -> None:
    redaction = Redaction.of(["token"], {"token": "tok-12345"})
    shown = redaction.value(
        {
            "token": "tok-12345",
            "echo": ["got TOK-12345", 12345, {"tok-12345": 1, display.MASK: 2}],
            "note": "password=hunter22 ok",
        }
    )
    assert shown == {
        "token": display.MASK,
        # Two keys that redact alike both stay listed.
        "echo": ["got ********", 12345, {display.MASK: 1, f"{display.MASK} (2)": 2}],
        "note": "password=hunter22 ok",  # "password" is not among this redaction's names
    }
    assert Redaction.of(["password"]).text("password=hunter22 ok") == "password=******** ok"


def test_a_list_cell_is_redacted_before_it_is_cut() -> None:
    redaction = Redaction.of(["api_key"], {"api_key": "sk-abcdefghijkl"})
    cell = display.shown_text("x" * 75 + "sk-abcdefghijkl", redaction)
    assert len(cell) == display.PREVIEW_CHARS and "sk-ab" not in cell
