"""Replicas that all run ``soniq setup`` (or ``manage.py migrate``) at start, at the same time,
on a fresh database: every one succeeds, one after the other (an advisory lock)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from soniq.management.commands.migrate import WAITING
from tests.acceptance.processes import ROOT
from tests.pg_server import ThrowawayCluster

pytestmark = pytest.mark.acceptance

ROUNDS = 5
SONIQ_TABLES = {"soniq_jobs", "soniq_workers", "soniq_dead_letter_jobs", "soniq_schedules"}
SONIQ_MIGRATIONS = sorted(
    path.stem for path in (ROOT / "soniq" / "migrations").glob("0*.py") if path.is_file()
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster().start()
    yield own
    own.stop()


def _fresh_database(cluster: ThrowawayCluster, name: str) -> str:
    """A new, empty database on the throwaway cluster; its URL."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _run_together(commands: list[list[str]], env: dict[str, str], logs: Path) -> list[str]:
    """Start every command before waiting for any; assert each exits 0; their outputs."""
    files = [(logs / f"process-{n}.log").open("wb") for n in range(len(commands))]
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        for command, log in zip(commands, files, strict=True)
    ]
    codes = [process.wait(180) for process in processes]
    for log in files:
        log.close()
    outputs = [(logs / f"process-{n}.log").read_text() for n in range(len(commands))]
    assert codes == [0] * len(commands), "\n---\n".join(outputs)
    return outputs


def _applied(url: str, app: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name FROM django_migrations WHERE app = %s ORDER BY name", (app,)
        ).fetchall()
    return [row[0] for row in rows]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows.fetchall()}


def test_two_soniq_setups_at_once_on_a_fresh_database(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "soniq.cli", "setup"]
    waited = 0
    for round_number in range(1, ROUNDS + 1):
        url = _fresh_database(cluster, f"r{round_number}")
        logs = tmp_path / f"r{round_number}"
        logs.mkdir()
        env = _clean_env(SONIQ_DATABASE_URL=url, PYTHONPATH=str(ROOT))
        outputs = _run_together([command, command], env, logs)

        # Each migration recorded exactly once, and soniq's tables all there.
        assert _applied(url, "soniq") == SONIQ_MIGRATIONS
        assert _tables(url) >= SONIQ_TABLES
        # The one that waited found everything applied once it had the lock.
        waiting = [output for output in outputs if WAITING in output]
        assert len(waiting) <= 1, outputs
        if waiting:
            waited += 1
            assert "No migrations to apply." in waiting[0]
    # How often the two overlapped depends on the machine (without the lock, most rounds
    # fail), so it is reported rather than asserted.
    print(f"{waited} of {ROUNDS} rounds: one setup waited for the other")


def test_two_manage_py_migrates_at_once_on_a_fresh_database(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """The whole testproject (auth, contenttypes, admin, ... and soniq) through manage.py."""
    command = [sys.executable, str(ROOT / "testproject" / "manage.py"), "migrate"]
    url = _fresh_database(cluster, "project")
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=url,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
    )
    outputs = _run_together([command, command], env, tmp_path)
    assert _applied(url, "soniq") == SONIQ_MIGRATIONS
    assert _tables(url) >= SONIQ_TABLES | {"auth_user", "django_content_type", "django_admin_log"}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (app, name)) FROM django_migrations"
        ).fetchone()
    assert row is not None and row[0] == row[1]
    assert sum(WAITING in output for output in outputs) <= 1
