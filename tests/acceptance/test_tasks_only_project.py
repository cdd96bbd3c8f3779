"""A Django 6 project with only ``@task`` functions and the ``TASKS`` setting: no Soniq app of
its own, no ``SONIQ["APP"]``. It migrates, enqueues inside ``transaction.atomic()``, runs its
tasks with ``manage.py soniq_worker`` and reads results and errors with ``get_result``, each
step a process of its own, on a database of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytest.importorskip("django.tasks", reason="django.tasks is Django 6.0 and newer")

from django.db import connections

from tests.acceptance.processes import ROOT
from tests.helpers import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db]

SETTINGS = """
SECRET_KEY = "tasks-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "soniq", "notes"]
DATABASES = {{"default": {database}}}
TASKS = {{
    "default": {{
        "BACKEND": "soniq.tasks.SoniqBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {{"MAX_ATTEMPTS": 2, "RETRY_DELAY": 0}},
    }}
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

TASKS = """
from django.tasks import TaskContext, task


@task()
def shout(text: str) -> str:
    return text.upper()


@task(takes_context=True)  # two attempts: the backend's OPTIONS
def stubborn(context: TaskContext, text: str) -> None:
    raise RuntimeError(f"{text}: attempt {context.attempt}")


@task(priority=50, queue_name="reports")
async def count(words: list) -> int:
    return len(words)
"""

ENQUEUE = """
import json
import django
django.setup()
from django.db import transaction
from notes.tasks import count, shout, stubborn

with transaction.atomic():
    ids = [shout.enqueue("hello").id, stubborn.enqueue("nope").id, count.enqueue(["a", "b"]).id]
with transaction.atomic():
    dropped = shout.enqueue("never").id
    transaction.set_rollback(True)
print(json.dumps({"ids": ids, "dropped": dropped}))
"""

READ = """
import json, sys
import django
django.setup()
from django.tasks import default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist

out = {}
for result_id in sys.argv[1:]:
    try:
        r = default_task_backend.get_result(result_id)
    except TaskResultDoesNotExist:
        out[result_id] = None
        continue
    out[result_id] = {
        "task": r.task.module_path,
        "status": r.status,
        "attempts": r.attempts,
        "value": r.return_value if r.status == "SUCCESSFUL" else None,
        "errors": [
            [e.exception_class_path, e.traceback.strip().splitlines()[-1]] for e in r.errors
        ],
    }
print(json.dumps(out))
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The project's files, and a database of its own (dropped at the end)."""
    params = dict(connections["default"].settings_dict)
    name = f"{params['NAME']}_tasks_only"[:63]
    server = psycopg.conninfo.make_conninfo(
        dbname="postgres",
        user=params["USER"],
        password=params["PASSWORD"],
        host=params["HOST"],
        port=params["PORT"],
    )
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": params["USER"],
        "PASSWORD": params["PASSWORD"],
        "HOST": params["HOST"],
        "PORT": params["PORT"],
    }
    (tmp_path / "tasksonly").mkdir()
    (tmp_path / "tasksonly" / "__init__.py").write_text("")
    (tmp_path / "tasksonly" / "settings.py").write_text(SETTINGS.format(database=database))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "__init__.py").write_text("")
    (tmp_path / "notes" / "tasks.py").write_text(TASKS)
    (tmp_path / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    yield tmp_path, name
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tasksonly.settings",
        PYTHONPATH=os.pathsep.join([str(directory), str(ROOT)]),
        SONIQ_POLL_INTERVAL="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(directory: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=directory,
        env=_env(directory),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_project_with_only_tasks(project: Any) -> None:
    directory, _ = project
    _run(directory, "manage.py", "migrate", "-v", "0")
    enqueued = json.loads(_run(directory, "-c", ENQUEUE))
    ids, dropped = enqueued["ids"], enqueued["dropped"]

    log = (directory / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "soniq_worker", "--concurrency", "2"],
        cwd=directory,
        env=_env(directory),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def finished() -> Any:
            assert worker.poll() is None, (directory / "worker.log").read_text()
            results = json.loads(_run(directory, "-c", READ, *ids))
            done = all(r["status"] in ("SUCCESSFUL", "FAILED") for r in results.values())
            return results if done else None

        results = wait_until(finished, timeout=60, interval=0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, (directory / "worker.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()

    shout_id, stubborn_id, count_id = ids
    assert results[shout_id] == {
        "task": "notes.tasks.shout",
        "status": "SUCCESSFUL",
        "attempts": 1,
        "value": "HELLO",
        "errors": [],
    }
    assert results[count_id]["value"] == 2
    assert results[stubborn_id] == {
        "task": "notes.tasks.stubborn",
        "status": "FAILED",
        "attempts": 2,
        "value": None,
        "errors": [
            ["builtins.RuntimeError", "RuntimeError: nope: attempt 1"],
            ["builtins.RuntimeError", "RuntimeError: nope: attempt 2"],
        ],
    }
    assert json.loads(_run(directory, "-c", READ, dropped)) == {dropped: None}
    print(json.dumps(results, indent=1))  # shown with -s: the demonstration of this flow
