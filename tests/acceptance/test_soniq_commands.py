"""The standalone ``soniq status`` and ``soniq healthcheck``: a real process, configured by
``SONIQ_DATABASE_URL`` alone, on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

from tests.acceptance.processes import ROOT
from tests.rows import Rows

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.django_db(databases=["default", "sqlite"], transaction=True),
]


def _url(alias: str) -> str:
    """SONIQ_DATABASE_URL for the test database behind ``alias``."""
    found = connections[alias].settings_dict
    if alias == "sqlite":
        return f"sqlite:///{found['NAME']}"
    auth = quote(found["USER"]) + (f":{quote(found['PASSWORD'])}" if found["PASSWORD"] else "")
    host = f"{found['HOST'] or '127.0.0.1'}:{found['PORT'] or 5432}"
    return f"postgresql://{auth}@{host}/{quote(found['NAME'])}"


def soniq(alias: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return soniq_on(_url(alias), *args, tmp_path=tmp_path)


def soniq_on(url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``soniq ARGS`` in a process of its own, configured by ``SONIQ_DATABASE_URL`` alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(SONIQ_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "soniq.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("alias", ["default", "sqlite"], ids=["postgres", "sqlite"])
def test_status_and_healthcheck_from_the_shell(alias: str, tmp_path: Path) -> None:
    rows = Rows(alias)
    now = datetime.now(UTC)
    rows.worker(hostname="box-1")
    rows.job(scheduled_at=now - timedelta(minutes=2))
    rows.dead_letter(dead_lettered_at=now)

    shown = soniq(alias, "status", "--json", tmp_path=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    [queue] = data["queues"]
    assert (queue["queue"], queue["due"], queue["failed_last_hour"]) == ("default", 1, 1)
    assert [w["hostname"] for w in data["workers"]] == ["box-1"]
    text = soniq(alias, "status", tmp_path=tmp_path)
    assert text.returncode == 0 and "Workers: 1 alive" in text.stdout

    healthy = soniq(alias, "healthcheck", "--worker", "--max-latency", "600", tmp_path=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.count("\nok") + healthy.stdout.startswith("ok") == 4
    late = soniq(alias, "healthcheck", "--max-latency", "60", tmp_path=tmp_path)
    assert late.returncode == 1 and "FAIL  latency" in late.stdout


def test_an_unreachable_database(tmp_path: Path) -> None:
    # Port 1: nothing listens there, so the connection is refused at once.
    url = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return soniq_on(url, *args, tmp_path=tmp_path)

    probe = run("healthcheck")
    assert probe.returncode == 1
    assert probe.stdout.splitlines()[0].startswith("FAIL  database    unreachable: ")
    assert probe.stdout.splitlines()[1] == "skip  migrations  skipped"
    status = run("status")
    assert status.returncode == 2 and status.stderr.startswith("soniq: the database did not")


@pytest.mark.parametrize("alias", ["default", "sqlite"], ids=["postgres", "sqlite"])
def test_dead_letters_exported_and_requeued_from_the_shell(alias: str, tmp_path: Path) -> None:
    rows = Rows(alias)
    dead = rows.dead_letter(args={"to": "a@example.com", "api_key": "k-123"})
    exported = soniq(alias, "dead-letters", "export", "--all", tmp_path=tmp_path)
    assert exported.returncode == 0, exported.stderr
    [line] = exported.stdout.splitlines()
    record = json.loads(line)
    assert record["id"] == str(dead.pk) and record["args"]["api_key"] == "********"
    requeued = soniq(alias, "dead-letters", "requeue", str(dead.pk), tmp_path=tmp_path)
    assert requeued.returncode == 0 and requeued.stdout == f"requeued: {dead.pk}\n"
    shown = soniq(alias, "jobs", "show", str(dead.pk), "--json", tmp_path=tmp_path)
    assert json.loads(shown.stdout)["status"] == "queued"
    again = soniq(alias, "dead-letters", "requeue", str(dead.pk), tmp_path=tmp_path)
    assert again.returncode == 1 and again.stdout.startswith(f"refused: {dead.pk}: ")
    usage = soniq(alias, "dead-letters", "delete", tmp_path=tmp_path)
    assert usage.returncode == 2 and "give ids, or --all" in usage.stderr


def test_a_database_without_soniq_or_without_a_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()  # a database, but no soniq tables in it
    status = soniq_on(f"sqlite:///{empty}", "status", tmp_path=tmp_path)
    assert status.returncode == 2
    assert "soniq's tables are missing" in status.stderr and "soniq setup" in status.stderr
    probe = soniq_on(f"sqlite:///{empty}", "healthcheck", tmp_path=tmp_path)
    assert probe.returncode == 1 and "FAIL  migrations  not applied: 0001_initial" in probe.stdout

    missing = tmp_path / "typo.sqlite3"
    typo = soniq_on(f"sqlite:///{missing}", "healthcheck", tmp_path=tmp_path)
    assert typo.returncode == 2 and f"no SQLite database at {missing}" in typo.stderr
    assert not missing.exists()  # nothing created by looking
