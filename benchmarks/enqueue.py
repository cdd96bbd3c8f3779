"""Enqueue throughput, and the claim plan with a million finished rows, on local PostgreSQL.

    .venv/bin/python benchmarks/enqueue.py [--url postgresql://postgres@127.0.0.1/postgres]
                                           [--jobs 20000] [--million]

Creates (and at the end drops) a scratch database "soniq_bench", migrates it with the
testproject's settings, then times: enqueue_many of N no-op jobs through psycopg and through
Django's connection, N/10 single enqueues each way, and (with --million) EXPLAINs the claim
query over 1,000,000 finished jobs. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import _scratch
import psycopg


def _rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<52} {count:>7} jobs {seconds:8.3f} s {count / seconds:>10,.0f} jobs/s")


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE soniq_jobs")


async def _psycopg_runs(url: str, count: int) -> None:
    from soniq import Soniq

    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop(n: int) -> None:
        return None

    await app.ensure_initialized()
    rows = [{"n": n} for n in range(count)]
    started = time.perf_counter()
    ids = await app.enqueue_many(noop, rows)
    _rate("enqueue_many, psycopg AsyncConnection", len(ids), time.perf_counter() - started)
    singles = count // 10
    started = time.perf_counter()
    for n in range(singles):
        await app.enqueue(noop, n=n)
    _rate(
        "enqueue one by one, psycopg pool (autocommit each)", singles, time.perf_counter() - started
    )
    await app.close()


def _django_runs(url: str, count: int) -> None:
    from django.db import transaction

    from soniq import Soniq

    app = Soniq()

    @app.job(name="bench.noop")
    def noop(n: int) -> None:
        return None

    rows = [{"n": n} for n in range(count)]
    started = time.perf_counter()
    ids = app.enqueue_many_sync(noop, rows)
    _rate("enqueue_many_sync, Django connection", len(ids), time.perf_counter() - started)
    singles = count // 10
    started = time.perf_counter()
    with transaction.atomic():
        for n in range(singles):
            noop.enqueue(n=n)
    _rate(
        "job.enqueue() one by one in one atomic block, Django",
        singles,
        time.perf_counter() - started,
    )


def _claim_plan(url: str) -> None:
    from soniq.backends.postgres.worker_statements import claim_jobs

    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(
            """
            INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
                max_attempts, scheduled_at, created_at, finished_at, errors, worker_losses)
            SELECT gen_random_uuid(), 'bench.noop', '{}', 'default', 100, 'done', 1, 4,
                   now(), now(), now(), '[]', 0
            FROM generate_series(1, 1000000)
            """
        )
        conn.execute("ANALYZE soniq_jobs")
        print(f"inserted 1,000,000 finished jobs in {time.perf_counter() - started:.1f} s")
        statement = claim_jobs(
            worker_id=str(uuid.uuid4()),
            task_names=["bench.noop"],
            queues=None,
            limit=10,
            now=datetime.now(UTC),
        )
        sql = psycopg.ClientCursor(conn).mogrify(statement.sql, statement.params)
        for (line,) in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}").fetchall():
            print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--million", action="store_true", help="also EXPLAIN the claim at 1M rows")
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        help="drop this index after migrating (to measure what an index costs each enqueue)",
    )
    options = parser.parse_args()
    url = _scratch.database_url(options.url, "soniq_bench")
    _scratch.recreate(options.url, "soniq_bench")
    try:
        _scratch.setup_django(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for index in options.drop_index:
                conn.execute(f'DROP INDEX "{index}"')
        asyncio.run(_psycopg_runs(url, options.jobs))
        _truncate(url)
        _django_runs(url, options.jobs)
        if options.million:
            _truncate(url)
            _claim_plan(url)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(options.url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "soniq_bench" WITH (FORCE)')


if __name__ == "__main__":
    main()
