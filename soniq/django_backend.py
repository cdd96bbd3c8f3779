"""Storage on Django's own database connection, so enqueue joins ``transaction.atomic()``.

This is the Django layer's bridge: the statements come from ``soniq.backends`` (the same SQL the
psycopg backend runs); only the executor is Django's cursor.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from soniq._warnings import warn_at_caller
from soniq.backends import plans
from soniq.backends.base import Dialect, Row, Statement
from soniq.backends.operator_plans import (
    DEADLOCK_SQLSTATE,
    KEY_RACE_ROUNDS,
    Action,
    SQLOperatorMixin,
)
from soniq.backends.postgres.executors import (
    async_executor,
    is_async_connection,
    is_sync_connection,
    refuse_connection,
    sync_executor,
)
from soniq.backends.postgres.pooling import describe
from soniq.backends.postgres.statements import PostgresDialect
from soniq.backends.schema import missing_table, postgres_url, schema_missing, sqlite_url
from soniq.backends.sqlite.statements import SQLiteDialect
from soniq.core import wakeup
from soniq.core.errors import ConfigurationError, TransactionWarning
from soniq.core.operations import ActionResult
from soniq.core.records import JobInfo, NewJob

SUPPORTED_VENDORS = ("postgresql", "sqlite")


def dialect_for(connection: BaseDatabaseWrapper) -> Dialect:
    if connection.vendor == "postgresql":
        return PostgresDialect()
    if connection.vendor == "sqlite":
        return SQLiteDialect()
    raise ConfigurationError(
        f"soniq supports PostgreSQL and SQLite; database alias {connection.alias!r} is "
        f"{connection.vendor}. Point SONIQ['DATABASE'] at a PostgreSQL or SQLite alias."
    )


def in_user_atomic_block(connection: BaseDatabaseWrapper) -> bool:
    """True inside an ``atomic()`` the application opened (a TestCase's wrapper excluded)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def format_placeholders(sql: str) -> str:
    """A statement written for sqlite3 (``?`` placeholders) in the format style Django's
    cursor takes. Django's SQLite cursor passes ``?`` through, but with DEBUG on it formats
    every query for its log with ``%``, and a qmark statement fails there."""
    return sql.replace("%", "%%").replace("?", "%s")


def django_executor(connection: BaseDatabaseWrapper, *, qmark: bool = False) -> plans.SyncExecute:
    """``qmark``: the statements are written for sqlite3 (see :func:`format_placeholders`)."""

    def execute(statement: Statement) -> list[Row]:
        sql = format_placeholders(statement.sql) if qmark else statement.sql
        with connection.cursor() as cursor:
            cursor.execute(sql, statement.params)
            return cursor.fetchall() if cursor.description else []

    return execute


def describe_alias(connection: BaseDatabaseWrapper) -> str:
    """The database behind a Django alias, as a URL without password."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return sqlite_url(str(settings.get("NAME") or ""))
    if connection.vendor == "postgresql":
        return postgres_url(
            dbname=settings.get("NAME"),
            user=settings.get("USER"),
            host=settings.get("HOST"),
            port=settings.get("PORT"),
        )
    return f"{connection.vendor} database {settings.get('NAME')!r}"


@contextmanager
def schema_reported(connection: Any) -> Iterator[None]:
    """Re-raise a missing soniq table inside the block as ``SchemaMissingError``, naming the
    alias (or, for a psycopg ``connection=``, the database) and ``manage.py migrate``."""
    try:
        yield
    except Exception as error:
        table = missing_table(error)
        if table is None:
            raise
        if isinstance(connection, BaseDatabaseWrapper):
            missing = schema_missing(
                table, describe_alias(connection), django_alias=connection.alias
            )
        else:
            missing = schema_missing(table, describe(connection))
        raise missing from error


class DjangoBackend(SQLOperatorMixin):
    """Runs soniq's statements on ``django.db.connections[alias]``."""

    supports_transactional_enqueue = True

    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        if alias not in connections.settings:
            raise ConfigurationError(
                f"SONIQ['DATABASE'] is {alias!r}, which is not in settings.DATABASES "
                f"({', '.join(connections.settings) or 'none'})"
            )
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @property
    def supports_listen(self) -> bool:
        return self.connection.vendor == "postgresql"

    @property
    def conninfo(self) -> str | None:
        """A psycopg conninfo for this alias's PostgreSQL database (``None`` on SQLite): for
        connections of soniq's own, such as a waiter's LISTEN."""
        if self.connection.vendor != "postgresql":
            return None
        from soniq.django_worker import postgres_conninfo

        return postgres_conninfo(self.alias)

    def _warn_if_other_transaction(self) -> None:
        for other in connections.all(initialized_only=True):
            if other.alias != self.alias and in_user_atomic_block(other):
                warn_at_caller(
                    f"enqueue runs on database {self.alias!r} (SONIQ['DATABASE']) while an "
                    f"atomic block is open on {other.alias!r}: the job will not be part of that "
                    f"transaction and survives its rollback. Use transaction.atomic(using="
                    f"{self.alias!r}), or set SONIQ['DATABASE'] to {other.alias!r}.",
                    TransactionWarning,
                )
                return

    def _run_sync(self, plan: plans.Plan[Any], connection: Any, *, needs_atomic: bool) -> Any:
        with schema_reported(self.connection if connection is None else connection):
            return self._run_plan(plan, connection, needs_atomic=needs_atomic)

    def _run_plan(self, plan: plans.Plan[Any], connection: Any, *, needs_atomic: bool) -> Any:
        if is_sync_connection(connection):
            return plans.run_sync(plan, sync_executor(connection))
        if connection is None:
            self._warn_if_other_transaction()
            wrapper = self.connection
        elif isinstance(connection, BaseDatabaseWrapper):
            wrapper = connection
        else:
            raise refuse_connection(
                connection,
                accepted="a Django connection (django.db.connections[alias]) or a psycopg "
                "Connection",
            )
        if not needs_atomic:
            return plans.run_sync(plan, django_executor(wrapper))
        # Several statements (SQLite chunks, dedup rounds) must land together; savepoint=False
        # keeps this free inside the caller's own atomic block.
        with transaction.atomic(using=wrapper.alias, savepoint=False):
            return plans.run_sync(plan, django_executor(wrapper))

    def _dialect(self, connection: Any) -> Dialect:
        if isinstance(connection, BaseDatabaseWrapper):
            return dialect_for(connection)
        if connection is not None:
            return PostgresDialect()
        return dialect_for(self.connection)

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        dialect = self._dialect(connection)
        single_statement = dialect.name == "postgresql" and all(
            not job.inserted_alone for job in jobs
        )
        needs_atomic = len(jobs) > 1 and not single_statement
        result: list[str] = self._run_sync(
            plans.insert_jobs(dialect, jobs), connection, needs_atomic=needs_atomic
        )
        if dialect.name != "postgresql":
            # No NOTIFY here: wake this process's workers once the jobs are committed.
            queues = {job.queue for job in jobs}
            alias = connection.alias if isinstance(connection, BaseDatabaseWrapper) else self.alias
            transaction.on_commit(lambda: wakeup.notify(queues), using=alias)
        return result

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        if is_async_connection(connection):
            with schema_reported(connection):
                return await plans.run_async(
                    plans.insert_jobs(PostgresDialect(), jobs), async_executor(connection)
                )
        if connection is not None:
            # A Django connection belongs to the thread that opened it, and a sync psycopg
            # connection would block the event loop: neither can serve an async enqueue.
            raise refuse_connection(
                connection,
                accepted="a psycopg AsyncConnection (or nothing: soniq then uses Django's "
                "connection on Django's sync thread)",
            )
        # Django's ORM is sync: run on the thread that owns this request's connections, as
        # Django's own async ORM methods do.
        result: list[str] = await sync_to_async(self.insert_jobs_sync)(jobs)
        return result

    def get_job_sync(self, job_id: str) -> JobInfo | None:
        wrapper = self.connection
        with schema_reported(wrapper):
            result: JobInfo | None = plans.run_sync(
                plans.get_job(dialect_for(wrapper), job_id), django_executor(wrapper)
            )
        return result

    async def get_job(self, job_id: str) -> JobInfo | None:
        return await sync_to_async(self.get_job_sync)(job_id)

    def _operate_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        with schema_reported(self.connection):
            return self._operate_in_transaction(action, job_ids)

    def _operate_in_transaction(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        wrapper = self.connection
        dialect = dialect_for(wrapper)
        for round_ in range(KEY_RACE_ROUNDS):
            try:
                # A savepoint inside the caller's transaction: a lost race undoes the batch only.
                with transaction.atomic(using=self.alias):
                    result = plans.run_sync(action(dialect, job_ids), django_executor(wrapper))
                    if result.queues and dialect.name != "postgresql":
                        transaction.on_commit(
                            functools.partial(wakeup.notify, result.queues), using=self.alias
                        )
                return result
            except (IntegrityError, OperationalError) as exc:
                lost_race = isinstance(exc, IntegrityError) or (
                    getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_SQLSTATE
                )
                if not lost_race or round_ == KEY_RACE_ROUNDS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _operate(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        result: ActionResult = await sync_to_async(self._operate_sync)(action, job_ids)
        return result

    async def close(self) -> None:
        """Django owns its connections; nothing to close."""
