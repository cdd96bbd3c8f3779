"""soniq's ``migrate`` command: Django's own, behind a PostgreSQL advisory lock."""

from __future__ import annotations

import threading
import time
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import connections

from soniq.backends.postgres.migrate_lock import MIGRATE_LOCK_KEY
from soniq.backends.postgres.worker_statements import LOCK_NAMESPACE
from soniq.management.commands.migrate import WAITING
from tests.helpers import conninfo, query_elsewhere, wait_until

# The lock as pg_locks shows it (objid is the second key as an unsigned 32-bit oid).
_LOCK_ROWS = """
SELECT granted FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = %s)
  AND classid = %s AND objid = %s AND objsubid = 2
"""


def _lock_rows() -> list[bool]:
    name = connections["default"].settings_dict["NAME"]
    rows = query_elsewhere("default", _LOCK_ROWS, (name, LOCK_NAMESPACE, MIGRATE_LOCK_KEY % 2**32))
    return [row[0] for row in rows]


def test_soniq_migrate_replaces_djangos() -> None:
    assert get_commands()["migrate"] == "soniq"
    ours = load_command_class("soniq", "migrate")
    django = load_command_class("django.core", "migrate")
    assert isinstance(ours, type(django))
    assert (
        ours.create_parser("manage.py", "migrate").format_help()
        == django.create_parser("manage.py", "migrate").format_help()
    )


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_plan_check_and_plain_runs_behave_as_djangos() -> None:
    out = StringIO()
    call_command("migrate", "soniq", "--plan", stdout=out)
    assert out.getvalue() == "Planned operations:\n  No planned migration operations.\n"
    call_command("migrate", "--check", verbosity=0)  # everything applied: no exit
    out = StringIO()
    call_command("migrate", "soniq", stdout=out)
    assert "No migrations to apply." in out.getvalue()
    assert WAITING not in out.getvalue()
    call_command("migrate", "soniq", database="sqlite", verbosity=0)
    assert _lock_rows() == []  # released after each run


@pytest.mark.django_db
def test_a_failing_migrate_releases_the_lock() -> None:
    with pytest.raises(CommandError):
        call_command("migrate", "soniq", "9999_no_such_migration", verbosity=0)
    assert _lock_rows() == []


@pytest.mark.django_db(transaction=True)
def test_migrate_waits_while_another_run_holds_the_lock() -> None:
    out, err = StringIO(), StringIO()
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            call_command("migrate", "soniq", stdout=out, stderr=err)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connections.close_all()

    with psycopg.connect(conninfo(), autocommit=True, application_name="other-migrate") as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, MIGRATE_LOCK_KEY))
        waiting = (
            f"{WAITING} on database 'default' (held by pid {other.info.backend_pid}, "
            "other-migrate on 127.0.0.1)...\n"
        )
        thread = threading.Thread(target=migrate)
        thread.start()
        try:
            wait_until(err.getvalue)
            time.sleep(0.5)  # a few tries later, still waiting
            assert thread.is_alive()
            assert _lock_rows() == [True]  # held here only
            assert out.getvalue() == ""  # nothing planned, let alone applied, while waiting
            assert err.getvalue() == waiting, "it names the holder"
        finally:
            other.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, MIGRATE_LOCK_KEY))
        thread.join(30)
    assert not thread.is_alive()
    assert failures == []
    assert "No migrations to apply." in out.getvalue()
    assert err.getvalue() == waiting
    assert _lock_rows() == []
