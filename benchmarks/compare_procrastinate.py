"""procrastinate's side of ``benchmarks/compare.py``, run only in procrastinate's own virtualenv.

``app`` is a ``procrastinate.App`` on a ``procrastinate.PsycopgConnector`` (psycopg 3 and its
pool; ``max_size`` 10, the ceiling of soniq's own pool, where psycopg_pool's default would be 4
connections for 10 concurrent jobs). The worker is procrastinate's CLI, ``procrastinate
--app=compare_procrastinate.app worker --concurrency 10``, and the schema is installed with
``procrastinate --app=compare_procrastinate.app schema --apply``. Run as ``python
compare_procrastinate.py client`` this module is the enqueueing client, inside ``async with
app.open_async()``: ``await noop.batch_defer_async(*rows)`` for the bulk enqueue, ``await
noop.defer_async(n=...)`` for each single enqueue and ``await stamp.defer_async(seq=...)`` for
each latency job.

Not type-checked in soniq's environment, which does not have procrastinate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from compare_common import DATABASE_URL, Tally, serve
from procrastinate import App, PsycopgConnector  # type: ignore[import-not-found]

POOL_SIZE = 10

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get(DATABASE_URL, ""), min_size=1, max_size=POOL_SIZE
    )
)
TALLY = Tally()


@app.task(name="compare_noop")
async def noop(n: int) -> None:
    TALLY.noop(n)


@app.task(name="compare_stamp")
async def stamp(seq: int) -> None:
    started = time.time()
    TALLY.stamp(seq, started)


class ProcrastinateClient:
    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()

    async def open(self) -> None:
        await self.stack.enter_async_context(app.open_async())

    async def bulk(self, numbers: list[int]) -> float:
        rows = [{"n": n} for n in numbers]
        started = time.perf_counter()
        ids = await noop.batch_defer_async(*rows)
        seconds = time.perf_counter() - started
        assert len(ids) == len(numbers), len(ids)
        return seconds

    async def single(self, n: int) -> None:
        await noop.defer_async(n=n)

    async def stamp(self, seq: int) -> None:
        await stamp.defer_async(seq=seq)

    async def close(self) -> None:
        await self.stack.aclose()


if __name__ == "__main__":
    if sys.argv[1:] != ["client"]:
        sys.exit("usage: compare_procrastinate.py client")
    asyncio.run(serve(ProcrastinateClient()))
