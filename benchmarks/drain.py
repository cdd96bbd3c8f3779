"""Drain throughput of one ``soniq worker`` process across concurrencies (and PREFETCH values).

    .venv/bin/python benchmarks/drain.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                         [--jobs 20000] [--concurrency 1,10,50,100,200]
                                         [--prefetch 50] [--rounds 3]

Creates (and at the end drops) a scratch database "soniq_bench_drain", migrated with the
testproject's settings. For each round, and in each round for each combination of concurrency
and PREFETCH (interleaved, so that a noisy moment of this shared machine does not favour one),
it empties ``soniq_jobs``, enqueues ``--jobs`` no-op jobs (``bench.noop``) in one statement, runs
``ANALYZE soniq_jobs`` (a table in use has statistics), starts ONE ``soniq worker --concurrency
N`` process (``SONIQ_PREFETCH`` set), and times from its row appearing in ``soniq_workers`` to
the moment no job is queued or processing (a count polled every 20 ms, the same measure as
``benchmarks/worker.py``'s (b)). It prints every measurement and the median per combination.

``--prefetch`` (default: the setting's own default) takes a comma-separated list too
(``--prefetch 0,10,50,200``), which is how the default of the PREFETCH setting was chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR.parent / "testproject"), str(BENCH_DIR)]

import _scratch  # noqa: E402
import worker as bench  # noqa: E402  (benchmarks/worker.py: the worker process and its waits)

SCRATCH = "soniq_bench_drain"


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _prefetches(text: str) -> list[int | None]:
    """``--prefetch``: numbers, or ``default`` for the PREFETCH setting's own default."""
    return [None if part.strip() == "default" else int(part) for part in text.split(",")]


async def _drain_once(
    url: str, jobs: int, concurrency: int, prefetch: int | None, log_dir: Path
) -> float:
    import bench_jobs

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE soniq_jobs, soniq_workers")
        await bench_jobs.app.enqueue_many(bench_jobs.noop, [{"n": n} for n in range(jobs)])
        await conn.execute("ANALYZE soniq_jobs")
        log = log_dir / f"worker-c{concurrency}-p{prefetch}-{time.monotonic_ns()}.log"
        worker = bench.Worker(url, concurrency, "127.0.0.1:9", log, prefetch=prefetch)
        try:
            registered = await bench._wait_registered(conn, worker)
            finished = await bench._wait_done(conn, worker, "bench.noop", jobs)
            worker.terminate()
        finally:
            worker.kill()
        return jobs / (finished - registered)


def _label(prefetch: int | None) -> str:
    return "default" if prefetch is None else str(prefetch)


async def _main(options: argparse.Namespace) -> None:
    import bench_jobs

    url = _scratch.database_url(options.url, SCRATCH)
    combinations = [
        (concurrency, prefetch)
        for prefetch in _prefetches(options.prefetch)
        for concurrency in _numbers(options.concurrency)
    ]
    rates: dict[tuple[int, int | None], list[float]] = {combo: [] for combo in combinations}
    with tempfile.TemporaryDirectory(prefix="soniq-drain-") as logs:
        try:
            for round_number in range(1, options.rounds + 1):
                for concurrency, prefetch in combinations:
                    rate = await _drain_once(url, options.jobs, concurrency, prefetch, Path(logs))
                    rates[(concurrency, prefetch)].append(rate)
                    print(
                        f"round {round_number}: concurrency {concurrency:>4}, "
                        f"prefetch {_label(prefetch):>7}: {rate:>9,.0f} jobs/s",
                        flush=True,
                    )
        finally:
            await bench_jobs.app.close()
    print()
    print(f"{options.jobs:,} no-op jobs, one worker process; median of {options.rounds} round(s)")
    print("| concurrency | PREFETCH | jobs/s (median) | runs |")
    print("|---:|---:|---:|---|")
    for (concurrency, prefetch), measured in rates.items():
        runs = " / ".join(f"{rate:,.0f}" for rate in measured)
        median = statistics.median(measured)
        print(f"| {concurrency} | {_label(prefetch)} | {median:,.0f} | {runs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", default="1,10,50,100,200")
    parser.add_argument("--prefetch", default="default")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    _scratch.recreate(options.url, SCRATCH)
    url = _scratch.database_url(options.url, SCRATCH)
    try:
        _scratch.setup_django(url)
        # bench_jobs builds its app from this variable, in this process and in the worker.
        os.environ["SONIQ_DATABASE_URL"] = url
        asyncio.run(_main(options))
    finally:
        _scratch.drop(options.url, SCRATCH)


if __name__ == "__main__":
    main()
