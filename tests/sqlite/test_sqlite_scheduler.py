"""What is SQLite's own in the scheduler: a tick is one ``BEGIN IMMEDIATE`` transaction that
waits at most its lease for the write lock, and stops firing after half of it. (The
scheduler's behaviour on both backends is in tests/postgres/test_scheduler.py.)"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from django.db import connections

from soniq import ConfigurationError, Soniq
from soniq.backends.base import SchedulerBackend
from soniq.backends.sqlite import SQLiteBackend
from soniq.backends.sqlite.statements import format_time

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)


def _path() -> str:
    return str(connections["sqlite"].settings_dict["NAME"])


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Soniq]:
    application = Soniq(database_url=f"sqlite:///{_path()}")

    @application.job(name="sqlite.tick")
    async def tick() -> None:
        return None

    yield application
    await application.close()


def _set_next_fire(name: str, moment: datetime) -> None:
    with closing(sqlite3.connect(_path(), isolation_level=None)) as conn:
        conn.execute(
            "UPDATE soniq_schedules SET next_fire_at = ? WHERE name = ?",
            (format_time(moment), name),
        )


@pytest.mark.asyncio
async def test_the_sqlite_backend_stores_schedules(app: Soniq) -> None:
    backend = app.scheduler.backend()
    assert isinstance(backend, SQLiteBackend)
    assert isinstance(backend, SchedulerBackend)


def test_the_memory_backend_still_says_which_databases_do() -> None:
    with pytest.raises(ConfigurationError, match="use PostgreSQL or SQLite"):
        Soniq(database_url="memory://").scheduler.backend()


@pytest.mark.asyncio
async def test_a_tick_waits_at_most_its_lease_for_the_write_lock(app: Soniq) -> None:
    await app.scheduler.add("sqlite.tick", every=60)
    due = datetime.now(UTC) - timedelta(seconds=1)
    _set_next_fire("sqlite.tick", due)
    backend = app.scheduler.backend()
    with closing(sqlite3.connect(_path(), isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")  # another process mid-write, holding the lock
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="write lock"):
            await backend.fire_due_schedules(datetime.now(UTC), app.make_scheduled_job, lease=0.3)
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert 0.25 <= waited < 5
    # The connection's own busy timeout is back; the slot is still due, and fires now.
    assert isinstance(backend, SQLiteBackend)
    assert (
        backend._run_sync(lambda: backend._conn().execute("PRAGMA busy_timeout").fetchone())[0]
        == 30_000
    )
    fired = await app.make_scheduler().tick()
    assert [(name, slot) for name, slot, _ in fired] == [("sqlite.tick", due)]


@pytest.mark.asyncio
async def test_a_scheduler_loop_retries_after_a_locked_tick(app: Soniq) -> None:
    await app.scheduler.add("sqlite.tick", every=60)
    due = datetime.now(UTC) - timedelta(seconds=1)
    _set_next_fire("sqlite.tick", due)
    scheduler = app.make_scheduler(tick=0.1)
    scheduler.lease = 0.2
    scheduler.error_retry_delay = 0.2
    with closing(sqlite3.connect(_path(), isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        running = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.8)  # a few ticks time out meanwhile
        holder.execute("ROLLBACK")
    try:
        for _ in range(100):
            stored = await app.scheduler.get("sqlite.tick")
            assert stored is not None
            if stored.last_fired_at is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        scheduler.stop()
        await asyncio.wait_for(running, 10)
    assert stored is not None and stored.last_fired_at == due


@pytest.mark.asyncio
async def test_a_long_catch_up_is_spread_over_ticks(app: Soniq) -> None:
    """Past half its lease a tick commits what it fired; the rest stays due, in order."""
    await app.scheduler.add("sqlite.tick", every=1, catch_up="all", catch_up_window=3600)
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    _set_next_fire("sqlite.tick", first)
    backend = app.scheduler.backend()
    now = first + timedelta(seconds=4, milliseconds=500)  # slots first .. first + 4s
    slots = []
    for _ in range(5):
        fired = await backend.fire_due_schedules(now, app.make_scheduled_job, lease=1e-6)
        assert len(fired) == 1  # one slot, then out of time
        slots.append(fired[0][1])
    assert slots == [first + timedelta(seconds=n) for n in range(5)]
    assert await backend.fire_due_schedules(now, app.make_scheduled_job, lease=1e-6) == []
