"""app.scheduler and the catch-up policies after downtime, on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import pytest_asyncio

from soniq import JobDefinitionError, Soniq
from tests.helpers import conninfo, query_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Soniq]:
    application = Soniq(database_url=conninfo())

    @application.job(name="sched.report")
    async def report(region: str = "EU") -> str:
        return region

    @application.periodic(every=timedelta(minutes=1), name="sched.code")
    async def from_code() -> None:
        return None

    yield application
    await application.close()


def _set_next_fire(name: str, moment: datetime) -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute("UPDATE soniq_schedules SET next_fire_at = %s WHERE name = %s", (moment, name))


def _jobs(task: str = "sched.report") -> list[tuple[object, ...]]:
    return query_elsewhere(
        "default",
        "SELECT scheduled_at, args FROM soniq_jobs WHERE task_name = %s ORDER BY scheduled_at",
        (task,),
    )


@pytest.mark.asyncio
async def test_add_get_list_update_in_place(app: Soniq) -> None:
    added = await app.scheduler.add("sched.report", cron="0 9 * * *", args={"region": "US"})
    assert added.name == "sched.report" and added.status == "active"
    assert added.next_fire_at is not None and added.next_fire_at > datetime.now(UTC)
    again = await app.scheduler.add(
        "sched.report", cron="0 10 * * *", args={"region": "APAC"}, queue="reports", priority=10
    )
    assert again.definition.cron == "0 10 * * *"
    assert again.definition.args == {"region": "APAC"}
    assert [s.name for s in await app.scheduler.list()] == ["sched.report"]
    assert await app.scheduler.get("missing") is None
    with pytest.raises(JobDefinitionError, match="exactly one"):
        await app.scheduler.add("sched.report")
    with pytest.raises(ValueError, match="status"):
        await app.scheduler.list(status="sleeping")


@pytest.mark.asyncio
async def test_pause_resume_remove(app: Soniq) -> None:
    await app.scheduler.add("sched.report", every=60)
    await app.scheduler.pause("sched.report")
    assert [s.name for s in await app.scheduler.list(status="paused")] == ["sched.report"]
    _set_next_fire("sched.report", datetime.now(UTC) - timedelta(minutes=5))
    assert await app.make_scheduler().tick() == []  # paused: nothing fires
    await app.scheduler.resume("sched.report")
    resumed = await app.scheduler.get("sched.report")
    assert resumed is not None and resumed.next_fire_at is not None
    assert resumed.next_fire_at > datetime.now(UTC)  # the paused period is not caught up
    await app.scheduler.remove("sched.report")
    assert await app.scheduler.get("sched.report") is None
    with pytest.raises(LookupError):
        await app.scheduler.pause("sched.report")


@pytest.mark.asyncio
@pytest.mark.parametrize(("policy", "expected"), [("latest", 1), ("skip", 0), ("all", 2)])
async def test_catch_up_after_downtime(app: Soniq, policy: str, expected: int) -> None:
    await app.scheduler.add(
        "sched.report", every=120, catch_up=policy, catch_up_window=300, args={"region": "EU"}
    )
    # The scheduler was away for ten minutes: slots fell 9:30, 7:30, 5:30, 3:30 and 1:30 ago
    # (the last one 90 s late, beyond the on-time grace of 60 s).
    now = datetime.now(UTC)
    _set_next_fire("sched.report", now - timedelta(minutes=10) + timedelta(seconds=30))
    fired = await app.make_scheduler().tick()
    assert len(fired) == expected
    assert len(_jobs()) == expected
    stored = await app.scheduler.get("sched.report")
    assert stored is not None and stored.next_fire_at is not None
    # Never pushed into the future beyond the next slot, and never left in the past.
    assert now < stored.next_fire_at <= now + timedelta(seconds=120)
    assert await app.make_scheduler().tick() == []  # nothing fires twice


@pytest.mark.asyncio
async def test_code_schedules_sync_keeps_a_pause_and_a_due_slot(app: Soniq) -> None:
    scheduler = app.make_scheduler()
    await scheduler.sync()
    await app.scheduler.pause("sched.code")
    await scheduler.sync()  # a restart re-syncs the code schedules
    stored = await app.scheduler.get("sched.code")
    assert stored is not None and stored.status == "paused" and stored.source == "code"
    await app.scheduler.resume("sched.code")
    due = datetime.now(UTC) - timedelta(seconds=5)
    _set_next_fire("sched.code", due)
    await scheduler.sync()  # must not push the due slot into the future
    stored = await app.scheduler.get("sched.code")
    assert stored is not None and stored.next_fire_at == due
    fired = await scheduler.tick()
    assert [(name, slot) for name, slot, _ in fired] == [("sched.code", due)]
    [(scheduled_at, _)] = _jobs("sched.code")
    assert scheduled_at == due


@pytest.mark.asyncio
async def test_bad_args_are_refused_when_added(app: Soniq) -> None:
    from soniq import InvalidArgumentsError

    with pytest.raises(InvalidArgumentsError, match="not a parameter"):
        await app.scheduler.add("sched.report", every=60, args={"regoin": "EU"})
    assert await app.scheduler.get("sched.report") is None


@pytest.mark.asyncio
async def test_a_broken_schedule_does_not_block_the_others(app: Soniq) -> None:
    await app.scheduler.add("sched.report", every=60)
    await app.scheduler.add("elsewhere.job", name="broken", every=60)
    strict = Soniq(database_url=conninfo(), strict_enqueue=True)
    strict.registry.register(app.registry.get("sched.report"))  # type: ignore[arg-type]
    due = datetime.now(UTC) - timedelta(seconds=1)
    _set_next_fire("sched.report", due)
    _set_next_fire("broken", due)
    try:
        # "elsewhere.job" is unknown to a strict app: that schedule cannot fire.
        fired = await strict.make_scheduler().tick()
    finally:
        await strict.close()
    assert [name for name, _, _ in fired] == ["sched.report"]
    broken = await app.scheduler.get("broken")
    assert broken is not None and broken.next_fire_at == due  # still due, retried next tick


@pytest.mark.asyncio
async def test_run_now_enqueues_one_job_and_keeps_the_timing(app: Soniq) -> None:
    added = await app.scheduler.add("sched.report", cron="0 9 * * *", args={"region": "US"})
    job_id = await app.scheduler.run_now("sched.report")
    job = await app.get_job(job_id)
    assert job is not None and job.args == {"region": "US"}
    [(_, args)] = _jobs()
    assert args == {"region": "US"}
    stored = await app.scheduler.get("sched.report")
    assert stored is not None and stored.next_fire_at == added.next_fire_at
    assert stored.last_fired_at is None
    with pytest.raises(LookupError, match="no schedule"):
        await app.scheduler.run_now("missing")


@pytest.mark.asyncio
async def test_resume_leaves_an_active_schedules_due_slot(app: Soniq) -> None:
    await app.scheduler.add("sched.report", every=60)
    due = datetime.now(UTC) - timedelta(seconds=30)
    _set_next_fire("sched.report", due)
    await app.scheduler.resume("sched.report")
    stored = await app.scheduler.get("sched.report")
    assert stored is not None and stored.next_fire_at == due
