"""pgqueuer's side of ``benchmarks/compare.py``, run only in pgqueuer's own virtualenv.

The worker is pgqueuer's CLI, ``pgq run compare_pgqueuer:create --max-concurrent-tasks 10
--batch-size 5``: ``create`` is the factory it enters (an async context manager yielding a
``PgQueuer`` on one asyncpg connection, the driver pgqueuer's quick start uses) with the two
entrypoints. Run as ``python compare_pgqueuer.py client`` this module is the enqueueing
client, on ``pgqueuer.queries.Queries`` over an asyncpg connection: ``await
queries.enqueue(entrypoints, payloads, priorities)`` with lists for the bulk enqueue, and
``await queries.enqueue(entrypoint, payload)`` for each single enqueue and latency job. A
payload is the job's number as ASCII digits.

The schema is installed with ``pgq install``. In soniq's environment, which has neither
pgqueuer nor asyncpg, mypy checks this module with those imports ignored.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-not-found]
from compare_common import DATABASE_URL, Tally, serve
from pgqueuer import PgQueuer  # type: ignore[import-not-found]
from pgqueuer.models import Job  # type: ignore[import-not-found]
from pgqueuer.queries import Queries  # type: ignore[import-not-found]

NOOP = "compare_noop"
STAMP = "compare_stamp"
TALLY = Tally()


async def noop(job: Job) -> None:
    TALLY.noop(int(job.payload))


async def stamp(job: Job) -> None:
    started = time.time()
    TALLY.stamp(int(job.payload), started)


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    """The worker's factory, as ``pgq run`` takes it."""
    connection = await asyncpg.connect(os.environ[DATABASE_URL])
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)
        pgq.entrypoint(NOOP)(noop)
        pgq.entrypoint(STAMP)(stamp)
        yield pgq
    finally:
        await connection.close()


class PgqueuerClient:
    def __init__(self) -> None:
        self.connection: asyncpg.Connection | None = None
        self.queries: Queries | None = None

    async def open(self) -> None:
        self.connection = await asyncpg.connect(os.environ[DATABASE_URL])
        self.queries = Queries.from_asyncpg_connection(self.connection)

    async def bulk(self, numbers: list[int]) -> float:
        assert self.queries is not None
        entrypoints = [NOOP] * len(numbers)
        payloads: list[bytes | None] = [str(n).encode() for n in numbers]
        priorities = [0] * len(numbers)
        started = time.perf_counter()
        ids = await self.queries.enqueue(entrypoints, payloads, priorities)
        seconds = time.perf_counter() - started
        assert len(ids) == len(numbers), len(ids)
        return seconds

    async def single(self, n: int) -> None:
        assert self.queries is not None
        await self.queries.enqueue(NOOP, str(n).encode())

    async def stamp(self, seq: int) -> None:
        assert self.queries is not None
        await self.queries.enqueue(STAMP, str(seq).encode())

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["client"]:
        sys.exit("usage: compare_pgqueuer.py client")
    asyncio.run(serve(PgqueuerClient()))
