"""A limited task for ``benchmarks/worker.py --with-limits``: registered in the worker beside
``bench_jobs``, never enqueued, so that the drain of plain jobs measures what a worker that
serves limited tasks pays for its limited claims."""

from __future__ import annotations

from bench_jobs import app


@app.job(name="bench.limited", concurrency_limit=5, rate_limit="100/s")
async def limited(n: int) -> None:
    return None
