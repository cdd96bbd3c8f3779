"""soniq.backends.plans driven by fake executors: the statements a plan yields and what it
makes of the rows it gets back. No database involved."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.rows import JOB_COLUMNS
from soniq.backends.sqlite.statements import ROWS_PER_INSERT, SQLiteDialect
from soniq.core.errors import EnqueueContentionError
from soniq.core.records import NewJob
from soniq.core.status import JobStatus

FIXED_NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

Responder = Callable[[Statement], list[Row]]


def new_job(
    index: int,
    *,
    dedup_key: str | None = None,
    task_name: str = "tests.job",
    lock: str | None = None,
) -> NewJob:
    return NewJob(
        id=uuid.UUID(int=index + 1),
        task_name=task_name,
        args={"i": index},
        args_json=f'{{"i":{index}}}',
        queue="default",
        priority=100,
        max_attempts=4,
        dedup_key=dedup_key,
        lock=lock,
    )


class FakeExecutor:
    """Records every statement; answers with ``respond(statement)``."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.statements: list[Statement] = []

    def __call__(self, statement: Statement) -> list[Row]:
        self.statements.append(statement)
        return self.respond(statement)


class AsyncFakeExecutor(FakeExecutor):
    async def __call__(self, statement: Statement) -> list[Row]:  # type: ignore[override]
        return super().__call__(statement)


def kind(dialect: PostgresDialect | SQLiteDialect, statement: Statement) -> str:
    """Which dialect method produced ``statement``."""
    probe = new_job(0, dedup_key="probe")
    if statement.sql == dialect.insert_job(probe).sql:
        return "insert_job"
    if statement.sql == dialect.find_live_duplicate("t", "k").sql:
        return "find_live_duplicate"
    if statement.sql.lstrip().startswith(("WITH inserted", "INSERT INTO soniq_jobs")):
        return "insert_jobs"
    raise AssertionError(f"unexpected statement {statement.sql[:60]!r}")


def inserted_returns_own_id(dialect: PostgresDialect | SQLiteDialect) -> Responder:
    """The database accepts every insert: a dedup insert returns its own id."""

    def respond(statement: Statement) -> list[Row]:
        if kind(dialect, statement) == "insert_job":
            return [(statement.params[0], "default")]
        return []

    return respond


@pytest.fixture
def pg() -> PostgresDialect:
    return PostgresDialect()


@pytest.fixture
def sqlite() -> SQLiteDialect:
    return SQLiteDialect(clock=lambda: FIXED_NOW)


# -- plain jobs ------------------------------------------------------------------------------


def test_no_jobs_yield_no_statements(pg: PostgresDialect) -> None:
    execute = FakeExecutor(lambda statement: [])
    assert plans.run_sync(plans.insert_jobs(pg, []), execute) == []
    assert execute.statements == []


def test_plain_jobs_go_into_one_postgres_statement(pg: PostgresDialect) -> None:
    jobs = [new_job(i) for i in range(4)] + [new_job(4, task_name="tests.other")]
    execute = FakeExecutor(lambda statement: [("default",)])
    ids = plans.run_sync(plans.insert_jobs(pg, jobs), execute)

    assert ids == [str(job.id) for job in jobs]
    assert len(execute.statements) == 1
    [statement] = execute.statements
    assert kind(pg, statement) == "insert_jobs"
    assert "unnest(" in statement.sql
    id_array, names, args, queues, priorities, max_attempts, scheduled = statement.params
    assert id_array == [str(job.id) for job in jobs]
    assert names == ["tests.job"] * 4 + ["tests.other"]
    assert args == [job.args_json for job in jobs]
    assert queues == ["default"] * 5
    assert priorities == [100] * 5
    assert max_attempts == [4] * 5
    assert scheduled == [None] * 5


def test_jobs_sharing_their_options_send_them_once(pg: PostgresDialect) -> None:
    """What enqueue_many builds: one task, one set of options. Those travel once; the ids as
    one array literal and the arguments as one JSON array (no per-element dumping)."""
    jobs = [new_job(i) for i in range(5)]
    execute = FakeExecutor(lambda statement: [("default",)])
    ids = plans.run_sync(plans.insert_jobs(pg, jobs), execute)

    assert ids == [str(job.id) for job in jobs]
    [statement] = execute.statements
    assert kind(pg, statement) == "insert_jobs"
    assert "ROWS FROM (unnest(" in statement.sql
    name, queue, priority, max_attempts, scheduled, id_literal, args_json, notified = (
        statement.params
    )
    assert (name, queue, priority, max_attempts, scheduled, notified) == (
        "tests.job",
        "default",
        100,
        4,
        None,
        "default",
    )
    assert id_literal == "{" + ",".join(str(job.id) for job in jobs) + "}"
    assert json.loads(args_json) == [job.args for job in jobs]


def test_a_locked_job_is_inserted_alone_with_its_lock(pg: PostgresDialect) -> None:
    """A job with a lock takes its place in its lock's order: a statement of its own, after
    the plain rows' bulk insert, in input order."""
    jobs = [new_job(0), new_job(1, lock="customer:1"), new_job(2), new_job(3, lock="customer:1")]
    execute = FakeExecutor(inserted_returns_own_id(pg))
    ids = plans.run_sync(plans.insert_jobs(pg, jobs), execute)
    assert ids == [str(job.id) for job in jobs]
    assert [kind(pg, s) for s in execute.statements] == ["insert_jobs", "insert_job", "insert_job"]
    _, first, second = execute.statements
    assert (first.params[0], first.params[7:]) == (
        str(jobs[1].id),
        (None, "customer:1", "customer:1"),
    )
    assert second.params[0] == str(jobs[3].id)
    assert "nextval" in first.sql


def test_ids_are_returned_in_input_order_for_mixed_jobs(pg: PostgresDialect) -> None:
    jobs = [
        new_job(0),
        new_job(1, dedup_key="a"),
        new_job(2),
        new_job(3, dedup_key="b"),
        new_job(4),
    ]
    execute = FakeExecutor(inserted_returns_own_id(pg))
    ids = plans.run_sync(plans.insert_jobs(pg, jobs), execute)

    assert ids == [str(job.id) for job in jobs]
    assert [kind(pg, s) for s in execute.statements] == ["insert_jobs", "insert_job", "insert_job"]
    bulk, first_dedup, second_dedup = execute.statements
    assert bulk.params[5] == "{" + ",".join(str(jobs[i].id) for i in (0, 2, 4)) + "}"
    assert first_dedup.params[0] == str(jobs[1].id)
    # The dedup key follows the seven columns of the row (then the lock, twice).
    assert first_dedup.params[7] == "a"
    assert second_dedup.params[0] == str(jobs[3].id)
    assert second_dedup.params[7] == "b"


def test_only_deduplicated_jobs_send_no_bulk_statement(pg: PostgresDialect) -> None:
    jobs = [new_job(0, dedup_key="a"), new_job(1, dedup_key="b")]
    execute = FakeExecutor(inserted_returns_own_id(pg))
    assert plans.run_sync(plans.insert_jobs(pg, jobs), execute) == [str(j.id) for j in jobs]
    assert [kind(pg, s) for s in execute.statements] == ["insert_job", "insert_job"]


# -- deduplication ---------------------------------------------------------------------------


def test_duplicate_falls_back_to_the_live_job_id(pg: PostgresDialect) -> None:
    existing = uuid.uuid4()
    jobs = [new_job(0), new_job(1, dedup_key="key-1"), new_job(2)]

    def respond(statement: Statement) -> list[Row]:
        if kind(pg, statement) == "find_live_duplicate":
            return [(existing,)]
        return []  # the INSERT ... ON CONFLICT DO NOTHING returns no row

    execute = FakeExecutor(respond)
    ids = plans.run_sync(plans.insert_jobs(pg, jobs), execute)

    assert ids == [str(jobs[0].id), str(existing), str(jobs[2].id)]
    assert [kind(pg, s) for s in execute.statements] == [
        "insert_jobs",
        "insert_job",
        "find_live_duplicate",
    ]
    assert execute.statements[-1].params == ("tests.job", "key-1")


def test_duplicate_lookup_accepts_uuid_text_from_the_driver(pg: PostgresDialect) -> None:
    existing = uuid.uuid4()

    def respond(statement: Statement) -> list[Row]:
        return [(existing.hex,)] if kind(pg, statement) == "find_live_duplicate" else []

    ids = plans.run_sync(plans.insert_jobs(pg, [new_job(0, dedup_key="k")]), FakeExecutor(respond))
    assert ids == [str(existing)]


def test_lost_race_retries_the_insert(pg: PostgresDialect) -> None:
    job = new_job(0, dedup_key="k")
    answers: list[list[Row]] = [[], [], [(job.id, "default")]]
    execute = FakeExecutor(lambda statement: answers.pop(0))

    assert plans.run_sync(plans.insert_jobs(pg, [job]), execute) == [str(job.id)]
    assert [kind(pg, s) for s in execute.statements] == [
        "insert_job",
        "find_live_duplicate",
        "insert_job",
    ]


def test_contention_error_after_dedup_rounds(pg: PostgresDialect) -> None:
    execute = FakeExecutor(lambda statement: [])
    job = new_job(0, dedup_key="hot-key", task_name="tests.hot")
    with pytest.raises(EnqueueContentionError, match="'hot-key'") as info:
        plans.run_sync(plans.insert_jobs(pg, [job]), execute)

    assert f"after {plans.DEDUP_ROUNDS} rounds" in str(info.value)
    assert "tests.hot" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert len(execute.statements) == 2 * plans.DEDUP_ROUNDS
    assert [kind(pg, s) for s in execute.statements] == [
        "insert_job",
        "find_live_duplicate",
    ] * plans.DEDUP_ROUNDS


# -- SQLite ----------------------------------------------------------------------------------


def test_sqlite_chunks_1200_jobs_into_3_statements(sqlite: SQLiteDialect) -> None:
    jobs = [new_job(i) for i in range(1200)]
    execute = FakeExecutor(lambda statement: [])
    ids = plans.run_sync(plans.insert_jobs(sqlite, jobs), execute)

    assert ids == [str(job.id) for job in jobs]
    assert len(execute.statements) == 3
    params_per_row = 9
    rows_per_statement = [len(s.params) // params_per_row for s in execute.statements]
    assert rows_per_statement == [ROWS_PER_INSERT, ROWS_PER_INSERT, 200]
    for statement, rows in zip(execute.statements, rows_per_statement, strict=True):
        assert statement.sql.count("%s") == len(statement.params) == rows * params_per_row
    # Every job, in input order, stored as Django stores UUIDs on SQLite (32 hex digits).
    stored_ids = [s.params[i] for s in execute.statements for i in range(0, len(s.params), 9)]
    assert stored_ids == [job.id.hex for job in jobs]


def test_sqlite_rows_use_the_injected_clock(sqlite: SQLiteDialect) -> None:
    execute = FakeExecutor(lambda statement: [])
    plans.run_sync(plans.insert_jobs(sqlite, [new_job(0)]), execute)
    [statement] = execute.statements
    assert statement.params[6] == "2024-06-01 12:00:00.000000"  # scheduled_at: now
    assert statement.params[7] == "2024-06-01 12:00:00.000000"  # created_at


def test_sqlite_duplicate_falls_back_to_the_live_job_id(sqlite: SQLiteDialect) -> None:
    existing = uuid.uuid4()

    def respond(statement: Statement) -> list[Row]:
        if kind(sqlite, statement) == "find_live_duplicate":
            return [(existing.hex,)]
        return []

    execute = FakeExecutor(respond)
    ids = plans.run_sync(plans.insert_jobs(sqlite, [new_job(0, dedup_key="k")]), execute)
    assert ids == [str(existing)]
    assert "ON CONFLICT" in execute.statements[0].sql


# -- async driver ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_run_async_inserts_and_orders_ids_like_run_sync(pg: PostgresDialect) -> None:
    existing = uuid.uuid4()
    jobs = [new_job(0), new_job(1, dedup_key="dup"), new_job(2, dedup_key="new"), new_job(3)]

    def respond(statement: Statement) -> list[Row]:
        what = kind(pg, statement)
        if what == "insert_job":
            return [] if statement.params[7] == "dup" else [(statement.params[0], "default")]
        if what == "find_live_duplicate":
            return [(existing,)]
        return []

    execute = AsyncFakeExecutor(respond)
    ids = await plans.run_async(plans.insert_jobs(pg, jobs), execute)
    assert ids == [str(jobs[0].id), str(existing), str(jobs[2].id), str(jobs[3].id)]
    assert [kind(pg, s) for s in execute.statements] == [
        "insert_jobs",
        "insert_job",
        "find_live_duplicate",
        "insert_job",
    ]

    sync_execute = FakeExecutor(respond)
    assert plans.run_sync(plans.insert_jobs(pg, jobs), sync_execute) == ids
    assert sync_execute.statements == execute.statements


@pytest.mark.asyncio
async def test_run_async_raises_contention_error(pg: PostgresDialect) -> None:
    execute = AsyncFakeExecutor(lambda statement: [])
    with pytest.raises(EnqueueContentionError):
        await plans.run_async(plans.insert_jobs(pg, [new_job(0, dedup_key="k")]), execute)
    assert len(execute.statements) == 2 * plans.DEDUP_ROUNDS


@pytest.mark.asyncio
async def test_run_async_chunks_sqlite_inserts(sqlite: SQLiteDialect) -> None:
    jobs = [new_job(i) for i in range(1200)]
    execute = AsyncFakeExecutor(lambda statement: [])
    assert await plans.run_async(plans.insert_jobs(sqlite, jobs), execute) == [
        str(job.id) for job in jobs
    ]
    assert len(execute.statements) == 3


# -- get_job ---------------------------------------------------------------------------------


def _job_row(job_id: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "id": job_id,
        "task_name": "tests.job",
        "status": "queued",
        "args": '{"i":1}',
        "queue": "default",
        "priority": 100,
        "attempts": 0,
        "max_attempts": 4,
        "scheduled_at": "2024-06-01 12:00:00",
        "created_at": FIXED_NOW,
        "started_at": None,
        "finished_at": None,
        "worker_id": None,
        "result": None,
        "errors": "[]",
        "errors_dropped": 0,
        "dedup_key": None,
        "dead_letter_reason": None,
        "snoozes": 2,
        "abort_requested_at": None,
        "abort_requested_by": None,
        "lock": "customer:1",
    }
    return tuple(values[column] for column in JOB_COLUMNS)


def test_get_job_decodes_the_row(pg: PostgresDialect) -> None:
    job_id = uuid.uuid4()
    execute = FakeExecutor(lambda statement: [_job_row(job_id.hex)])
    info = plans.run_sync(plans.get_job(pg, str(job_id)), execute)
    assert info is not None
    assert info.id == str(job_id)
    assert info.status is JobStatus.QUEUED
    assert info.args == {"i": 1}
    assert info.scheduled_at == FIXED_NOW
    assert info.errors == []
    assert info.lock == "customer:1"
    assert execute.statements[0].params == (str(job_id), str(job_id))


def test_get_job_returns_none_without_a_row(sqlite: SQLiteDialect) -> None:
    job_id = uuid.uuid4()
    execute = FakeExecutor(lambda statement: [])
    assert plans.run_sync(plans.get_job(sqlite, str(job_id)), execute) is None
    assert execute.statements[0].params == (job_id.hex, job_id.hex)
