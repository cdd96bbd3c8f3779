"""Jobs for the standalone processes behind PgBouncer: no Django anywhere in the process.
Sync jobs, so that the worker's thread pool runs them too.

Each run appends a line ``label job_id attempt pid`` to the file named by PGBOUNCER_RUNS_FILE
(one short write in append mode, whole even with several processes), so the test counts
executions without a database connection of the job's own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from soniq import JobContext, Soniq


def _record(label: str, ctx: JobContext) -> None:
    line = f"{label} {ctx.job_id} {ctx.attempt} {os.getpid()}\n"
    with open(os.environ["PGBOUNCER_RUNS_FILE"], "a") as runs:
        runs.write(line)


def jobs_on(app: Soniq) -> Soniq:
    """Define the jobs on ``app``: the worker's app below, and the test's own enqueuing app
    (which must know them: a job's options, such as its retries, are written at enqueue)."""

    @app.job(name="bouncer.add")
    def add(n: int, ctx: JobContext) -> int:
        _record("add", ctx)
        return n + 1

    @app.job(name="bouncer.refuse", retries=0)
    def refuse(ctx: JobContext) -> str:
        """Fails until the file PGBOUNCER_RUNS_FILE + ".fixed" exists: dead letters."""
        _record("refuse", ctx)
        if not Path(os.environ["PGBOUNCER_RUNS_FILE"] + ".fixed").exists():
            raise RuntimeError("the partner is down")
        return "sent"

    @app.job(name="bouncer.hold", timeout=600)
    def hold(ctx: JobContext) -> str:
        """Runs until its abort is requested (a minute at most)."""
        _record("hold", ctx)
        deadline = time.monotonic() + 60
        while not ctx.abort_requested and time.monotonic() < deadline:
            time.sleep(0.02)
        return "stopped"

    @app.job(name="bouncer.capped", concurrency_limit=2, rate_limit="50/s")
    def capped(n: int, ctx: JobContext) -> int:
        """Limited: claimed by the limited claim (advisory locks in its transaction)."""
        _record("capped", ctx)
        return n

    @app.periodic(every=1, name="bouncer.tick")
    def tick(ctx: JobContext) -> None:
        _record("tick", ctx)

    return app


app = jobs_on(Soniq())
