"""Live pooled connections, and connection failures reported as ``DatabaseUnavailableError``.

Checkout: an idle pooled connection has nothing to read. After a server restart (or
``pg_terminate_backend()``, or a keepalive failure) the server has sent a FATAL error and closed
the socket, so the socket is readable. A zero-timeout ``poll()`` of the socket tells the two
apart without a round trip; only a readable socket earns a real check (an empty query), which a
dead connection fails at once. A dead connection is closed and handed back, so the pool opens a
replacement right away, and the caller takes the next one: nothing has been sent on its behalf,
so trying again is safe. psycopg_pool's own ``check=`` hook is not used because its retry loop
sleeps (1 s, then 2 s, 4 s, ...) after every failed check, so a pool full of dead connections
delays the first statement after a restart by several seconds.

Errors: a statement that fails because the connection broke may or may not have been committed
(the COMMIT may have reached the server before the connection dropped), so it is never retried;
the caller gets ``DatabaseUnavailableError`` chained to the psycopg error.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from soniq.backends.base import Row
from soniq.backends.schema import missing_table, postgres_url, schema_missing
from soniq.core.errors import DatabaseUnavailableError, SchemaMissingError

# SQLSTATEs of errors that end the session: admin_shutdown, crash_shutdown, cannot_connect_now,
# database_dropped, idle_session_timeout. Class 08 (connection_exception) counts as well.
SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})


def has_input(fileno: int) -> bool:
    """Whether the socket has something to read, or is closed or in error, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI)  # POLLHUP, POLLERR: always
        return bool(poller.poll(0))
    readable, _, failed = select.select([fileno], [], [fileno], 0)  # Windows
    return bool(readable or failed)


def is_connection_error(error: BaseException, connection: Any = None) -> bool:
    """An ``OperationalError`` about reaching the server rather than about the statement:
    raised by the client (no SQLSTATE: refused, closed, lost, and the pool's ``PoolTimeout``),
    of class 08, one that ended the session, or one after which ``connection`` is closed.
    ``DeadlockDetected``, ``SerializationFailure``, ``QueryCanceled``, ``LockNotAvailable``
    (also ``OperationalError`` subclasses in psycopg) on a live connection are not."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    sqlstate = error.sqlstate
    if sqlstate is None or sqlstate.startswith("08") or sqlstate in SESSION_ENDED:
        return True
    return bool(connection is not None and getattr(connection, "closed", False))


def unavailable(error: psycopg.OperationalError) -> DatabaseUnavailableError:
    message = str(error).strip() or type(error).__name__
    if isinstance(error, PoolTimeout):
        message += " (the server does not answer, or every pooled connection stayed busy)"
    return DatabaseUnavailableError(f"the database is unavailable: {message}")


def describe(connection: Any) -> str:
    """The database a psycopg connection is on, as a URL without password."""
    info = getattr(connection, "info", None)
    if info is None:
        return "(unknown PostgreSQL database)"
    return postgres_url(dbname=info.dbname, user=info.user, host=info.host, port=info.port)


def schema_error(
    error: BaseException, connection: Any, django_alias: str | None = None
) -> SchemaMissingError | None:
    """:class:`SchemaMissingError` if ``error`` is about a missing soniq table."""
    table = missing_table(error)
    if table is None:
        return None
    return schema_missing(table, describe(connection), django_alias=django_alias)


@contextmanager
def reported(connection: Any = None, *, django_alias: str | None = None) -> Iterator[None]:
    """Re-raise a connection failure inside the block as ``DatabaseUnavailableError``, and a
    missing soniq table as ``SchemaMissingError`` (``django_alias``: the Django database alias
    the connection serves, if any, for the message).

    A sync context manager, so that it also wraps ``await`` expressions in async code."""
    try:
        yield
    except psycopg.OperationalError as error:
        if is_connection_error(error, connection):
            raise unavailable(error) from error
        raise
    except psycopg.errors.UndefinedTable as error:
        missing = schema_error(error, connection, django_alias)
        if missing is not None:
            raise missing from error
        raise


def _suspect(connection: Connection[Any] | AsyncConnection[Any]) -> bool | None:
    """``None``: healthy for sure; ``True``: dead for sure; ``False``: needs a round trip."""
    if connection.closed:
        return True
    return False if has_input(connection.pgconn.socket) else None


def usable(connection: Connection[Row]) -> bool:
    verdict = _suspect(connection)
    if verdict is None:
        return True
    if verdict:
        return False
    try:
        ConnectionPool.check_connection(connection)
    except Exception:
        return False
    return True


async def usable_async(connection: AsyncConnection[Row]) -> bool:
    verdict = _suspect(connection)
    if verdict is None:
        return True
    if verdict:
        return False
    try:
        await AsyncConnectionPool.check_connection(connection)
    except Exception:
        return False
    return True


def _remaining(deadline: float, within: float) -> float:
    remaining = deadline - monotonic()
    if remaining <= 0:
        raise PoolTimeout(f"couldn't get a working connection after {within:.2f} sec")
    return remaining


# While the server is away, the pool gives up reconnecting after one failed attempt (its own
# back-off would otherwise wait 1 s, 2 s, 4 s... after the server is back), and only a new
# request for a connection makes it try again. So a caller asks in short slices, each a new
# request: it gets a connection within about a slice of the server's return. (A caller that
# waits for a busy pool longer than a slice goes back to the end of the line; with statements
# of milliseconds, that happens only under heavy overload.)
SLICE_FIRST, SLICE_LONGEST = 0.05, 0.5


def _slices() -> Iterator[float]:
    slice_ = SLICE_FIRST
    while True:
        yield slice_
        slice_ = min(slice_ * 2, SLICE_LONGEST)


def checkout(pool: ConnectionPool[Connection[Row]], within: float) -> Connection[Row]:
    """A pooled connection not known to be dead, in ``within`` seconds (else
    ``PoolTimeout``). A dead one is closed and handed back, which makes the pool open a
    replacement at once; nothing was sent for the caller yet, so taking another is safe."""
    deadline = monotonic() + within
    slices = _slices()
    while True:
        wait = min(next(slices), _remaining(deadline, within))  # raises past the deadline
        try:
            connection = pool.getconn(timeout=wait)
        except PoolTimeout:
            continue
        try:
            alive = usable(connection)
        except BaseException:
            pool.putconn(connection)
            raise
        if alive:
            return connection
        connection.close()
        pool.putconn(connection)


async def checkout_async(
    pool: AsyncConnectionPool[AsyncConnection[Row]], within: float
) -> AsyncConnection[Row]:
    deadline = monotonic() + within
    slices = _slices()
    while True:
        wait = min(next(slices), _remaining(deadline, within))  # raises past the deadline
        try:
            connection = await pool.getconn(timeout=wait)
        except PoolTimeout:
            continue
        try:
            alive = await usable_async(connection)
        except BaseException:
            await pool.putconn(connection)
            raise
        if alive:
            return connection
        await connection.close()
        await pool.putconn(connection)
