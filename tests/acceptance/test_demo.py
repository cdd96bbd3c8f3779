"""The README's demo: the testproject on its SQLite default, end to end, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.processes import ROOT

pytestmark = pytest.mark.acceptance


def test_demo_on_sqlite_settles_every_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        SQLITE_PATH=str(tmp_path / "demo.sqlite3"),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
    )
    manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
    for command in (["migrate", "--verbosity", "0"], ["shop_demo", "--timeout", "60"]):
        done = subprocess.run(
            [*manage, *command], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    table = {line.split()[0]: line for line in lines if line.startswith("   ") and line.split()}
    assert "done" in table["fulfill_order"]
    assert "3/4" in table["build_report"] and "done" in table["build_report"]
    assert "dead_letter" in table["import_feed"]
    assert "as scheduled" in table["remind"]
    assert "done" in table["count_open_orders"]
    assert "fired by the scheduler" in table["count_open_orders"]
    assert "rolled back, no order and no job" in done.stdout
