"""Jobs for the SQLite worker processes test: each run appends its job id to a file."""

from __future__ import annotations

import os
import time

from soniq import JobContext, Soniq

app = Soniq()


@app.job(name="sqlite.count")
def count(n: int, ctx: JobContext, work: float = 0.0) -> int:
    time.sleep(work)  # a little work, so that a drain outlasts the other worker's poll
    # One short O_APPEND write per run: lines from several processes never interleave.
    with open(os.environ["SONIQ_TEST_RUNS_FILE"], "a") as runs:
        runs.write(f"{ctx.job_id} {os.getpid()}\n")
    return n


@app.job(name="sqlite.slow", retries=0)
def slow(seconds: float, ctx: JobContext) -> str:
    with open(os.environ["SONIQ_TEST_RUNS_FILE"], "a") as runs:
        runs.write(f"{ctx.job_id} {os.getpid()} start\n")
    time.sleep(seconds)
    return "slept"
