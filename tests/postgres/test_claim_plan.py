"""The claim query stays an index scan when soniq_jobs also holds many finished jobs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from soniq.backends.base import Statement
from soniq.backends.postgres.worker_statements import claim_jobs
from tests.helpers import conninfo

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED_ROWS = 200_000


def _fill(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        """
        INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
            max_attempts, scheduled_at, created_at, finished_at, errors, worker_losses)
        SELECT gen_random_uuid(), 'tests.send_email', '{}', 'q' || (n %% 5), 100,
               CASE WHEN n %% 2 = 0 THEN 'done' ELSE 'cancelled' END, 1, 4,
               now(), now(), now(), '[]', 0
        FROM generate_series(1, %s) AS n
        """,
        (FINISHED_ROWS,),
    )
    conn.execute(
        """
        INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
            max_attempts, scheduled_at, created_at, errors, worker_losses)
        SELECT gen_random_uuid(), 'tests.send_email', '{}', 'q' || (n %% 5), n %% 7 + 1, 'queued',
               0, 4, now(), now(), '[]', 0
        FROM generate_series(1, %s) AS n
        """,
        (100,),
    )
    conn.execute("ANALYZE soniq_jobs")


def _claim(queues: list[str] | None, limit: int = 10) -> Statement:
    return claim_jobs(
        worker_id=str(uuid.uuid4()),
        task_names=["tests.send_email"],
        queues=queues,
        limit=limit,
        now=datetime.now(UTC),
    )


def _plan(conn: psycopg.Connection[Any], queues: list[str] | None) -> dict[str, Any]:
    statement = _claim(queues)
    # psycopg binds parameters server-side; EXPLAIN needs them as literals.
    sql = psycopg.ClientCursor(conn).mogrify(statement.sql, statement.params)
    [[plan]] = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = []
    if "Scan" in node["Node Type"] and node.get("Relation Name") == "soniq_jobs":
        index = node.get("Index Name")
        if node["Node Type"] == "Bitmap Heap Scan":  # the index is its child's
            index = next((child.get("Index Name") for child in node.get("Plans", [])), None)
        found.append((node["Node Type"], index))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


CLAIM_INDEXES = {"soniq_jobs_claim_idx", "soniq_jobs_claim_queue_idx"}


@pytest.mark.parametrize("queues", [None, ["q1", "q2"]])
def test_claim_uses_the_partial_index(queues: list[str] | None) -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        _fill(conn)
        plan = _plan(conn, queues)
    scans = _scans(plan)
    assert ("Seq Scan", None) not in scans, json.dumps(plan, indent=1)
    # The candidates come from a partial claim index (the only other scan is the pkey lookup
    # of the UPDATE), so the 200,000 finished rows are never read.
    assert {name for _, name in scans} - {"soniq_jobs_pkey"} <= CLAIM_INDEXES, scans
    assert {name for _, name in scans} & CLAIM_INDEXES, scans


def test_claim_takes_due_jobs_in_priority_order() -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        _fill(conn)
        statement = _claim(["q1"], limit=5)
        rows = conn.execute(statement.sql, statement.params).fetchall()
        remaining = conn.execute(
            "SELECT count(*) FROM soniq_jobs WHERE status = 'queued' AND queue = 'q1'"
        ).fetchone()
    assert len(rows) == 5
    assert [row[4] for row in rows] == sorted(row[4] for row in rows)
    assert {row[3] for row in rows} == {"q1"}
    assert all(row[5] == 1 for row in rows)
    assert remaining == (15,)


def test_the_generic_claim_plan_reads_claimed_rows_by_primary_key() -> None:
    """The claim is a prepared statement: after a few runs PostgreSQL may keep a generic plan,
    made without knowing its LIMIT. With statistics taken while thousands of jobs were queued
    (a worker's start-up ANALYZE before a drain) that plan must still fetch the claimed rows by
    primary key, never scan the table to join them."""
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        # No autovacuum on the 20,000 dead rows this leaves: it would analyze the table
        # while later tests plan their statements on statistics of their own.
        conn.execute("ALTER TABLE soniq_jobs SET (autovacuum_enabled = off)")
        try:
            plan = _generic_claim_plan(conn)
        finally:
            conn.execute("TRUNCATE soniq_jobs")
            conn.execute("ALTER TABLE soniq_jobs RESET (autovacuum_enabled)")
    scans = _scans(plan[0]["Plan"])
    assert ("Seq Scan", None) not in scans, json.dumps(plan, indent=1)
    assert {name for _, name in scans} <= CLAIM_INDEXES | {"soniq_jobs_pkey"}, scans


def _generic_claim_plan(conn: psycopg.Connection[Any]) -> Any:
    """EXPLAIN of the claim's generic plan after statistics taken with 20,000 jobs queued
    and all of them finished since."""
    conn.execute("TRUNCATE soniq_jobs")
    conn.execute(
        """
        INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
            max_attempts, scheduled_at, created_at, errors, worker_losses)
        SELECT gen_random_uuid(), 'tests.send_email', '{}', 'default', 100, 'queued', 0,
               4, now(), now(), '[]', 0
        FROM generate_series(1, 20000)
        """
    )
    conn.execute("ANALYZE soniq_jobs")
    conn.execute("UPDATE soniq_jobs SET status = 'done', attempts = 1, finished_at = now()")
    statement = _claim(None)
    parts = statement.sql.split("%s")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
    literals = psycopg.ClientCursor(conn).mogrify(
        "(" + ", ".join(["%s"] * len(statement.params)) + ")", statement.params
    )
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE generic_claim AS {numbered}")
        [[plan]] = conn.execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE generic_claim {literals}"
        ).fetchall()
        conn.execute("DEALLOCATE generic_claim")
    return plan


def test_the_lock_condition_does_not_inflate_the_claim_s_estimate() -> None:
    """A worker whose tasks have no job, before a backlog of another task's: the planner
    expects to scan the whole backlog. The lock condition must not multiply that estimate
    (a correlated subquery per row did, 60 to 300 times): past jit_above_cost (100,000 by
    default) every claim would be compiled before it runs, about 400 ms each."""
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts,
                max_attempts, scheduled_at, created_at, errors, worker_losses)
            SELECT gen_random_uuid(), 'tests.other', '{}', 'default', 100, 'queued', 0, 4,
                   now(), now(), '[]', 0
            FROM generate_series(1, 100000)
            """
        )
        conn.execute("ANALYZE soniq_jobs")
        statement = claim_jobs(
            worker_id=str(uuid.uuid4()),
            task_names=["tests.send_email"],
            queues=None,
            limit=1000,
            now=datetime.now(UTC),
        )
        sql = psycopg.ClientCursor(conn).mogrify(statement.sql, statement.params)
        [[plan]] = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
    cost = plan[0]["Plan"]["Total Cost"]
    assert cost < 100_000 / 4, f"estimated at {cost}"
