"""soniq's side of ``benchmarks/compare.py``, run with soniq's own ``.venv``.

Imported by the ``soniq worker`` process (``SONIQ_JOBS_MODULES=compare_soniq``) for its jobs;
run as ``python compare_soniq.py client`` it is the enqueueing client: ``await
app.enqueue_many(noop, rows)`` for the bulk enqueue, ``await app.enqueue(noop, n=...)`` for
each single enqueue and ``await app.enqueue(stamp, seq=...)`` for each latency job.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from compare_common import DATABASE_URL, Tally, serve

from soniq import Soniq

app = Soniq(database_url=os.environ.get(DATABASE_URL) or os.environ["SONIQ_DATABASE_URL"])
TALLY = Tally()


@app.job(name="compare.noop")
async def noop(n: int) -> None:
    TALLY.noop(n)


@app.job(name="compare.stamp")
async def stamp(seq: int) -> None:
    started = time.time()
    TALLY.stamp(seq, started)


class SoniqClient:
    async def open(self) -> None:
        await app.ensure_initialized()

    async def bulk(self, numbers: list[int]) -> float:
        rows = [{"n": n} for n in numbers]
        started = time.perf_counter()
        ids = await app.enqueue_many(noop, rows)
        seconds = time.perf_counter() - started
        assert len(ids) == len(numbers), len(ids)
        return seconds

    async def single(self, n: int) -> None:
        await app.enqueue(noop, n=n)

    async def stamp(self, seq: int) -> None:
        await app.enqueue(stamp, seq=seq)

    async def close(self) -> None:
        await app.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["client"]:
        sys.exit("usage: compare_soniq.py client")
    asyncio.run(serve(SoniqClient()))
