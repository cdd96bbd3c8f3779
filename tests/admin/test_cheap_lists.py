"""Lists stay cheap however big a row's error history or result: they never read those columns
(the last error comes from the database, cut there), and a page of 50 dead letters holding
megabytes each renders in bounded time and memory."""

from __future__ import annotations

import re
import time
import tracemalloc

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.admin.conftest import Rows, changelist, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

JOBS = changelist("job")
DEAD = changelist("deadletterjob")


def _list_queries(client: Client, alias: str, url: str) -> list[str]:
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def _whole_column_reads(sql: str, table: str, column: str) -> list[str]:
    """Where ``sql`` reads ``table.column`` whole, not as the argument of the last-error
    expression (``"errors" -> -1`` on PostgreSQL, ``json_extract("errors", ...)`` on SQLite)."""
    reference = f'"{table}"."{column}"'
    reads = []
    for found in re.finditer(re.escape(reference), sql):
        before, after = sql[: found.start()], sql[found.end() :]
        if after.startswith(" -> -1") or before.endswith("json_extract("):
            continue
        reads.append(sql[max(0, found.start() - 40) : found.end() + 40])
    return reads


def test_the_job_list_reads_no_result_and_no_error_history(rows: Rows, superuser: Client) -> None:
    for _ in range(3):
        rows.job(status="done", result={"big": "r" * 1000}, errors=[{"message": "e" * 1000}])
    queries = _list_queries(superuser, rows.alias, JOBS)
    assert any("soniq_jobs" in sql for sql in queries)
    for sql in queries:
        for column in ("result", "errors"):
            assert _whole_column_reads(sql, "soniq_jobs", column) == [], sql


def test_the_dead_letter_list_reads_only_the_start_of_the_last_error(
    rows: Rows, superuser: Client
) -> None:
    for _ in range(3):
        rows.dead_letter(errors=[{"error_type": "x.ValueError", "message": "e" * 5000}])
    queries = _list_queries(superuser, rows.alias, DEAD)
    for sql in queries:
        assert _whole_column_reads(sql, "soniq_dead_letter_jobs", "errors") == [], sql
    # The page query cuts the message in SQL; the count does not compute it at all.
    page = next(sql for sql in queries if "soniq_dead_letter_jobs" in sql and "COUNT" not in sql)
    assert ("left((" in page) if rows.alias == "default" else ("substr(json_extract(" in page)
    count = next(sql for sql in queries if "soniq_dead_letter_jobs" in sql and "COUNT" in sql)
    assert "errors" not in count


def test_the_last_error_column_reads_the_newest_entry(rows: Rows, superuser: Client) -> None:
    rows.dead_letter(
        errors=[
            {"error_type": "TimeoutError", "message": "first"},
            {"error_type": "requests.exceptions.HTTPError", "message": "503 Server Error"},
        ]
    )
    rows.dead_letter(errors=[])
    rows.dead_letter(errors=[{"error_type": "KeyError"}, "not an entry"])
    cells = re.findall(r'<td class="field-last_error">([^<]*)</td>', html(superuser.get(DEAD)))
    assert sorted(cells) == ["-", "-", "HTTPError: 503 Server Error"]


# -- 50 dead letters of megabytes each ----------------------------------------------------------

ROWS = 50
MESSAGE_CHARS = 2_000_000
TRACEBACK_CHARS = 1_000_000
ENTRIES = 3  # each row: 3 x (2 MB message + 1 MB traceback) = 9 MB, 450 MB in all
PEAK_LIMIT = 50 * 1024 * 1024
SECONDS_LIMIT = 30.0


def _insert_huge_dead_letters(alias: str) -> None:
    """Written by the database itself: the test process never holds the megabytes either. The
    newest message starts with a credential, which the list must hide."""
    entry = (
        "jsonb_build_object('attempt', n, 'error_type', 'app.errors.HugeError', "
        "'message', CASE WHEN n = %(entries)s THEN 'password=Zk83hQ0pLw ' ELSE '' END "
        "|| repeat('m', %(message)s), 'traceback', repeat('t', %(traceback)s))"
    )
    sql = f"""
        INSERT INTO soniq_dead_letter_jobs
            (id, task_name, args, queue, priority, attempts, max_attempts, scheduled_at,
             created_at, dead_lettered_at, errors, reason)
        SELECT gen_random_uuid(), 'tests.huge', '{{"n": 1}}'::jsonb, 'default', 100, 3, 3,
               now(), now(), now() - row * interval '1 second',
               (SELECT jsonb_agg({entry} ORDER BY n) FROM generate_series(1, %(entries)s) n),
               'max_attempts'
        FROM generate_series(1, %(rows)s) row
    """
    params = {
        "entries": ENTRIES,
        "message": MESSAGE_CHARS,
        "traceback": TRACEBACK_CHARS,
        "rows": ROWS,
    }
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db(databases=["default"])
def test_fifty_huge_dead_letters_list_in_bounded_time_and_memory(superuser: Client) -> None:
    _insert_huge_dead_letters("default")
    superuser.get(DEAD)  # warm: imports, templates, the jobs modules the filters list
    tracemalloc.start()
    started = time.perf_counter()
    try:
        response = superuser.get(DEAD)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    page = html(response)
    assert response.status_code == 200
    assert page.count('<td class="field-last_error">') == ROWS
    assert "HugeError: password=********" in page and "Zk83hQ0pLw" not in page
    assert "m" * 100 not in page and "t" * 100 not in page
    assert len(page) < 500_000
    print(f"\n50 huge dead letters: {elapsed:.2f} s, peak {peak / 1024 / 1024:.1f} MiB traced")
    assert peak < PEAK_LIMIT, f"peak {peak / 1024 / 1024:.1f} MiB"
    assert elapsed < SECONDS_LIMIT, f"{elapsed:.1f} s"


@pytest.mark.django_db(databases=["default"])
def test_fifty_huge_jobs_list_in_bounded_memory(superuser: Client) -> None:
    blob = "repeat('r', 3000000)"
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
                max_attempts, scheduled_at, created_at, finished_at, result, errors,
                worker_losses)
            SELECT gen_random_uuid(), 'tests.huge', '{{"n": 1}}'::jsonb, 'default', 100, 'done',
                   2, 4, now(), now() - row * interval '1 second', now(),
                   jsonb_build_object('blob', {blob}),
                   jsonb_build_array(jsonb_build_object('message', {blob})), 0
            FROM generate_series(1, 50) row
            """
        )
    superuser.get(JOBS)
    tracemalloc.start()
    try:
        response = superuser.get(JOBS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert html(response).count('<td class="field-args_preview">') == 50
    assert peak < PEAK_LIMIT, f"peak {peak / 1024 / 1024:.1f} MiB"
