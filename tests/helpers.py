"""Small helpers shared by the tests."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from typing import TypeVar

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
