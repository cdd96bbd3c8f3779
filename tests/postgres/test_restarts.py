"""``Soniq(database_url=...)`` across PostgreSQL restarts, outages and killed connections.

Every test runs on a throwaway cluster of this module's own, restarted and stopped at will.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from soniq import DatabaseUnavailableError, Soniq
from soniq.backends.base import Statement
from soniq.backends.postgres import PostgresBackend
from soniq.backends.postgres.pooling import has_input
from tests.helpers import wait_until
from tests.pg_server import ThrowawayCluster

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
# The smallest CONNECT_TIMEOUT: a caller waits at most this long for a pooled connection.
CONNECT_TIMEOUT = 2
# Generous allowance on top of it for a slow machine; far below psycopg_pool's default 30 s.
SLACK = 5.0
WARM = 4  # connections held at once, so that each pool has this many idle when the server goes


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster().start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
        env.update(SONIQ_DATABASE_URL=own.url, PYTHONPATH=str(ROOT))
        setup = subprocess.run(
            [sys.executable, "-m", "soniq.cli", "setup"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield own
    finally:
        own.stop()


def _app(cluster: ThrowawayCluster) -> Soniq:
    return Soniq(database_url=cluster.url, connect_timeout=CONNECT_TIMEOUT)


def _backend(app: Soniq) -> PostgresBackend:
    backend = app.backend
    assert isinstance(backend, PostgresBackend)
    return backend


def _stop(cluster: ThrowawayCluster) -> None:
    subprocess.run(
        [*cluster.run_as, cluster.pg_ctl, "-D", str(cluster.data), "-m", "fast", "-w", "stop"],
        check=True,
        capture_output=True,
    )


def _count(cluster: ThrowawayCluster, task: str) -> tuple[int, int]:
    """Jobs of ``task``: how many rows, how many distinct ``n`` arguments."""
    with psycopg.connect(cluster.url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT args->>'n') FROM soniq_jobs WHERE task_name = %s",
            (task,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _warm(backend: PostgresBackend) -> None:
    """Hold ``WARM`` connections of each pool at once, then give them all back (idle)."""
    with ExitStack() as stack:
        for _ in range(WARM):
            stack.enter_context(backend.acquire_sync())
    async with AsyncExitStack() as stack:
        for _ in range(WARM):
            await stack.enter_async_context(backend.acquire())


def _discarded(backend: PostgresBackend) -> tuple[int, int]:
    """Dead connections handed back to each pool (async, sync)."""
    assert backend._pool is not None and backend._sync_pool is not None
    return (
        backend._pool.get_stats().get("returns_bad", 0),
        backend._sync_pool.get_stats().get("returns_bad", 0),
    )


async def _timed(call: Awaitable[Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await call
    except Exception as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_enqueues_right_after_a_restart_all_succeed_once_each(
    cluster: ThrowawayCluster, mode: str
) -> None:
    task = f"restarts.after_{mode}"
    app = _app(cluster)
    backend = _backend(app)

    async def scenario() -> list[Any]:
        try:
            await _warm(backend)
            cluster.restart(mode)  # returns once the server accepts connections again
            sync_calls = [
                asyncio.to_thread(app.enqueue_sync, task, args={"n": n}) for n in range(8)
            ]
            async_calls = [app.enqueue(task, args={"n": n}) for n in range(8, 16)]
            results = await asyncio.gather(*sync_calls, *async_calls, return_exceptions=True)
            discarded = _discarded(backend)
            # Stale connections were met, and dropped before any statement ran on them.
            assert discarded[0] >= 1 and discarded[1] >= 1, discarded
            return results
        finally:
            await app.close()

    results = asyncio.run(scenario())
    assert [r for r in results if not isinstance(r, str)] == []
    assert _count(cluster, task) == (16, 16)


def test_while_the_server_is_down_calls_fail_promptly_and_write_nothing(
    cluster: ThrowawayCluster,
) -> None:
    task = "restarts.while_down"
    warm, cold = _app(cluster), _app(cluster)  # cold: never connected before the outage
    backend = _backend(warm)
    bound = backend.checkout_timeout + SLACK

    async def scenario() -> None:
        try:
            await _warm(backend)
            _stop(cluster)
            try:
                outcomes = await asyncio.gather(
                    _timed(warm.enqueue(task, args={"n": 1})),
                    _timed(asyncio.to_thread(warm.enqueue_sync, task, args={"n": 2})),
                    # Concurrent first calls on a cold app fail together, not one by one.
                    *(_timed(cold.enqueue(task, args={"n": n})) for n in range(3, 7)),
                    *(
                        _timed(asyncio.to_thread(cold.enqueue_sync, task, args={"n": n}))
                        for n in range(7, 11)
                    ),
                    _timed(warm.get_job(str(uuid.uuid4()))),
                    _timed(asyncio.to_thread(warm.cancel_jobs_sync, [str(uuid.uuid4())])),
                    _timed(backend._fetch(Statement("SELECT 1", ()))),
                )
            finally:
                cluster.start()
            for error, elapsed in outcomes:
                assert isinstance(error, DatabaseUnavailableError), error
                assert isinstance(error.__cause__, psycopg.OperationalError), error.__cause__
                assert elapsed < bound, (error, elapsed)
            # Back up: the very first calls succeed, on the apps that just failed.
            await warm.enqueue("restarts.back", args={"n": 1})
            await asyncio.to_thread(warm.enqueue_sync, "restarts.back", args={"n": 2})
            await cold.enqueue("restarts.back", args={"n": 3})
            await asyncio.to_thread(cold.enqueue_sync, "restarts.back", args={"n": 4})
        finally:
            await warm.close()
            await cold.close()

    asyncio.run(scenario())
    assert _count(cluster, task) == (0, 0)
    assert _count(cluster, "restarts.back") == (4, 4)


def test_an_enqueue_made_during_a_short_outage_waits_for_the_server(
    cluster: ThrowawayCluster,
) -> None:
    """Within CONNECT_TIMEOUT, a call made while the server is down waits for it, and gets a
    connection within a fraction of a second of its return (not after the pool's own
    reconnection back-off of 1 s, 2 s, 4 s...)."""
    task = "restarts.during_outage"
    app = Soniq(database_url=cluster.url, connect_timeout=10)
    backend = _backend(app)

    async def scenario() -> tuple[list[Any], float]:
        try:
            await _warm(backend)
            _stop(cluster)
            sync_calls = [
                asyncio.to_thread(app.enqueue_sync, task, args={"n": n}) for n in range(4)
            ]
            async_calls = [app.enqueue(task, args={"n": n}) for n in range(4, 8)]
            calls = asyncio.gather(*sync_calls, *async_calls, return_exceptions=True)
            await asyncio.sleep(1.0)  # the outage: every call is waiting meanwhile
            await asyncio.to_thread(cluster.start)  # returns once it accepts connections
            back_at = time.monotonic()
            results = await calls
            return results, time.monotonic() - back_at
        finally:
            await app.close()

    results, after = asyncio.run(scenario())
    assert [r for r in results if not isinstance(r, str)] == []
    assert after < 1.0, f"the waiting calls got through {after:.2f}s after the server was back"
    assert _count(cluster, task) == (8, 8)


def test_killed_pooled_connections_are_replaced_before_use(cluster: ThrowawayCluster) -> None:
    app = _app(cluster)
    backend = _backend(app)

    def pooled() -> list[Any]:
        """The idle connections of the backend's pools (async and sync): this test's own
        sessions, known from the client side, so nothing else on the server is touched."""
        pools = [pool for pool in (backend._pool, backend._sync_pool) if pool is not None]
        return [conn for pool in pools for conn in list(pool._pool) if not conn.closed]

    def kill_all() -> None:
        """Terminate every pooled connection open now, and wait until they are gone: from
        the server, and from the client's side too (their sockets readable, the server's
        goodbye or its close arrived; over TCP that can trail the backend's exit a little
        on a busy machine, and checkout rightly trusts a socket with nothing to read)."""
        killed = pooled()
        pids = [conn.info.backend_pid for conn in killed]
        assert pids
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
            gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s))"
            wait_until(lambda: admin.execute(gone, (pids,)).fetchone() == (True,))
        wait_until(lambda: all(has_input(conn.pgconn.socket) for conn in killed))

    async def scenario() -> None:
        try:
            await _warm(backend)
            kill_all()
            assert await backend._fetch(Statement("SELECT 1", ())) == [(1,)]
            kill_all()
            assert await backend._execute_count(Statement("SELECT 1", ())) == 1
            kill_all()
            assert await backend._in_transaction(
                lambda fetch: fetch(Statement("SELECT 2", ()))
            ) == [(2,)]
            kill_all()
            job_id = await app.enqueue("restarts.killed", args={"n": 1})
            kill_all()
            assert app.get_job_sync(job_id) is not None
            kill_all()
            assert list((await app.cancel_jobs([job_id])).applied) == [job_id]
        finally:
            await app.close()

    asyncio.run(scenario())


def test_a_broken_caller_connection_raises_database_unavailable(
    cluster: ThrowawayCluster,
) -> None:
    app = _app(cluster)
    task = "restarts.caller_connection"

    def kill(pid: int) -> None:
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_until(
                lambda: (
                    admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                    == (0,)
                )
            )

    async def scenario() -> None:
        try:
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                kill(conn.info.backend_pid)
                with pytest.raises(DatabaseUnavailableError) as caught:
                    app.enqueue_sync(task, args={"n": 1}, connection=conn)
                assert isinstance(caught.value.__cause__, psycopg.OperationalError)
            async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as aconn:
                kill(aconn.info.backend_pid)
                with pytest.raises(DatabaseUnavailableError) as caught:
                    await app.enqueue(task, args={"n": 2}, connection=aconn)
                assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        finally:
            await app.close()

    asyncio.run(scenario())
    assert _count(cluster, task) == (0, 0)


def test_errors_about_the_statement_keep_their_type(cluster: ThrowawayCluster) -> None:
    """A lock timeout is an OperationalError in psycopg, but the database is there."""
    app = _app(cluster)
    with (
        psycopg.connect(cluster.url) as locker,
        psycopg.connect(cluster.url, autocommit=True) as conn,
    ):
        locker.execute("LOCK TABLE soniq_jobs IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            app.enqueue_sync("restarts.locked", connection=conn)
        locker.rollback()
        app.enqueue_sync("restarts.locked", connection=conn)  # the connection is still good
    app.backend.close_sync()  # type: ignore[attr-defined]
