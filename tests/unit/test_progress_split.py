"""The progress writer splits a batch the database refuses the data of, so that only the row at
fault is written with a placeholder (the worker test with a real refusal is in
tests/worker/test_poison_errors.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from soniq.core import codec
from soniq.worker.progress import Done, ProgressWriter, Started
from soniq.worker.unstorable import is_unstorable


class Refused(Exception):
    """Stands for a driver's DataError (PEP 249's name is what counts)."""


class DataError(Refused):
    sqlstate = "22003"


class FakeDatabase:
    """Refuses every batch holding a result marked "poison"; records what it applied."""

    def __init__(self) -> None:
        self.written: dict[str, str | None] = {}
        self.started: set[str] = set()
        self.calls = 0

    async def write(self, owner: str, done: Sequence[Done], started: Sequence[Started]) -> int:
        self.calls += 1
        if any(result is not None and "poison" in result for _, _, result in done):
            raise DataError("value overflows numeric format")
        for job_id, _, result in done:
            assert job_id not in self.written, "written once"
            self.written[job_id] = result
        self.started.update(job_id for job_id, _ in started)
        return len(done)


@pytest.mark.asyncio
async def test_only_the_row_at_fault_gets_a_placeholder() -> None:
    database = FakeDatabase()
    writer = ProgressWriter(database.write, retry_delay=0.1, unstorable=is_unstorable)
    ids = [f"job-{n}" for n in range(200)]
    for n, job_id in enumerate(ids):
        result = '{"n":"poison"}' if n == 137 else str(n)
        writer.add("worker", job_id, 1, result)
    writer.add_started("worker", "started-1", 1)
    writer.start()
    await asyncio.wait_for(writer.flush(), 10)
    await writer.close(grace=1)
    assert set(database.written) == set(ids)
    for n, job_id in enumerate(ids):
        if n != 137:
            assert database.written[job_id] == str(n)
    placeholder = codec.loads(database.written["job-137"])
    assert placeholder == {"unstorable_result": "not stored: value overflows numeric format"}
    assert database.started == {"started-1"}
    assert database.calls < 40, "halving: about 2 log2(n) writes, not one per row"


def test_what_counts_as_refused_data() -> None:
    assert is_unstorable(DataError("x"))
    assert is_unstorable(UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates"))
    assert not is_unstorable(Refused("x"))
    assert not is_unstorable(ConnectionError("gone"))
