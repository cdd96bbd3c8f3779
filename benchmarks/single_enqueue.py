"""The single enqueue against psycopg's own floor for the same statement, back to back.

    .venv/bin/python benchmarks/single_enqueue.py [--url postgresql://postgres@127.0.0.1/postgres]
                                                  [--jobs 3000] [--rounds 3]

Creates (and at the end drops) a scratch database "soniq_bench_single", migrates it with the
testproject's settings, then, in each round, enqueues ``--jobs`` no-op jobs one at a time,
each committed on its own, three ways:

- ``soniq``: ``await app.enqueue(noop, n=...)``, the public API (validation, a pooled
  connection per call);
- ``pooled``: the statement soniq sends for one job, with ``await conn.execute(...)`` on a
  connection taken from the same pool for each call;
- ``held``: the same statement on one connection held for the whole loop: psycopg's floor for
  one job per round trip.

The table is emptied between the ways. Prints jobs/s, wall time and the process's CPU time
per call, so that the cost of each layer can be told from the round trip itself.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from collections.abc import Awaitable, Callable

import _scratch

DATABASE = "soniq_bench_single"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(url: str, jobs: int, rounds: int) -> None:
    from soniq import Soniq
    from soniq.backends.postgres.backend import PostgresBackend
    from soniq.backends.postgres.statements import PostgresDialect
    from soniq.core.records import NewJob

    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop(n: int) -> None:
        return None

    await app.ensure_initialized()
    backend = app.backend
    assert isinstance(backend, PostgresBackend)
    dialect = PostgresDialect()

    def statement(n: int) -> tuple[str, tuple[object, ...]]:
        job = NewJob(
            id=uuid.uuid4(),
            task_name="bench.noop",
            args={"n": n},
            args_json=f'{{"n": {n}}}',
            queue="default",
            priority=100,
            max_attempts=4,
            scheduled_at=None,
            dedup_key=None,
        )
        [one] = dialect.insert_jobs([job])
        return one.sql, one.params

    async def soniq_way() -> None:
        for n in range(jobs):
            await app.enqueue(noop, n=n)

    async def pooled_way() -> None:
        for n in range(jobs):
            async with backend.acquire() as conn:
                await conn.execute(*statement(n))

    async def held_way() -> None:
        async with backend.acquire() as conn:
            for n in range(jobs):
                await conn.execute(*statement(n))

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "soniq": soniq_way,
        "pooled": pooled_way,
        "held": held_way,
    }
    for round_no in range(1, rounds + 1):
        for name, way in ways.items():
            started, cpu = time.perf_counter(), _cpu_seconds()
            await way()
            wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
            print(
                f"round {round_no}  {name:<7} {jobs / wall:>7,.0f} jobs/s  "
                f"wall {wall / jobs * 1e6:5.0f} µs  CPU {cpu / jobs * 1e6:5.0f} µs per call",
                flush=True,
            )
            async with backend.acquire() as conn:
                await conn.execute("TRUNCATE soniq_jobs")
    await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if options.jobs < 1 or options.rounds < 1:
        parser.error("--jobs and --rounds must be at least 1")
    _scratch.recreate(options.url, DATABASE)
    url = _scratch.database_url(options.url, DATABASE)
    try:
        _scratch.setup_django(url)
        asyncio.run(_run(url, options.jobs, options.rounds))
    finally:
        _scratch.drop(options.url, DATABASE)


if __name__ == "__main__":
    main()
