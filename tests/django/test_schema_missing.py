"""A database without soniq's tables (before ``migrate`` / ``soniq setup``): enqueue, the worker
and the scheduler raise ``SchemaMissingError`` naming the database and the command to run,
instead of psycopg's ``UndefinedTable`` or sqlite3's ``no such table``."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.test import override_settings

from soniq import SchemaMissingError, Soniq, SoniqError
from soniq.backends.postgres import PostgresBackend
from soniq.backends.schema import missing_table, postgres_url, schema_missing
from soniq.core.settings import SoniqSettings
from tests.helpers import bounded, conninfo


@pytest.fixture(scope="module")
def empty_postgres(django_db_setup: Any) -> Iterator[str]:
    """A conninfo for a fresh database of this module's own on the test server (created once:
    nothing here creates tables), dropped afterwards."""
    name = f"test_soniq_empty_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(conninfo(), dbname=name)
    finally:
        with psycopg.connect(conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _app(url: str) -> Soniq:
    app = Soniq(database_url=url)

    @app.job(name="schema.job")
    def job(n: int = 0) -> None:
        pass

    @app.periodic(every=60, name="schema.every_minute")
    def every_minute() -> None:
        pass

    return app


@pytest_asyncio.fixture
async def pg_app(empty_postgres: str) -> AsyncIterator[Soniq]:
    app = _app(empty_postgres)
    yield app
    await app.close()


def _assert_standalone(error: SchemaMissingError, database: str, table: str) -> None:
    message = str(error)
    assert database in message and error.database.endswith(database)
    assert f"table {table} does not exist" in message and error.table == table
    assert "`soniq setup`" in message and "SONIQ_DATABASE_URL" in message
    assert error.alias is None
    assert isinstance(error, SoniqError) and isinstance(error, RuntimeError)
    assert error.__cause__ is not None  # the database's own error, for the curious


def _dbname(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


@pytest.mark.asyncio
async def test_enqueue_on_postgres_without_tables(pg_app: Soniq, empty_postgres: str) -> None:
    name = _dbname(empty_postgres)
    with pytest.raises(SchemaMissingError) as caught:
        await pg_app.enqueue("schema.job", args={"n": 1})
    _assert_standalone(caught.value, name, "soniq_jobs")
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
    with pytest.raises(SchemaMissingError):
        await pg_app.enqueue_many("schema.job", [{"n": 1}, {"n": 2}])
    with pytest.raises(SchemaMissingError):
        await pg_app.get_job("7f0c3c5e-54a4-4f59-a1c4-6e4f4d7d0d39")
    # The sync twins, on the sync pool.
    with pytest.raises(SchemaMissingError) as caught:
        pg_app.enqueue_sync("schema.job", args={"n": 1})
    _assert_standalone(caught.value, name, "soniq_jobs")
    with pytest.raises(SchemaMissingError):
        pg_app.enqueue_sync("schema.job", args={}, dedup_key="k")
    # A transactional enqueue on the caller's own connection.
    async with await psycopg.AsyncConnection.connect(empty_postgres) as connection:
        with pytest.raises(SchemaMissingError):
            await pg_app.enqueue("schema.job", args={}, connection=connection)
    # The password is never shown.
    password = connections["default"].settings_dict.get("PASSWORD")
    if password:
        assert password not in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("run_once", [True, False], ids=["run_once", "continuous"])
async def test_worker_on_postgres_without_tables(
    pg_app: Soniq, empty_postgres: str, run_once: bool
) -> None:
    worker = pg_app.make_worker(1)
    try:
        with pytest.raises(SchemaMissingError) as caught:
            await bounded(worker.run(concurrency=1, run_once=run_once))
    finally:
        await worker.backend.close()
    _assert_standalone(caught.value, _dbname(empty_postgres), "soniq_workers")
    # Through the app as well (what `soniq worker` runs).
    with pytest.raises(SchemaMissingError):
        await bounded(pg_app.run_worker(concurrency=1, run_once=run_once))


@pytest.mark.asyncio
async def test_scheduler_on_postgres_without_tables(pg_app: Soniq, empty_postgres: str) -> None:
    scheduler = pg_app.make_scheduler()
    with pytest.raises(SchemaMissingError) as caught:
        await bounded(scheduler.sync())
    _assert_standalone(caught.value, _dbname(empty_postgres), "soniq_schedules")
    with pytest.raises(SchemaMissingError):  # the tick's own transaction
        await bounded(scheduler.tick())
    with pytest.raises(SchemaMissingError):
        await bounded(pg_app.scheduler.list())
    # The scheduler's loop stops with it instead of retrying: only migrate creates the tables.
    with pytest.raises(SchemaMissingError):
        await bounded(pg_app.make_scheduler().run())


@pytest.mark.asyncio
async def test_a_django_projects_worker_names_the_alias_and_migrate(
    empty_postgres: str,
) -> None:
    """The worker of a Django project reaches the alias's database through psycopg (settings
    without DATABASE_URL): the fix is `manage.py migrate`."""
    backend = PostgresBackend(empty_postgres, settings=SoniqSettings(database="default"))
    try:
        with pytest.raises(SchemaMissingError) as caught:
            await backend.heartbeat("7f0c3c5e-54a4-4f59-a1c4-6e4f4d7d0d39")
    finally:
        await backend.close()
    message = str(caught.value)
    assert "database alias 'default'" in message and _dbname(empty_postgres) in message
    assert "`python manage.py migrate`" in message and "soniq setup" not in message
    assert caught.value.alias == "default"


@pytest.mark.asyncio
async def test_sqlite_file_without_tables(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    app = _app(f"sqlite:///{path}")
    try:
        with pytest.raises(SchemaMissingError) as caught:
            app.enqueue_sync("schema.job", args={})
        _assert_standalone(caught.value, str(path), "soniq_jobs")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(SchemaMissingError):
            await app.enqueue("schema.job", args={})
        with pytest.raises(SchemaMissingError):
            await app.enqueue_many("schema.job", [{}])
        with pytest.raises(SchemaMissingError) as caught:
            await bounded(app.run_worker(concurrency=1, run_once=True))
        _assert_standalone(caught.value, str(path), "soniq_workers")
        worker = app.make_worker(1)
        try:
            with pytest.raises(SchemaMissingError):
                await bounded(worker.run(concurrency=1))
        finally:
            await worker.backend.close()
    finally:
        await app.close()


@pytest.mark.django_db(databases=["default", "sqlite"])
@pytest.mark.parametrize("alias", ["default", "sqlite"])
def test_django_connection_names_the_alias_and_migrate(alias: str) -> None:
    """Enqueue on Django's connection, with soniq_jobs renamed away inside a transaction
    (rolled back, DDL included, on both PostgreSQL and SQLite)."""
    app = Soniq(database=alias)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("ALTER TABLE soniq_jobs RENAME TO soniq_jobs_aside")
        with pytest.raises(SchemaMissingError) as caught:
            app.enqueue_sync("schema.job", args={})
        raise Undo
    message = str(caught.value)
    assert f"database alias {alias!r}" in message
    option = "" if alias == "default" else " --database=sqlite"
    assert f"`python manage.py migrate{option}`" in message
    assert "table soniq_jobs does not exist" in message
    assert caught.value.alias == alias
    # The table is back: the next enqueue works.
    assert app.enqueue_sync("schema.job", args={})


@pytest.mark.parametrize(
    ("error", "table"),
    [
        (psycopg.errors.UndefinedTable('relation "soniq_workers" does not exist'), "soniq_workers"),
        (psycopg.errors.UndefinedTable('relation "orders" does not exist'), None),
        (psycopg.errors.UndefinedColumn('column "soniq_jobs" does not exist'), None),
        (sqlite3.OperationalError("no such table: soniq_jobs"), "soniq_jobs"),
        (sqlite3.OperationalError("no such table: main.soniq_schedules"), "soniq_schedules"),
        (sqlite3.OperationalError("no such table: orders"), None),
        (sqlite3.OperationalError("database is locked"), None),
        (ValueError("no such table: soniq_jobs"), None),
    ],
)
def test_missing_table_detection(error: BaseException, table: str | None) -> None:
    assert missing_table(error) == table


def test_messages_never_show_a_password() -> None:
    url = postgres_url(dbname="app", user="me", host="db.example", port=5433)
    assert url == "postgresql://me@db.example:5433/app"
    socket_url = postgres_url(dbname="app", user=None, host="/run/postgresql", port=None)
    assert socket_url == "postgresql:///app?host=/run/postgresql"
    error = schema_missing("soniq_jobs", url)
    assert error.database == url and error.table == "soniq_jobs"
    assert "soniq setup" in str(error) and "manage.py migrate" in str(error)


def test_the_error_is_exported() -> None:
    import soniq

    assert soniq.SchemaMissingError is SchemaMissingError
    assert "SchemaMissingError" in soniq.__all__


# What the commands run: a module-level app with a job, named with --app.
COMMAND_APP = Soniq()


@COMMAND_APP.job(name="schema.command_job")
def command_job() -> None: ...


@COMMAND_APP.periodic(every=60, name="schema.command_schedule")
def command_schedule() -> None: ...


@pytest.mark.parametrize("command", ["soniq_worker", "soniq_scheduler"])
def test_the_commands_end_with_the_fix_not_a_traceback(empty_postgres: str, command: str) -> None:
    arguments = ["--app", "tests.django.test_schema_missing:COMMAND_APP"]
    if command == "soniq_worker":
        arguments.append("--run-once")
    with (
        override_settings(SONIQ={"DATABASE_URL": empty_postgres}),
        pytest.raises(CommandError) as caught,
    ):
        call_command(command, *arguments, verbosity=0)
    assert "soniq setup" in str(caught.value)
    assert isinstance(caught.value.__cause__, SchemaMissingError)
