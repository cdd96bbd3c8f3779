"""Fixtures for tests that run real worker processes against PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.jobs import RUNS_TABLE
from tests.acceptance.processes import Supervisor, WorkerProcess
from tests.helpers import conninfo


@pytest.fixture
def runs_table(transactional_db: None) -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(RUNS_TABLE)
        conn.execute("TRUNCATE soniq_test_runs")


@pytest.fixture
def start_worker(runs_table: None, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, *args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def supervise(runs_table: None, tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """``supervise(*args, **env)``: a worker restarted whenever it exits."""
    started: list[Supervisor] = []

    def start(*args: str, **env: str) -> Supervisor:
        supervisor = Supervisor(tmp_path, *args, **env)
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.stop()
