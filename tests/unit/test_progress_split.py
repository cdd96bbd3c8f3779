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


class DriverDataError(Exception):
    """A driver's PEP 249 DataError raised before sending: no SQLSTATE."""


DriverDataError.__name__ = "DataError"


class ServerRefusal(Exception):
    """A server's refusal known only by its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_what_counts_as_refused_data() -> None:
    assert is_unstorable(DriverDataError("x")), "by PEP 249's name"
    assert is_unstorable(ServerRefusal("22003")), "class 22: data exception"
    assert is_unstorable(ServerRefusal("54001")), "class 54: program limit exceeded"
    assert is_unstorable(UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates"))
    assert is_unstorable(OverflowError("date value out of range"))
    assert not is_unstorable(ServerRefusal("40P01")), "a deadlock is worth retrying"
    assert not is_unstorable(ServerRefusal("08006")), "a lost connection too"
    assert not is_unstorable(Refused("x"))
    assert not is_unstorable(ConnectionError("gone"))


@pytest.mark.asyncio
async def test_a_refused_placeholder_leaves_the_job_to_recovery_without_looping() -> None:
    class RefusesEverything(FakeDatabase):
        async def write(self, owner: str, done: Sequence[Done], started: Sequence[Started]) -> int:
            if any(job_id == "job-poison" for job_id, _, _ in done):
                self.calls += 1
                raise DataError("refused whatever it holds")
            return await super().write(owner, done, started)

    database = RefusesEverything()
    writer = ProgressWriter(database.write, retry_delay=0.1, unstorable=is_unstorable)
    writer.add("worker", "job-poison", 1, '"poison"')
    writer.add("worker", "job-fine", 1, "1")
    writer.start()
    await asyncio.wait_for(writer.flush(), 10)
    await writer.close(grace=1)
    assert database.written == {"job-fine": "1"}
    assert writer.pending_ids() == ["job-poison"], "held: never released as a stray"
    assert database.calls <= 6, "the batch, its halves, the placeholder: then it stops"
