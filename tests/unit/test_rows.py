"""Decoding the rows of a claim (soniq.backends.rows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from soniq.backends.rows import decode_claimed, decode_claimed_rows
from soniq.core.status import Suspicion

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def claim_row(n: int, args: object) -> tuple[object, ...]:
    lock = f"lock:{n}" if n % 2 else None
    return (uuid.UUID(int=n + 1), "tests.job", args, "default", 100, 1, 4, NOW, NOW, n % 3, n, lock)


def test_a_claims_arguments_are_parsed_together_and_stay_with_their_rows() -> None:
    texts = ['{"n": 0}', '{"s": "a,\\"b\\"]["}', '{"nested": {"list": [1, 2.5, null]}}', "{}"]
    rows = [claim_row(n, text) for n, text in enumerate(texts)]
    jobs = decode_claimed_rows(rows, "worker-1")
    assert jobs == [decode_claimed(row, "worker-1") for row in rows]
    assert [job.args for job in jobs] == [
        {"n": 0},
        {"s": 'a,"b"]['},
        {"nested": {"list": [1, 2.5, None]}},
        {},
    ]
    assert [job.suspicion for job in jobs] == [
        Suspicion.NONE,
        Suspicion.UNCONFIRMED_START,
        Suspicion.LOST_WHILE_RUNNING,
        Suspicion.NONE,
    ]
    assert [job.lock for job in jobs] == [None, "lock:1", None, "lock:3"]
    assert {job.claimed_by for job in jobs} == {"worker-1"}
    assert [job.snoozes for job in jobs] == [0, 1, 2, 3]


def test_arguments_a_driver_already_decoded_are_taken_as_they_are() -> None:
    rows = [claim_row(0, {"n": 0}), claim_row(1, '{"n": 1}')]
    assert [job.args for job in decode_claimed_rows(rows, "w")] == [{"n": 0}, {"n": 1}]
    assert decode_claimed_rows([], "w") == []
