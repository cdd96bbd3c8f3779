"""The claim query stays an index scan when soniq_jobs also holds many finished jobs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

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


def _plan(conn: psycopg.Connection[Any], queues: list[str] | None) -> dict[str, Any]:
    statement = claim_jobs(
        worker_id=str(uuid.uuid4()),
        task_names=["tests.send_email"],
        queues=queues,
        limit=10,
        now=datetime.now(UTC),
    )
    # psycopg binds parameters server-side; EXPLAIN needs them as literals.
    sql = psycopg.ClientCursor(conn).mogrify(statement.sql, statement.params)
    [[plan]] = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = []
    if "Scan" in node["Node Type"] and node.get("Relation Name") == "soniq_jobs":
        found.append((node["Node Type"], node.get("Index Name")))
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
        statement = claim_jobs(
            worker_id=str(uuid.uuid4()),
            task_names=["tests.send_email"],
            queues=["q1"],
            limit=5,
            now=datetime.now(UTC),
        )
        rows = conn.execute(statement.sql, statement.params).fetchall()
        remaining = conn.execute(
            "SELECT count(*) FROM soniq_jobs WHERE status = 'queued' AND queue = 'q1'"
        ).fetchone()
    assert len(rows) == 5
    assert [row[4] for row in rows] == sorted(row[4] for row in rows)
    assert {row[3] for row in rows} == {"q1"}
    assert all(row[5] == 1 for row in rows)
    assert remaining == (15,)
