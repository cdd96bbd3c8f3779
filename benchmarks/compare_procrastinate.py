"""procrastinate's side of ``benchmarks/compare.py``, run only in procrastinate's own virtualenv.

``app`` is a ``procrastinate.App`` on a ``procrastinate.PsycopgConnector(conninfo=...)``
(psycopg 3 and its pool, at its defaults). The worker is procrastinate's CLI, ``procrastinate
--app=compare_procrastinate.app --log-level=warning worker --concurrency 10``, and the schema
is installed with
``procrastinate --app=compare_procrastinate.app schema --apply``. Run as ``python
compare_procrastinate.py client`` this module is the enqueueing client, inside ``async with
app.open_async()``: ``await noop.batch_defer_async(*rows)`` for the bulk enqueue, ``await
noop.defer_async(n=...)`` for each single enqueue and ``await stamp.defer_async(seq=...)`` for
each latency job.

In soniq's environment, which does not have procrastinate, mypy checks this module with that
import ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from compare_common import DATABASE_URL, Tally, serve
from procrastinate import App, PsycopgConnector  # type: ignore[import-not-found]

app = App(connector=PsycopgConnector(conninfo=os.environ.get(DATABASE_URL, "")))
TALLY = Tally()


async def run_noop(n: int) -> None:
    TALLY.noop(n)


async def run_stamp(seq: int) -> None:
    started = time.time()
    TALLY.stamp(seq, started)


# The tasks, registered without decorator syntax: procrastinate is not typed here.
noop = app.task(name="compare_noop")(run_noop)
stamp = app.task(name="compare_stamp")(run_stamp)


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
