"""One behavioural suite for every storage backend: the ``app`` fixture runs each test on the
memory backend, on SQLite (the "sqlite" test database file) and on PostgreSQL ("default").

Every test module carries :data:`CONFORMANCE` (both test databases, flushed between tests);
the fixture checks at set-up that the previous test's data is really gone, and closes the app
(and any worker backend a test made) at teardown, before pytest-django flushes.

A test that needs a capability asks for it with :func:`requires`, so the skip names the
backend and the flag (run pytest with ``-rs`` to see the reasons).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from django.db import connections

from soniq import Soniq, __version__
from soniq.backends.base import WorkerBackend
from soniq.core.records import WorkerInfo
from tests.helpers import bounded, conninfo, eventually, query_elsewhere  # noqa: F401 (re-exported)

T = TypeVar("T")

# Both test databases exist and are flushed after each test (the SQLite file included, which
# the SQLite backend reaches through a connection of its own).
CONFORMANCE = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)

# Short intervals so that every loop of a worker turns quickly in tests.
FAST: dict[str, Any] = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 30,
    "shutdown_timeout": 2,
    "error_retry_delay": 0.1,
}

# A bound on anything a test awaits, so that a hang fails the test instead of the suite.
DEADLINE = 10.0

# The Django alias whose test database backs each backend (None: nothing outside the process).
ALIASES: dict[str, str | None] = {"memory": None, "sqlite": "sqlite", "postgres": "default"}

# What each capability flag means, for the skip reasons.
CAPABILITIES = {
    "supports_listen": "LISTEN",
    "supports_transactional_enqueue": "transactional enqueue",
}

# The tables soniq writes; all must be empty when a test starts.
TABLES = ("soniq_jobs", "soniq_dead_letter_jobs", "soniq_workers", "soniq_limit_starts")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soniq_settings(**settings): settings of the conformance app, over the fast ones",
    )


def database_url(kind: str) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        # pytest-django has pointed the alias at its test database file by now.
        return f"sqlite:///{connections['sqlite'].settings_dict['NAME']}"
    return conninfo()


def leftovers(alias: str) -> dict[str, int]:
    """Rows of soniq's tables in the database behind ``alias`` (committed data only)."""
    counts = {
        table: query_elsewhere(alias, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES
    }
    return {table: count for table, count in counts.items() if count}


@pytest_asyncio.fixture(params=list(ALIASES))
async def app(request: pytest.FixtureRequest) -> AsyncIterator[Soniq]:
    """A fresh app on one backend, with the fast settings (and a test's ``soniq_settings``)."""
    kind = str(request.param)
    marker = request.node.get_closest_marker("soniq_settings")
    overrides = dict(marker.kwargs) if marker is not None else {}
    alias = ALIASES[kind]
    if alias is not None:
        # The previous test's rows must have been flushed, whatever connections it left.
        assert leftovers(alias) == {}, f"{kind}: soniq tables not flushed between tests"
    application = Soniq(database_url=database_url(kind), **{**FAST, **overrides})
    try:
        yield application
    finally:
        await application.close()


def backend_name(app: Soniq) -> str:
    return type(app.backend).__name__


def requires(app: Soniq, capability: str) -> None:
    """Skip the test, naming the backend, unless its backend has ``capability``."""
    if not getattr(app.backend, capability):
        pytest.skip(
            f"{backend_name(app)} does not support {CAPABILITIES[capability]} ({capability}=False)"
        )


def lacks(app: Soniq, capability: str, why: str) -> None:
    """Skip the test, naming the backend, if its backend has ``capability`` (the test is
    about what backends without it do instead)."""
    if getattr(app.backend, capability):
        pytest.skip(
            f"{backend_name(app)} supports {CAPABILITIES[capability]} ({capability}=True): {why}"
        )


@pytest_asyncio.fixture
async def worker_backend(app: Soniq) -> AsyncIterator[WorkerBackend]:
    """The backend a worker of ``app`` would use (for memory, the app's own instance)."""
    backend = app.worker_backend(4)
    try:
        yield backend
    finally:
        await backend.close()


def worker_info(task_names: tuple[str, ...], worker_id: str | None = None) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id or str(uuid.uuid4()),
        hostname=socket.gethostname(),
        pid=os.getpid(),
        queues=None,
        task_names=task_names,
        concurrency=1,
        version=__version__,
    )
