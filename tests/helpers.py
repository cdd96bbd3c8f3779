"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from typing import Any, TypeVar

import psycopg
from django.db import connections

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def conninfo(alias: str = "default") -> str:
    """A psycopg conninfo for the (test) database behind a PostgreSQL alias."""
    s = connections[alias].settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"], host=s["HOST"], port=s["PORT"]
    )


def query_elsewhere(alias: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run ``sql`` on a fresh connection of its own: it sees only committed data."""
    if connections[alias].vendor == "sqlite":
        # closing(): sqlite3's own context manager commits but leaves the connection open.
        with closing(sqlite3.connect(connections[alias].settings_dict["NAME"])) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
    with psycopg.connect(conninfo(alias), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def committed_job_count(alias: str, where: str = "1=1", params: tuple = ()) -> int:
    return query_elsewhere(alias, f"SELECT count(*) FROM soniq_jobs WHERE {where}", params)[0][0]


async def eventually(
    predicate: Callable[[], Any], within: float = 10.0, interval: float = 0.01
) -> Any:
    """Await ``predicate`` (sync or async) until it returns something truthy; fail after
    ``within`` seconds. The async twin of :func:`wait_until`."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {predicate}")
        await asyncio.sleep(interval)


async def bounded(awaitable: Awaitable[T], seconds: float = 20.0) -> T:
    """Await with a deadline, so a hang fails its test instead of stalling the suite."""
    return await asyncio.wait_for(awaitable, seconds)
