"""``soniq worker`` finds jobs modules in the current directory, but never lets a file there
stand in for an installed library: a ``psycopg_pool.py`` planted where the worker starts is not
imported (the PostgreSQL backend imports the real one only when the worker opens its pool)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from soniq import JobStatus, Soniq
from tests.helpers import conninfo

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

# The console script pip installed with soniq: unlike `python -m`, Python puts its own folder,
# not the current directory, first on sys.path.
SONIQ = Path(sys.executable).with_name("soniq")

PLANTED = """
from pathlib import Path
Path(__file__).with_name("planted-module-ran").write_text("ran")
raise SystemExit("the planted psycopg_pool.py was imported")
"""

JOBS = """
from soniq import Soniq

app = Soniq()

@app.job(name="planted.echo")
def echo(n: int) -> int:
    return n
"""


def test_a_module_planted_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    assert SONIQ.exists(), f"the soniq console script is not installed next to {sys.executable}"
    (tmp_path / "psycopg_pool.py").write_text(PLANTED)
    (tmp_path / "planted_jobs.py").write_text(JOBS)
    url = conninfo()
    app = Soniq(database_url=url)
    try:
        job_id = app.enqueue_sync("planted.echo", args={"n": 7})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
        env.pop("PYTHONPATH", None)
        env.update(SONIQ_DATABASE_URL=url, SONIQ_JOBS_MODULES="planted_jobs")
        done = subprocess.run(
            [str(SONIQ), "worker", "--run-once"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = done.stdout + done.stderr
        assert not (tmp_path / "planted-module-ran").exists(), output
        assert done.returncode == 0, output
        info = app.get_job_sync(job_id)
        assert info is not None and (info.status, info.result) == (JobStatus.DONE, 7), output
    finally:
        app.backend.close_sync()  # type: ignore[attr-defined]
