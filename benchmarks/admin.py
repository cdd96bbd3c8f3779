"""Admin list pages over a million jobs, on local PostgreSQL.

    .venv/bin/python benchmarks/admin.py [--url postgresql://postgres@127.0.0.1/postgres]
                                         [--jobs 1000000] [--dead 100000] [--runs 7]

Creates (and at the end drops) a scratch database "soniq_bench_admin", migrates it with the
testproject's settings, fills it with SQL (``generate_series``: finished jobs over the last
day, some queued, failed and dead-lettered ones), ANALYZEs, then requests each admin page with
Django's test client as a superuser and prints the median and worst time of ``--runs``
requests, and the number of SQL queries each page ran.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _scratch
import psycopg

NAME = "soniq_bench_admin"

FILL = """
INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, max_attempts,
                        scheduled_at, created_at, started_at, finished_at, errors, worker_losses)
SELECT gen_random_uuid(), 'shop.jobs.task_' || (n %% 20), jsonb_build_object('n', n),
       (ARRAY['default', 'emails', 'reports'])[1 + n %% 3], 100,
       CASE WHEN n %% 100 = 0 THEN 'queued' WHEN n %% 333 = 0 THEN 'cancelled' ELSE 'done' END,
       1, 4, now() - make_interval(secs => n * 86400.0 / %(jobs)s),
       now() - make_interval(secs => n * 86400.0 / %(jobs)s),
       now() - make_interval(secs => n * 86400.0 / %(jobs)s),
       CASE WHEN n %% 100 = 0 THEN NULL
            ELSE now() - make_interval(secs => n * 86400.0 / %(jobs)s) END,
       '[]'::jsonb, 0
FROM generate_series(1, %(jobs)s) AS n
"""
FILL_DEAD = """
INSERT INTO soniq_dead_letter_jobs (id, task_name, args, queue, priority, attempts, max_attempts,
    scheduled_at, created_at, started_at, dead_lettered_at, errors, reason)
SELECT gen_random_uuid(), 'shop.jobs.task_' || (n %% 20), jsonb_build_object('n', n), 'default',
       100, 4, 4, now(), now(), now(), now() - make_interval(secs => n * 86400.0 / %(dead)s),
       jsonb_build_array(jsonb_build_object('attempt', 4, 'error_type', 'ValueError',
                                            'message', 'boom', 'traceback', 'Traceback ...')),
       CASE WHEN n %% 10 = 0 THEN 'worker_lost' ELSE 'max_attempts' END
FROM generate_series(1, %(dead)s) AS n
"""


def fill(url: str, jobs: int, dead: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(FILL, {"jobs": jobs})
        conn.execute(FILL_DEAD, {"dead": dead})
        conn.execute("ANALYZE")
        took = time.perf_counter() - started
        print(f"filled {jobs:,} jobs and {dead:,} dead letters in {took:.1f} s")


def measure(runs: int, show_queries: bool = False) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from soniq.models import Job

    some_id = Job.objects.order_by().values_list("id", flat=True).first()
    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    pages = {
        "jobs, unfiltered": "/admin/soniq/job/",
        "jobs, page 50": "/admin/soniq/job/?p=50",
        "jobs, status=queued": "/admin/soniq/job/?status=queued",
        "jobs, queue + task": "/admin/soniq/job/?queue=emails&task=shop.jobs.task_4",
        "jobs, created today": "/admin/soniq/job/?created_at__gte=today",
        "jobs, search by id": f"/admin/soniq/job/?q={some_id}",
        "jobs, search task text": "/admin/soniq/job/?q=task_7",
        "job detail": f"/admin/soniq/job/{some_id}/change/",
        "dead letters, unfiltered": "/admin/soniq/deadletterjob/",
        "dead letters, reason": "/admin/soniq/deadletterjob/?reason=worker_lost",
        "requeue-matching confirmation": "/admin/soniq/deadletterjob/requeue-matching/",
        "dashboard": "/admin/soniq/job/dashboard/",
    }
    print(f"{'page':<32} {'median ms':>10} {'worst ms':>10} {'queries':>8}")
    for label, url in pages.items():
        today = time.strftime("%Y-%m-%d+00:00:00%%2B00:00")
        url = url.replace("created_at__gte=today", f"created_at__gte={today}")
        timings = []
        queries = 0
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = len(captured)
        print(f"{label:<32} {statistics.median(timings):>10.1f} {max(timings):>10.1f} {queries:>8}")
        if show_queries:
            for query in captured.captured_queries:
                print(f"    {float(query['time']) * 1000:8.1f} ms  {query['sql'][:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--queries", action="store_true", help="print each query's time")
    args = parser.parse_args()
    _scratch.recreate(args.url, NAME)
    try:
        url = _scratch.database_url(args.url, NAME)
        _scratch.setup_django(url)
        fill(url, args.jobs, args.dead)
        measure(args.runs, args.queries)
    finally:
        from django.db import connections

        connections.close_all()
        _scratch.drop(args.url, NAME)


if __name__ == "__main__":
    main()
