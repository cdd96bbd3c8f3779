"""The scheduler's lease on PostgreSQL: a tick's transaction is bounded on the server and on the
client, a hung scheduler loses its locks to another, and ``fired_at`` is the time of the fire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from django.db import connections

from soniq import Soniq
from soniq.backends.base import Statement
from soniq.backends.postgres import PostgresBackend
from soniq.backends.postgres.scheduler_ops import CLIENT_DEADLINE_FACTOR
from soniq.core.periodic import ScheduleDefinition
from soniq.core.records import NewJob
from soniq.core.settings import SoniqSettings
from soniq.scheduler import Scheduler
from tests.helpers import bounded, conninfo, eventually, query_elsewhere
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "lease.report"
LIMITS = (
    "SELECT current_setting('idle_in_transaction_session_timeout'), "
    "current_setting('statement_timeout'), current_setting('lock_timeout'), "
    "current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), "
    "current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')"
)


def _app(**settings: Any) -> Soniq:
    application = Soniq(database_url=conninfo(), **settings)

    @application.job(name=NAME)
    async def report() -> None:
        return None

    return application


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Soniq]:
    application = _app()
    yield application
    await application.close()


def _make_due(name: str, moment: datetime) -> None:
    query_elsewhere(
        "default",
        "UPDATE soniq_schedules SET next_fire_at = %s WHERE name = %s RETURNING name",
        (moment, name),
    )


def _fires(name: str = NAME) -> list[tuple[Any, ...]]:
    return query_elsewhere(
        "default",
        "SELECT fire_time, fired_at FROM soniq_schedule_fires WHERE schedule_name = %s "
        "ORDER BY fire_time",
        (name,),
    )


def _scheduler(application: Soniq, make_job: Any = None, **options: Any) -> Scheduler:
    return Scheduler(
        application.scheduler.backend(),
        [],
        make_job or application.make_scheduled_job,
        **options,
    )


@pytest.mark.asyncio
async def test_fired_at_is_the_time_of_the_fire_not_of_the_transaction(app: Soniq) -> None:
    await app.scheduler.add(NAME, every=60)
    _make_due(NAME, datetime.now(UTC) - timedelta(seconds=1))

    def slow_make_job(definition: ScheduleDefinition, slot: datetime) -> NewJob:
        time.sleep(0.5)  # the tick's transaction began before this
        return app.make_scheduled_job(definition, slot)

    [(_, _, job_id)] = await _scheduler(app, slow_make_job).tick()
    [(created_at, fired_at)] = query_elsewhere(
        "default",
        "SELECT j.created_at, f.fired_at FROM soniq_jobs j "
        "JOIN soniq_schedule_fires f ON f.job_id = j.id WHERE j.id = %s",
        (job_id,),
    )
    # created_at is now(), the start of the transaction; fired_at the moment of the fire.
    assert fired_at - created_at >= timedelta(seconds=0.45), (created_at, fired_at)


@pytest.mark.asyncio
async def test_the_limits_hold_for_the_ticks_transaction_only() -> None:
    settings = SoniqSettings(tcp_keepalives_idle=7, tcp_keepalives_count=4, tcp_user_timeout=9)
    # One connection: what the tick set must be gone when the same connection is used again.
    backend = PostgresBackend(conninfo(), min_size=1, max_size=1, settings=settings)
    try:
        async with backend._tick_transaction(1.5) as fetch:
            [inside] = await fetch(Statement(LIMITS, ()))
        async with backend.acquire() as connection:
            after = await (await connection.execute(LIMITS)).fetchone()
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        await backend.close()
    assert inside == ("1500ms", "1500ms", "750ms", "7", "2", "4", "9000")
    assert after is not None and after[:3] == ("0", "0", "0")
    assert after[3:] != inside[3:]


@pytest.mark.asyncio
async def test_a_statement_beyond_the_lease_is_cancelled_and_the_connection_kept() -> None:
    backend = PostgresBackend(conninfo(), min_size=1, max_size=1)
    try:
        async with backend.acquire() as connection:
            pid = connection.info.backend_pid
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            async with backend._tick_transaction(0.5) as fetch:
                await fetch(Statement("SELECT pg_sleep(5)", ()))
        assert time.monotonic() - started < 0.5 * CLIENT_DEADLINE_FACTOR
        async with backend.acquire() as connection:
            # Rolled back and reused: a statement that failed leaves a healthy connection.
            assert connection.info.backend_pid == pid
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_a_hung_scheduler_loses_its_lock_and_another_fires(app: Soniq) -> None:
    """A scheduler blocks mid-tick holding the schedule's row lock: the server ends its
    session one lease later, and another scheduler fires the slot then."""
    lease = 0.5
    await app.scheduler.add(NAME, every=60, catch_up="all")
    due = datetime.now(UTC) - timedelta(seconds=1)
    _make_due(NAME, due)
    locked = threading.Event()
    outcome: list[BaseException | list[Any]] = []

    def hang(definition: ScheduleDefinition, slot: datetime) -> NewJob:
        locked.set()  # the row is locked: this runs inside the tick's transaction
        time.sleep(2.5)  # a scheduler hung mid-tick (its event loop blocked)
        return app.make_scheduled_job(definition, slot)

    def hung_scheduler() -> None:
        async def run() -> None:
            hung = _app(scheduler_lease=lease)
            try:
                outcome.append(await _scheduler(hung, hang, lease=lease).tick())
            except Exception as error:
                outcome.append(error)
            finally:
                await hung.close()

        asyncio.run(run())

    thread = threading.Thread(target=hung_scheduler)
    thread.start()
    try:
        assert await asyncio.to_thread(locked.wait, 10)
        locked_at = time.monotonic()
        other = _scheduler(app, lease=5.0)
        fired: list[Any] = []
        while not fired and time.monotonic() - locked_at < 5:
            fired = await other.tick()  # skips the locked row until the lock is gone
            await asyncio.sleep(0.02)
        took = time.monotonic() - locked_at
    finally:
        await asyncio.to_thread(thread.join, 10)
    print(f"another scheduler fired {took:.3f}s after the hung one locked the slot")
    assert [(name, slot) for name, slot, _ in fired] == [(NAME, due)]
    assert lease - 0.05 <= took <= lease + 0.5
    # The hung scheduler's tick failed (its session was gone); nothing fired twice.
    [error] = outcome
    assert isinstance(error, (TimeoutError, psycopg.OperationalError)), error
    assert [fire_time for fire_time, _ in _fires()] == [due]


@pytest.mark.asyncio
async def test_a_tick_cut_off_from_its_replies_gives_up_and_discards_its_connection(
    app: Soniq, caplog: pytest.LogCaptureFixture
) -> None:
    """The network swallows the replies after the lock: the server ends the session within
    the lease, another scheduler fires, and the cut-off tick raises TimeoutError at its own
    deadline, its connection closed rather than returned to the pool."""
    lease = 0.6
    await app.scheduler.add(NAME, every=60, catch_up="all")
    due = datetime.now(UTC) - timedelta(seconds=1)
    _make_due(NAME, due)
    database = connections["default"].settings_dict
    with TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)) as proxy:
        url = psycopg.conninfo.make_conninfo(conninfo(), host="127.0.0.1", port=proxy.port)
        cut = Soniq(database_url=url, scheduler_lease=lease, prepared_statements=False)
        cut.registry.register(app.registry.get(NAME))  # type: ignore[arg-type]
        backend: Any = cut.scheduler.backend()
        used: list[Any] = []  # the connections the cut-off scheduler's ticks took
        acquire = backend.acquire

        @asynccontextmanager
        async def recording() -> AsyncIterator[Any]:
            async with acquire() as connection:
                used.append((connection, connection.info.backend_pid))
                yield connection

        backend.acquire = recording
        try:
            proxy.cut_replies_after(b"FOR UPDATE")
            started = time.monotonic()
            scheduler = cut.make_scheduler(tick=0.1)
            with pytest.raises(TimeoutError, match="outlived its lease"):
                await bounded(scheduler.tick(), 10)
            gave_up = time.monotonic() - started
            [(connection, pid)] = used
            assert connection.closed  # discarded, not returned to the pool
            # Meanwhile the server ended the session, and another scheduler could fire.
            await eventually(
                lambda: (
                    not query_elsewhere(
                        "default", "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                    )
                ),
                within=2,
            )
            fired = await bounded(_scheduler(app, lease=5.0).tick())
            assert [(name, slot) for name, slot, _ in fired] == [(NAME, due)]
            proxy.forward()
            assert await bounded(scheduler.tick()) == []  # a new connection, working
            assert used[-1][1] != pid
        finally:
            await cut.close()
    print(f"the cut-off tick gave up after {gave_up:.3f}s (lease {lease}s)")
    assert lease * CLIENT_DEADLINE_FACTOR - 0.05 <= gave_up <= lease * CLIENT_DEADLINE_FACTOR + 0.5
    assert [fire_time for fire_time, _ in _fires()] == [due]


@pytest.mark.asyncio
async def test_a_long_catch_up_is_split_across_ticks_and_misses_nothing(app: Soniq) -> None:
    lease = 1.0
    await app.scheduler.add(NAME, every=1, catch_up="all", catch_up_window=3600)
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    _make_due(NAME, first)

    def slow_make_job(definition: ScheduleDefinition, slot: datetime) -> NewJob:
        time.sleep(0.04)
        return app.make_scheduled_job(definition, slot)

    scheduler = _scheduler(app, slow_make_job, lease=lease)
    per_tick = []
    while fired := await scheduler.tick():
        per_tick.append(len(fired))
    slots = [fire_time for fire_time, _ in _fires()]
    assert len(per_tick) >= 3, per_tick  # each tick stopped at about half its lease
    assert slots == [first + timedelta(seconds=n) for n in range(len(slots))]
    assert len(slots) == sum(per_tick) >= 40
