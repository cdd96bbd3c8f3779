"""A job that counts its runs in the worker's memory and writes them when the worker exits,
so that 100,000 runs can be counted from outside without 100,000 more writes.

The worker imports it through ``SONIQ_JOBS_MODULES``; ``SONIQ_TEST_TALLY_DIR`` is where each
worker process writes ``<pid>.json``, the list of the numbers it ran, at exit.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

from tests.acceptance.jobs import app

_ran: list[int] = []


@app.job(name="acc.count_in_memory")
async def count_in_memory(n: int) -> None:
    _ran.append(n)


def _write() -> None:
    where = os.environ.get("SONIQ_TEST_TALLY_DIR")
    if where:
        Path(where, f"{os.getpid()}.json").write_text(json.dumps(_ran))


atexit.register(_write)
