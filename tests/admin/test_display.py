"""The admin's value formatting: compact times, truncation, masking."""

from __future__ import annotations

from datetime import UTC, datetime

from django.test import override_settings

from soniq.admin import display

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
    masked = display.mask(
        {"DB_Password": "p", "nested": [{"x-authorization": "a", "keep": 1}], "user": "u"},
        ["password", "authorization"],
    )
    assert masked == {
        "DB_Password": display.MASK,
        "nested": [{"x-authorization": display.MASK, "keep": 1}],
        "user": "u",
    }
