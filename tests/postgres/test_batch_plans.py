"""Batch statements keep plans that grow with the batch, not with the table, under generic plans.

psycopg prepares a statement once it has run a few times, and after five executions PostgreSQL
may switch it to a *generic plan*: made without the parameters' values (an array's length is
unknown) and from whatever statistics the table had, perhaps taken when no job was in the state
the statement looks for. Such a plan can read a whole partial index, or rescan an ``unnest()``
once per row, and check every row against the batch's ids: rows x ids work, seconds for a batch
that takes milliseconds from the primary key.

The helpers at the top run any :class:`soniq.backends.base.Statement` as a generic plan
(``run_generic``) and bound the plan's shape, the rows each node touched (``assert_batch_plan``),
never its time: timings are flaky on a busy machine, shapes are not. The operator statements
follow; worker statements (claims, completions) can be added below them the same way.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from soniq.backends.base import Statement
from soniq.backends.postgres import worker_statements as ws
from soniq.backends.postgres.operator_statements import PostgresOperatorStatements
from tests.helpers import conninfo

pytestmark = pytest.mark.django_db(transaction=True)

Plan = dict[str, Any]

# --- Running a statement as a generic plan ------------------------------------------------------


def prepared_sql(sql: str) -> str:
    """``sql`` with psycopg's ``%s`` placeholders numbered as PREPARE wants them (``$1``, ...)."""
    number = itertools.count(1)
    return re.sub(r"%%|%s", lambda m: "%" if m[0] == "%%" else f"${next(number)}", sql)


def run_generic(
    conn: psycopg.Connection[Any],
    statement: Statement,
    types: Sequence[str] | None = None,
    plan_cache_mode: str = "force_generic_plan",
) -> Plan:
    """EXPLAIN ANALYZE ``statement`` executed through its generic plan; return the plan (the
    object of ``EXPLAIN (FORMAT JSON)``: ``"Plan"``, ``"Execution Time"``, ...).

    The statement is PREPAREd and EXECUTEd under ``plan_cache_mode = force_generic_plan`` (or
    the ``plan_cache_mode`` given: ``force_custom_plan`` is what the first five executions of
    a prepared statement get, planned with the actual values), in a
    transaction rolled back afterwards: what it changes is undone (its NOTIFY never sent), so
    one set of rows serves several statements. ``conn`` must be in autocommit mode. Parameter
    types are inferred from the statement's casts (``%s::uuid[]``); give ``types`` (one SQL type
    per parameter) for a statement whose parameters have none.
    """
    assert conn.autocommit, "run_generic needs an autocommit connection"
    name = f"soniq_plan_{uuid.uuid4().hex}"
    signature = f"({', '.join(types)})" if types else ""
    arguments = ""
    if statement.params:
        placeholders = ", ".join(["%s"] * len(statement.params))
        arguments = f"({psycopg.ClientCursor(conn).mogrify(placeholders, statement.params)})"
    conn.execute(f"PREPARE {name}{signature} AS {prepared_sql(statement.sql)}")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
            [[result]] = conn.execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}{arguments}"
            ).fetchall()
            [[generic]] = conn.execute(
                "SELECT generic_plans FROM pg_prepared_statements WHERE name = %s", (name,)
            ).fetchall()
            expected = 1 if plan_cache_mode == "force_generic_plan" else 0
            assert generic == expected, f"the statement did not run as {plan_cache_mode}"
    finally:
        conn.execute(f"DEALLOCATE {name}")
    return result[0]  # type: ignore[no-any-return]


# --- Bounding a plan's shape --------------------------------------------------------------------


def plan_nodes(node: Plan) -> Iterator[Plan]:
    """Every node of a plan (the object ``run_generic`` returns, or one of its nodes)."""
    node = node.get("Plan", node)
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


_REMOVED = (
    "Rows Removed by Filter",
    "Rows Removed by Join Filter",
    "Rows Removed by Index Recheck",
)


def rows_touched(node: Plan) -> float:
    """The rows a node produced or threw away, over all its loops (EXPLAIN gives per-loop
    averages)."""
    per_loop = node.get("Actual Rows", 0) + sum(node.get(key, 0) for key in _REMOVED)
    return float(per_loop * node.get("Actual Loops", 0))


def describe(node: Plan) -> str:
    """One line for a plan node: its type, relation or index, loops and rows."""
    where = " ".join(
        f"{word} {node[key]}"
        for word, key in (("using", "Index Name"), ("on", "Relation Name"), ("of", "Function Name"))
        if key in node
    )
    removed = sum(node.get(key, 0) for key in _REMOVED)
    return (
        f"{node['Node Type']} {where}: loops={node.get('Actual Loops')} "
        f"rows={node.get('Actual Rows')} removed={removed}"
    )


def assert_batch_plan(plan: Plan, batch_size: int, rows_per_id: float = 4) -> None:
    """Fail unless every node of ``plan`` touched at most ``rows_per_id`` rows per id of the
    batch, and no set-returning function (the ``unnest()`` of the ids) was scanned twice.

    That is the shape of a plan driven by the batch: each id looked up in a primary key or a
    hash. A partial index or a table read whole, or the ids scanned again for each row, touch
    rows x ids, far over the bound when the table holds many more rows than the batch.
    """
    bound = rows_per_id * batch_size
    faults = [
        describe(node)
        for node in plan_nodes(plan)
        if rows_touched(node) > bound
        or (node["Node Type"] == "Function Scan" and node.get("Actual Loops", 0) > 1)
    ]
    assert not faults, (
        f"nodes touching more than {bound:g} rows, or rescanning a function, for a batch of "
        f"{batch_size}:\n  " + "\n  ".join(faults) + "\n" + json.dumps(plan, indent=1)
    )


def returned_rows(plan: Plan) -> int:
    """How many rows the statement returned (its top node's)."""
    return int(plan["Plan"]["Actual Rows"])


# --- Rows for the statements --------------------------------------------------------------------

BATCH = 1000
# Many more rows than the batch in each state, so that reading one state whole breaks the bound.
QUEUED_JOBS = 20_000
DONE_JOBS = 20_000
DEAD_LETTERS = 4 * BATCH

_INSERT_JOBS = """
INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, max_attempts,
                        scheduled_at, created_at, finished_at, errors, dedup_key, worker_losses)
SELECT gen_random_uuid(), 'tests.batch', '{}', 'q' || (n %% 5), 100, %(status)s::text, 0, 4,
       now(), now(), CASE WHEN %(status)s::text IN ('done', 'cancelled') THEN now() END, '[]',
       %(prefix)s::text || (n / 2), 0
FROM generate_series(1, %(count)s) AS n
"""
_INSERT_DEAD_LETTERS = """
INSERT INTO soniq_dead_letter_jobs (id, task_name, args, queue, priority, attempts,
    max_attempts, scheduled_at, created_at, dead_lettered_at, errors, reason, dedup_key)
SELECT gen_random_uuid(), 'tests.batch', '{}', 'default', 100, 4, 4, now(), now(), now(), '[]',
       'max_attempts', %(prefix)s::text || (n / 2)
FROM generate_series(1, %(count)s) AS n
"""


def insert_jobs(
    conn: psycopg.Connection[Any], status: str, count: int, key_prefix: str | None = None
) -> None:
    """``count`` jobs in ``status``. With ``key_prefix``, dedup keys shared by pairs of jobs
    (twins: only for states that are not live); without, no key."""
    conn.execute(_INSERT_JOBS, {"status": status, "count": count, "prefix": key_prefix})


def insert_dead_letters(
    conn: psycopg.Connection[Any], count: int, key_prefix: str | None = None
) -> None:
    """``count`` dead letters; with ``key_prefix``, dedup keys shared by pairs of them."""
    conn.execute(_INSERT_DEAD_LETTERS, {"count": count, "prefix": key_prefix})


def pick_ids(conn: psycopg.Connection[Any], sql: str, count: int) -> list[str]:
    """``count`` ids from ``sql`` (a query of one id column), at random."""
    rows = conn.execute(f"SELECT id::text FROM ({sql}) AS s ORDER BY random() LIMIT %s", (count,))
    return [row[0] for row in rows]


_TABLES = ("soniq_jobs", "soniq_dead_letter_jobs")


@pytest.fixture(params=[1, 10], ids=lambda n: f"analyzed-with-{n}-finished")
def stale_stats(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection on tables whose statistics say no job is queued or cancelled
    and hardly any exists: ANALYZE ran when they held 1 (or 10) finished jobs and as many dead
    letters, before the rows the test adds; each misled the planner into other rows x ids plans.
    (Not on empty tables: ANALYZE of an empty table keeps the column statistics it had, from
    the tests before.) Autovacuum is off on the tables meanwhile, so the statistics stay."""
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        for table in _TABLES:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        try:
            insert_jobs(conn, "done", request.param)
            insert_dead_letters(conn, request.param)
            for table in _TABLES:
                conn.execute(f"ANALYZE {table}")
            yield conn
        finally:
            for table in _TABLES:
                conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


@pytest.fixture
def jobs(stale_stats: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Stale statistics, then many queued and finished jobs, and cancelled twins (pairs sharing
    a dedup key that no live job holds)."""
    insert_jobs(stale_stats, "queued", QUEUED_JOBS)
    insert_jobs(stale_stats, "done", DONE_JOBS)
    insert_jobs(stale_stats, "cancelled", BATCH, key_prefix="twin-")
    return stale_stats


@pytest.fixture
def dead_letters(stale_stats: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Stale statistics, then many dead letters in pairs sharing a dedup key, and many jobs."""
    insert_dead_letters(stale_stats, DEAD_LETTERS, key_prefix="twin-")
    insert_jobs(stale_stats, "queued", QUEUED_JOBS)
    return stale_stats


QUEUED = "SELECT id FROM soniq_jobs WHERE status = 'queued'"
CANCELLED = "SELECT id FROM soniq_jobs WHERE status = 'cancelled'"
DEAD = "SELECT id FROM soniq_dead_letter_jobs"
OPERATOR = PostgresOperatorStatements()

# --- Operator statements ------------------------------------------------------------------------


def planner_inputs(conn: psycopg.Connection[Any]) -> str:
    """What the planner knew of soniq_jobs: its and its indexes' sizes and row counts as
    recorded, their sizes now, and the statistics of ``status``."""
    sizes = conn.execute(
        "SELECT relname, relpages, reltuples, pg_relation_size(oid) / 8192 FROM pg_class "
        "WHERE oid = 'soniq_jobs'::regclass OR oid IN (SELECT indexrelid FROM pg_index "
        "WHERE indrelid = 'soniq_jobs'::regclass) ORDER BY relname"
    ).fetchall()
    status = conn.execute(
        "SELECT null_frac, n_distinct, most_common_vals::text, most_common_freqs::text "
        "FROM pg_stats WHERE tablename = 'soniq_jobs' AND attname = 'status'"
    ).fetchall()
    return f"(relname, relpages, reltuples, pages now): {sizes}; status stats: {status}"


def test_cancel(jobs: psycopg.Connection[Any]) -> None:
    ids = pick_ids(jobs, QUEUED, BATCH)
    plan = run_generic(jobs, OPERATOR.cancel_jobs(ids))
    assert returned_rows(plan) == BATCH
    try:
        assert_batch_plan(plan, BATCH)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nplanner inputs: {planner_inputs(jobs)}") from None


def test_retry(jobs: psycopg.Connection[Any]) -> None:
    # Half queued (made due now), half cancelled, among them both twins of some pairs: every
    # cancelled id goes back to the queue, except the larger id of each pair.
    cancelled = jobs.execute(
        "SELECT id::text FROM soniq_jobs WHERE status = 'cancelled' ORDER BY id LIMIT %s",
        (BATCH // 2,),
    ).fetchall()
    ids = pick_ids(jobs, QUEUED, BATCH // 2) + [row[0] for row in cancelled]
    [[first_of_key]] = jobs.execute(
        """SELECT count(DISTINCT dedup_key) FROM soniq_jobs
        WHERE id = ANY(%s::uuid[]) AND status = 'cancelled'""",
        (ids,),
    ).fetchall()
    plan = run_generic(jobs, OPERATOR.retry_jobs(ids))
    assert first_of_key < BATCH // 2  # twins are in the batch
    assert returned_rows(plan) == BATCH // 2 + first_of_key
    assert_batch_plan(plan, BATCH)


def test_requeue_dead_letters(dead_letters: psycopg.Connection[Any]) -> None:
    ids = pick_ids(dead_letters, DEAD, BATCH)
    [[first_of_key]] = dead_letters.execute(
        """SELECT count(DISTINCT coalesce(dedup_key, id::text)) FROM soniq_dead_letter_jobs
        WHERE id = ANY(%s::uuid[])""",
        (ids,),
    ).fetchall()
    [statement, *rest] = OPERATOR.requeue_dead_letters(ids)
    plan = run_generic(dead_letters, statement)
    assert first_of_key < BATCH
    assert returned_rows(plan) == first_of_key
    assert_batch_plan(plan, BATCH)
    for more in rest:
        assert_batch_plan(run_generic(dead_letters, more), BATCH)


def test_delete_dead_letters(dead_letters: psycopg.Connection[Any]) -> None:
    ids = pick_ids(dead_letters, DEAD, BATCH)
    plan = run_generic(dead_letters, OPERATOR.delete_dead_letters(ids))
    assert returned_rows(plan) == BATCH
    assert_batch_plan(plan, BATCH)


def test_job_states(jobs: psycopg.Connection[Any]) -> None:
    insert_dead_letters(jobs, DEAD_LETTERS)
    ids = (
        pick_ids(jobs, QUEUED, BATCH // 4)
        + pick_ids(jobs, CANCELLED, BATCH // 4)
        + pick_ids(jobs, DEAD, BATCH // 2)
    )
    plan = run_generic(jobs, OPERATOR.job_states(ids))
    assert returned_rows(plan) == BATCH
    assert_batch_plan(plan, BATCH)


# --- Worker statements --------------------------------------------------------------------------

WORKER = "00000000-0000-4000-8000-00000000beef"

# The worker's statements run thousands of times a minute: both kinds of plan a prepared
# statement gets are checked, custom ones (its first five executions, planned with the actual
# ids) and the generic one. Planned with the actual ids, a join with unnest() chose a
# sequential scan of the table as the outer side of a nested loop (the worker id matching no
# row, by the statistics), and rescanned the ids for each row.
PLAN_MODES = pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])


@pytest.fixture
def held(jobs: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    """``(id, attempt)`` of BATCH jobs one worker holds (half of them started), among many
    queued and finished ones; the statistics say no job is processing."""
    ids = pick_ids(jobs, QUEUED, BATCH)
    jobs.execute(
        """UPDATE soniq_jobs SET status = 'processing', worker_id = %s, attempts = 1,
               claimed_at = now(), started_at = CASE WHEN random() < 0.5 THEN now() END
           WHERE id = ANY(%s::uuid[])""",
        (WORKER, ids),
    )
    return [(job_id, 1) for job_id in ids]


@PLAN_MODES
def test_record_progress_done(
    jobs: psycopg.Connection[Any], held: list[tuple[str, int]], mode: str
) -> None:
    done = [(job_id, attempt, '{"ok": true}') for job_id, attempt in held]
    plan = run_generic(jobs, ws.record_progress(WORKER, done=done), plan_cache_mode=mode)
    assert_batch_plan(plan, BATCH)


@PLAN_MODES
def test_record_progress_started(
    jobs: psycopg.Connection[Any], held: list[tuple[str, int]], mode: str
) -> None:
    plan = run_generic(jobs, ws.record_progress(WORKER, started=held), plan_cache_mode=mode)
    assert_batch_plan(plan, BATCH)


@PLAN_MODES
def test_record_progress_both(
    jobs: psycopg.Connection[Any], held: list[tuple[str, int]], mode: str
) -> None:
    half = BATCH // 2
    done = [(job_id, attempt, None) for job_id, attempt in held[:half]]
    statement = ws.record_progress(WORKER, started=held[half:], done=done)
    assert_batch_plan(run_generic(jobs, statement, plan_cache_mode=mode), BATCH)


@PLAN_MODES
def test_release_jobs(
    jobs: psycopg.Connection[Any], held: list[tuple[str, int]], mode: str
) -> None:
    plan = run_generic(jobs, ws.release_jobs(WORKER, held), plan_cache_mode=mode)
    assert_batch_plan(plan, BATCH)
