"""Text no database can store, and dates past the calendar, are refused with a typed error on
every enqueue path and every backend, before anything is written.

Before: a lone surrogate escaped as ``UnicodeEncodeError``, a NUL in a task name or a dedup key
as ``psycopg.DataError`` (or was stored as is by SQLite and the memory backend), and
``scheduled_at=1e12`` as ``OverflowError``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connections

from soniq import (
    ArgumentsNotSerializableError,
    EnqueueError,
    InvalidOptionError,
    Soniq,
)
from soniq.backends.memory import MemoryBackend
from tests.helpers import committed_job_count, conninfo

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)

SURROGATE = "a\ud800b"
NUL = "a\x00b"


class Setup:
    """An app on one backend, its catch-all job, and how to count the jobs it stored."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "memory":
            self.app = Soniq(database_url="memory://")
        elif kind == "django-postgres":
            self.app = Soniq(database="default")
        elif kind == "django-sqlite":
            self.app = Soniq(database="sqlite")
        elif kind == "url-postgres":
            self.app = Soniq(database_url=conninfo())
        else:
            path = connections["sqlite"].settings_dict["NAME"]
            self.app = Soniq(database_url=f"sqlite:///{path}")

        @self.app.job(name="fuzz.anything")
        def anything(**kwargs: Any) -> None:
            pass

        self.job = anything

    def stored(self) -> int:
        backend = self.app.backend
        if isinstance(backend, MemoryBackend):
            return len(backend._jobs)
        return committed_job_count("sqlite" if self.kind.endswith("sqlite") else "default")


KINDS = ["memory", "django-postgres", "django-sqlite", "url-postgres", "url-sqlite"]


@pytest.fixture(params=KINDS)
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    made = Setup(request.param)
    yield made
    asyncio.run(made.app.close())


def _call(result: Any) -> Any:
    """Run what a path returned: a coroutine on a fresh event loop, anything else as is."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result


Call = Callable[[Setup], Any]


def _argument_paths(kwargs: dict[str, Any]) -> dict[str, Call]:
    """Every way of handing the job these keyword arguments."""
    return {
        "enqueue_sync": lambda s: s.app.enqueue_sync(s.job, **kwargs),
        "enqueue": lambda s: s.app.enqueue(s.job, **kwargs),
        "enqueue_by_name": lambda s: s.app.enqueue_sync("fuzz.anything", args=kwargs),
        "enqueue_many_sync": lambda s: s.app.enqueue_many_sync(s.job, [{}, kwargs]),
        "enqueue_many": lambda s: s.app.enqueue_many(s.job, [kwargs, {}]),
        "schedule_sync": lambda s: s.app.schedule_sync(s.job, 10, **kwargs),
        "schedule": lambda s: s.app.schedule(s.job, 10, **kwargs),
        "job.enqueue": lambda s: s.job.enqueue(**kwargs),
        "job.aenqueue": lambda s: s.job.aenqueue(**kwargs),
        "job.using.enqueue": lambda s: s.job.using(queue="q").enqueue(**kwargs),
        "job.using.aenqueue": lambda s: s.job.using(priority=5).aenqueue(**kwargs),
    }


def _name_paths(name: str) -> dict[str, Call]:
    return {
        "enqueue_sync": lambda s: s.app.enqueue_sync(name, args={}),
        "enqueue": lambda s: s.app.enqueue(name, args={}),
        "enqueue_many_sync": lambda s: s.app.enqueue_many_sync(name, [{}]),
        "enqueue_many": lambda s: s.app.enqueue_many(name, [{}]),
        "schedule_sync": lambda s: s.app.schedule_sync(name, 10),
        "schedule": lambda s: s.app.schedule(name, 10),
    }


def _dedup_paths(key: str) -> dict[str, Call]:
    return {
        "enqueue_sync": lambda s: s.app.enqueue_sync(s.job, dedup_key=key),
        "enqueue": lambda s: s.app.enqueue(s.job, dedup_key=key),
        "enqueue_by_name": lambda s: s.app.enqueue_sync("fuzz.anything", args={}, dedup_key=key),
        "schedule_sync": lambda s: s.app.schedule_sync(s.job, 10, dedup_key=key),
        "schedule": lambda s: s.app.schedule(s.job, 10, dedup_key=key),
        "job.using": lambda s: s.job.using(dedup_key=key),
    }


def _when_paths(when: Any) -> dict[str, Call]:
    return {
        "enqueue_sync": lambda s: s.app.enqueue_sync(s.job, scheduled_at=when),
        "enqueue": lambda s: s.app.enqueue(s.job, scheduled_at=when),
        "enqueue_many_sync": lambda s: s.app.enqueue_many_sync(s.job, [{}], scheduled_at=when),
        "enqueue_many": lambda s: s.app.enqueue_many(s.job, [{}], scheduled_at=when),
        "schedule_sync": lambda s: s.app.schedule_sync(s.job, when),
        "schedule": lambda s: s.app.schedule(s.job, when),
        "job.using": lambda s: s.job.using(scheduled_at=when),
    }


# case -> (the call, the error, its `argument`, a fragment of its message)
CASES: dict[str, tuple[Call, type[EnqueueError], str, str]] = {}


def _add(prefix: str, paths: dict[str, Call], error: Any, argument: str, text: str) -> None:
    for path, call in paths.items():
        CASES[f"{prefix}-{path}"] = (call, error, argument, text)


_add(
    "surrogate_value",
    _argument_paths({"s": SURROGATE}),
    ArgumentsNotSerializableError,
    "args['s']",
    "lone surrogate",
)
_add(
    "surrogate_key",
    _argument_paths({"k\udc80": 1}),
    ArgumentsNotSerializableError,
    "args",
    "lone surrogate",
)
_add(
    "nested_surrogate",
    _argument_paths({"s": {"deep": ["ok", "\udfff"]}}),
    ArgumentsNotSerializableError,
    "args['s']['deep'][1]",
    "lone surrogate",
)
_add("nul_task_name", _name_paths(NUL), InvalidOptionError, "target", "NUL")
_add("surrogate_task_name", _name_paths(SURROGATE), InvalidOptionError, "target", "surrogate")
_add("nul_dedup_key", _dedup_paths(NUL), InvalidOptionError, "dedup_key", "NUL")
_add("surrogate_dedup_key", _dedup_paths(SURROGATE), InvalidOptionError, "dedup_key", "surrogate")
_add("seconds_1e12", _when_paths(1e12), InvalidOptionError, "scheduled_at", "Unix timestamp")
_add("seconds_10_400", _when_paths(10**400), InvalidOptionError, "scheduled_at", "seconds")
_add(
    "huge_timedelta",
    _when_paths(timedelta(days=999_999_999)),
    InvalidOptionError,
    "scheduled_at",
    "latest date",
)
_add(
    "datetime_past_9999_in_utc",
    _when_paths(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))),
    InvalidOptionError,
    "scheduled_at",
    "out of range",
)
_add(
    "datetime_before_year_1_in_utc",
    _when_paths(datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
    InvalidOptionError,
    "scheduled_at",
    "out of range",
)
_add(
    "nul_queue",
    {"using": lambda s: s.job.using(queue=NUL)},
    InvalidOptionError,
    "queue",
    "not a valid queue name",
)
_add(
    "surrogate_queue",
    {"enqueue": lambda s: s.app.enqueue(s.job, queue=SURROGATE)},
    InvalidOptionError,
    "queue",
    "not a valid queue name",
)


def _problem(setup: Setup, case: str) -> str | None:
    """What is wrong with how ``case`` was refused (``None``: as it should be)."""
    call, error, argument, text = CASES[case]
    try:
        _call(call(setup))
    except Exception as exc:
        caught = exc
    else:
        return "nothing was raised"
    if not isinstance(caught, error):
        return f"raised {type(caught).__name__}: {caught!r}"
    if text not in str(caught):
        return f"message {str(caught)!r} lacks {text!r}"
    # In enqueue_many the row leads the path: args_list[1]['s'] for the second row.
    if caught.argument not in (
        argument,
        argument.replace("args", "args_list[0]", 1),
        argument.replace("args", "args_list[1]", 1),
    ):
        return f"argument is {caught.argument!r}, not {argument!r}"
    if not caught.job_name:
        return "no job_name"
    try:
        str(caught).encode()  # printable: the message holds no lone surrogate itself
    except UnicodeEncodeError:
        return "the message itself cannot be printed"
    return None


def test_refused_with_a_typed_error_and_nothing_written(setup: Setup) -> None:
    """Every case on every path, in one test per backend (a test per case would spend
    minutes flushing the databases)."""
    problems = {case: _problem(setup, case) for case in sorted(CASES)}
    assert {case: text for case, text in problems.items() if text} == {}
    assert len(problems) > 70
    assert setup.stored() == 0


def test_the_latest_datetime_and_the_earliest_are_stored(setup: Setup) -> None:
    latest = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    earliest = datetime(1, 1, 1, tzinfo=UTC)
    for when in (latest, earliest):
        job_id = setup.job.using(scheduled_at=when).enqueue()
        info = setup.app.get_job_sync(job_id)
        assert info is not None and info.scheduled_at == when
