"""``soniq worker`` finds jobs modules in the current directory, but never lets a file there
stand in for an installed library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.processes import ROOT

pytestmark = pytest.mark.acceptance

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

ENQUEUE = """
import asyncio, sys
from soniq import Soniq

async def main():
    app = Soniq(database_url=sys.argv[1])
    try:
        job_id = await app.enqueue("planted.echo", args={"n": 7})
        print(job_id)
    finally:
        await app.close()

asyncio.run(main())
"""

RESULT = """
import asyncio, sys
from soniq import Soniq

async def main():
    app = Soniq(database_url=sys.argv[1])
    try:
        info = await app.get_job(sys.argv[2])
        print(info.status.value, info.result)
    finally:
        await app.close()

asyncio.run(main())
"""


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_module_planted_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    assert SONIQ.exists(), f"the soniq console script is not installed next to {sys.executable}"
    (tmp_path / "psycopg_pool.py").write_text(PLANTED)
    (tmp_path / "planted_jobs.py").write_text(JOBS)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("PYTHONPATH", None)
    env.update(SONIQ_DATABASE_URL=url, SONIQ_JOBS_MODULES="planted_jobs")
    _run([str(SONIQ), "setup"], tmp_path, env)
    # The helper scripts run from the repository, away from the planted file.
    job_id = _run([sys.executable, "-c", ENQUEUE, url], ROOT, env).strip()

    output = _run([str(SONIQ), "worker", "--run-once"], tmp_path, env)

    assert not (tmp_path / "planted-module-ran").exists(), output
    assert _run([sys.executable, "-c", RESULT, url, job_id], ROOT, env).split() == ["done", "7"]
