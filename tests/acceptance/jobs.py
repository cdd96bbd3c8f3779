"""Jobs run by real worker processes in the acceptance tests.

Each records what it did in the table ``soniq_test_runs`` (created by the tests), so the test
process can count executions from outside the worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from soniq import Cancel, Discard, JobContext, Retry, Snooze, Soniq

app = Soniq()

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS soniq_test_runs (
    seq bigserial PRIMARY KEY,
    label text NOT NULL,
    job_id text,
    attempt int,
    pid int NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def record(label: str, ctx: JobContext | None = None, **data: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO soniq_test_runs (label, job_id, attempt, pid, data) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                label,
                ctx.job_id if ctx else None,
                ctx.attempt if ctx else None,
                os.getpid(),
                json.dumps(data),
            ],
        )


arecord = sync_to_async(record)


@app.job(name="acc.count")
def count(n: int, ctx: JobContext) -> int:
    record("count", ctx, n=n)
    return n


@app.job(name="acc.slow", retries=0)
async def slow(seconds: float, ctx: JobContext) -> str:
    await arecord("start", ctx)
    await asyncio.sleep(seconds)
    await arecord("end", ctx)
    return "slept"


@app.job(name="acc.flaky", retries=3, retry_delay=[0.5, 1.0])
def flaky(fail_times: int, ctx: JobContext) -> int:
    record("flaky", ctx)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@app.job(name="acc.backoff", retries=3, retry_delay=0.4, retry_backoff=True)
def backoff(ctx: JobContext) -> None:
    record("backoff", ctx)
    raise RuntimeError("always")


@app.job(name="acc.doomed", retries=2)
def doomed(reason: str, ctx: JobContext) -> None:
    raise ValueError(f"doomed: {reason} (attempt {ctx.attempt})")


@app.job(name="acc.sleepy", timeout=0.5, retries=1)
async def sleepy(ctx: JobContext) -> None:
    await arecord("sleepy", ctx)
    await asyncio.sleep(30)


@app.job(name="acc.context", queue="ctx", priority=7, retries=4)
async def context(ctx: JobContext) -> dict[str, Any]:
    return {
        "job_id": ctx.job_id,
        "job_name": ctx.job_name,
        "attempt": ctx.attempt,
        "max_attempts": ctx.max_attempts,
        "queue": ctx.queue,
        "worker_id": ctx.worker_id,
        "scheduled_at": ctx.scheduled_at.isoformat() if ctx.scheduled_at else None,
        "created_at": ctx.created_at.isoformat() if ctx.created_at else None,
        "pid": os.getpid(),
    }


@app.job(name="acc.fulfil")
def fulfil(order_id: int) -> str:
    from django.utils import timezone

    from shop.models import Order

    order = Order.objects.get(pk=order_id)
    order.fulfilled_at = timezone.now()
    order.save(update_fields=["fulfilled_at"])
    return order.customer_email


# -- Faults: jobs that kill their worker, and the innocents beside them ----------------------


@app.job(name="acc.innocent")
def innocent(seconds: float, ctx: JobContext) -> str:
    record("start", ctx)
    time.sleep(seconds)
    record("end", ctx)
    return "fine"


@app.job(name="acc.poison_exit")
def poison_exit(ctx: JobContext) -> None:
    record("poison", ctx)
    os._exit(1)  # at once: before the worker could write that this job started


@app.job(name="acc.poison_sigkill")
def poison_sigkill(delay: float, ctx: JobContext) -> None:
    record("poison", ctx)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="acc.poison_segfault")
def poison_segfault(delay: float, ctx: JobContext) -> None:
    record("poison", ctx)
    time.sleep(delay)
    ctypes.string_at(0)  # reads address 0: the interpreter dies of SIGSEGV


@app.job(name="acc.blocks_the_loop")
async def blocks_the_loop(seconds: float, ctx: JobContext) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point


@app.job(name="acc.tally")
async def tally(path: str, seconds: float, ctx: JobContext) -> None:
    # One line per run, appended to a file: cheap enough that a worker runs hundreds a second
    # (and so claims jobs ahead), unlike a row written per run.
    started = time.time()
    with open(path, "a") as out:  # noqa: ASYNC230 - a few bytes, appended atomically
        out.write(f"{ctx.job_id} {os.getpid()} {ctx.worker_id} {started!r}\n")
    await asyncio.sleep(seconds)


@app.job(name="acc.huge_error", retries=3, retry_delay=0)
def huge_error(ctx: JobContext) -> None:
    """Fails every attempt with a 50 MB message."""
    record("huge_error", ctx)
    raise ValueError("X" * 50 * 2**20)


# -- job control ---------------------------------------------------------------------------


@app.job(name="acc.abortable_async", timeout=600)
async def abortable_async(seconds: float, ctx: JobContext) -> str:
    await arecord("abortable_start", ctx)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await arecord("abortable_cancelled", ctx)
        raise
    return "slept"


@app.job(name="acc.abortable_sync", timeout=600)
def abortable_sync(seconds: float, ctx: JobContext) -> str:
    record("abortable_start", ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.abort_requested:
            record("abortable_noticed", ctx)
            return "stopped early"
        time.sleep(0.02)
    return "ran to the end"


@app.job(name="acc.snoozer", retries=0)
def snoozer(ctx: JobContext) -> str:
    record("snoozer", ctx)
    if len(_runs_of(ctx)) == 1:
        raise Snooze(0.3, reason="not ready")
    return "ready"


def _runs_of(ctx: JobContext) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq FROM soniq_test_runs WHERE job_id = %s", [ctx.job_id])
        return cursor.fetchall()


@app.job(name="acc.retrier", retries=1, retry_delay=3600)
def retrier(ctx: JobContext) -> int:
    record("retrier", ctx)
    if ctx.attempt == 1:
        raise Retry(delay=0.3, reason="partner busy")
    return ctx.attempt


@app.job(name="acc.canceller", retries=3)
def canceller(ctx: JobContext) -> None:
    record("canceller", ctx)
    raise Cancel("order withdrawn")


@app.job(name="acc.discarder", retries=3)
def discarder(ctx: JobContext) -> None:
    record("discarder", ctx)
    raise Discard("unknown customer")


@app.job(name="acc.picky", retries=3, retry_delay=0, retry_on=ConnectionError)
def picky(ctx: JobContext) -> None:
    record("picky", ctx)
    if ctx.attempt == 1:
        raise ConnectionError("partner down")
    raise ValueError("bad data")


@app.job(name="acc.never_retried", retries=3, retry_delay=0, no_retry_on=KeyError)
def never_retried(ctx: JobContext) -> None:
    record("never_retried", ctx)
    raise KeyError("missing field")


# -- flow control (test_flow_control_processes.py) -----------------------------------------------


@app.job(name="acc.locked_step")
def locked_step(lock: str, step: int, ctx: JobContext) -> None:
    record("locked_start", ctx, lock=lock, step=step)
    time.sleep(0.02)
    record("locked_end", ctx, lock=lock, step=step)


@app.job(name="acc.capped", concurrency_limit=3)
def capped(seconds: float, ctx: JobContext) -> None:
    record("capped_start", ctx)
    time.sleep(seconds)
    record("capped_end", ctx)


@app.job(name="acc.rated", rate_limit="20/s")
def rated(ctx: JobContext) -> None:
    record("rated", ctx)


@app.job(name="acc.hog", queue="mixed", concurrency_limit=1)
def hog(seconds: float, ctx: JobContext) -> None:
    record("hog_start", ctx)
    time.sleep(seconds)
    record("hog_end", ctx)


@app.job(name="acc.quick", queue="mixed")
def quick(ctx: JobContext) -> None:
    record("quick", ctx)


@app.job(name="acc.guarded", concurrency_limit=1)
def guarded(seconds: float, ctx: JobContext) -> None:
    record("guarded_start", ctx)
    # Long on its first attempt only: the test kills its worker during that one.
    time.sleep(seconds if ctx.attempt == 1 else 0.1)
    record("guarded_end", ctx)
