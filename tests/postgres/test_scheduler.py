"""app.scheduler and the catch-up policies after downtime, on PostgreSQL and on SQLite: the
``app`` fixture runs every test on both (the SQLite one on the "sqlite" test database file)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import pytest_asyncio
from django.db import connections

from soniq import JobDefinitionError, Soniq
from soniq.backends.rows import from_json, to_utc
from tests.helpers import conninfo, query_elsewhere

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)

# The Django alias behind each backend's test database.
ALIASES = {"postgres": "default", "sqlite": "sqlite"}


def database_url(alias: str) -> str:
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{connections[alias].settings_dict['NAME']}"
    return conninfo(alias)


@pytest_asyncio.fixture(params=list(ALIASES))
async def app(request: pytest.FixtureRequest) -> AsyncIterator[Soniq]:
    application = Soniq(database_url=database_url(ALIASES[str(request.param)]))

    @application.job(name="sched.report")
    async def report(region: str = "EU") -> str:
        return region

    @application.periodic(every=timedelta(minutes=1), name="sched.code")
    async def from_code() -> None:
        return None

    yield application
    await application.close()


def _alias(app: Soniq) -> str:
    url = app.settings.database_url or ""
    return "sqlite" if url.startswith("sqlite") else "default"


def _time(app: Soniq, moment: datetime) -> object:
    """``moment`` as the backend stores it (naive UTC text with microseconds on SQLite)."""
    if _alias(app) == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return moment


def _set_next_fire(app: Soniq, name: str, moment: datetime) -> None:
    sql = "UPDATE soniq_schedules SET next_fire_at = %s WHERE name = %s"
    if _alias(app) == "sqlite":
        path = connections["sqlite"].settings_dict["NAME"]
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:  # autocommit
            conn.execute(sql.replace("%s", "?"), (_time(app, moment), name))
        return
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(sql, (moment, name))


def _jobs(app: Soniq, task: str = "sched.report") -> list[tuple[object, ...]]:
    rows = query_elsewhere(
        _alias(app),
        "SELECT scheduled_at, args FROM soniq_jobs WHERE task_name = %s ORDER BY scheduled_at",
        (task,),
    )
    return [(to_utc(scheduled_at), from_json(args)) for scheduled_at, args in rows]


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
    _set_next_fire(app, "sched.report", datetime.now(UTC) - timedelta(minutes=5))
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
    _set_next_fire(app, "sched.report", now - timedelta(minutes=10) + timedelta(seconds=30))
    fired = await app.make_scheduler().tick()
    assert len(fired) == expected
    assert len(_jobs(app)) == expected
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
    _set_next_fire(app, "sched.code", due)
    await scheduler.sync()  # must not push the due slot into the future
    stored = await app.scheduler.get("sched.code")
    assert stored is not None and stored.next_fire_at == due
    fired = await scheduler.tick()
    assert [(name, slot) for name, slot, _ in fired] == [("sched.code", due)]
    [(scheduled_at, _)] = _jobs(app, "sched.code")
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
    strict = Soniq(database_url=app.settings.database_url, strict_enqueue=True)
    strict.registry.register(app.registry.get("sched.report"))  # type: ignore[arg-type]
    due = datetime.now(UTC) - timedelta(seconds=1)
    _set_next_fire(app, "sched.report", due)
    _set_next_fire(app, "broken", due)
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
    [(_, args)] = _jobs(app)
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
    _set_next_fire(app, "sched.report", due)
    await app.scheduler.resume("sched.report")
    stored = await app.scheduler.get("sched.report")
    assert stored is not None and stored.next_fire_at == due


@pytest.mark.asyncio
async def test_two_schedulers_ticking_at_once_fire_each_slot_once(app: Soniq) -> None:
    """Two scheduler processes' worth: separate apps, so separate backends and connections
    (on SQLite, two connections to the file), ticking concurrently over the same due slots."""
    await app.scheduler.add("sched.report", every=1, catch_up="all", catch_up_window=3600)
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(seconds=40)
    _set_next_fire(app, "sched.report", first)
    other = Soniq(database_url=app.settings.database_url)
    other.registry.register(app.registry.get("sched.report"))  # type: ignore[arg-type]
    try:
        schedulers = [app.make_scheduler(), other.make_scheduler()]
        fired: list[tuple[str, datetime, str]] = []
        for _ in range(3):  # the second and third rounds find nothing left to fire
            rounds = await asyncio.gather(*(scheduler.tick() for scheduler in schedulers))
            fired.extend(fire for ticked in rounds for fire in ticked)
    finally:
        await other.close()
    slots = sorted(slot for _, slot, _ in fired)
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert slots[0] == first and len(slots) >= 40
    assert [scheduled_at for scheduled_at, _ in _jobs(app)] == slots
    fires = query_elsewhere(
        _alias(app),
        "SELECT count(*) FROM soniq_schedule_fires WHERE schedule_name = %s",
        ("sched.report",),
    )
    assert fires[0][0] == len(slots)
