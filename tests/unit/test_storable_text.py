"""What soniq writes itself (error messages, tracebacks, log lines) is made storable, bounded
and single-line."""

from __future__ import annotations

from soniq.core.codec import one_line, storable_text, text_problem


def test_nul_and_lone_surrogates_become_visible_escapes() -> None:
    stored = storable_text("ab\x00cd \ud800 é", 100)
    assert stored == "ab\\x00cd \\ud800 é"
    assert text_problem(stored) is None


def test_long_text_keeps_its_start_or_its_end() -> None:
    assert storable_text("x" * 30, 10) == "x" * 10 + "... [20 more characters cut]"
    tail = storable_text("y" * 27 + "END", 10, keep_end=True)
    assert tail == "[20 characters cut] ..." + "y" * 7 + "END"
    assert storable_text("short", 10) == "short"


def test_one_line_escapes_line_breaks_and_control_characters() -> None:
    assert one_line("a\nFAKE 2026 INFO forged\r\x1b[31m") == "a\\nFAKE 2026 INFO forged\\r\\x1b[31m"
    assert one_line("plain text, é") == "plain text, é"
