"""Jobs for ``benchmarks/faults.py``, imported by the ``soniq worker`` processes it starts
(``SONIQ_JOBS_MODULES=fault_jobs`` with ``benchmarks/`` on ``PYTHONPATH``) and by the benchmark
itself to enqueue them.

Every job records each of its runs in the table ``fault_runs`` of the scratch database (the one
``SONIQ_DATABASE_URL`` names), so that runs are counted from outside the workers: a row with
``event = 'start'`` as its first action, and one with ``event = 'end'`` when it is done. Each
row is written on a connection of its own, opened for that one INSERT (autocommit), so that it
is committed whatever happens to the worker next. Besides the columns the brief asks for, a row
keeps the id of the worker that claimed the job (``worker_id``, from ``JobContext``) and ``t``,
the job's own ``time.time()`` at the event (taken before connecting): ``at`` is when the row
reached the database, ``t`` when the job really started or ended.

- ``faults.innocent(seconds)``: sync, ``time.sleep(seconds)``.
- ``faults.ainnocent(seconds)``: async, ``asyncio.sleep(seconds)``.
- ``faults.poison_exit()``: sync; records its start, then ``os._exit(1)`` at once.
- ``faults.poison_sigkill(delay)``: sync; records its start, sleeps ``delay``, then sends
  SIGKILL to its own process.
- ``faults.poison_segfault(delay)``: sync; records its start, sleeps ``delay``, then reads
  address 0 through ``ctypes.string_at(0)``: the interpreter dies of SIGSEGV.
- ``faults.short(n)``: async, about 5 ms of ``asyncio.sleep``.

A connection refused (``too many clients``, say: the server is shared) is retried for up to
about 10 s, so that a busy server does not turn into job failures.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import time

import psycopg

from soniq import JobContext, Soniq

app = Soniq(database_url=os.environ["SONIQ_DATABASE_URL"])

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS fault_runs (
    seq bigserial PRIMARY KEY,
    label text NOT NULL,
    job_id text NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    event text NOT NULL CHECK (event IN ('start', 'end')),
    worker_id text,
    t double precision NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_INSERT = (
    "INSERT INTO fault_runs (label, job_id, attempt, pid, event, worker_id, t) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_TRIES = 200
_RETRY_EVERY = 0.05


def _params(label: str, ctx: JobContext, event: str, at: float) -> tuple[object, ...]:
    return (label, ctx.job_id, ctx.attempt, os.getpid(), event, ctx.worker_id, at)


def _url() -> str:
    return os.environ["SONIQ_DATABASE_URL"]


def _record(label: str, ctx: JobContext, event: str, at: float) -> None:
    params = _params(label, ctx, event, at)
    for attempt in range(_TRIES):
        try:
            with psycopg.connect(_url(), autocommit=True, application_name="fault_runs") as conn:
                conn.execute(_INSERT, params)
            return
        except psycopg.OperationalError:
            if attempt == _TRIES - 1:
                raise
            time.sleep(_RETRY_EVERY)


async def _arecord(label: str, ctx: JobContext, event: str, at: float) -> None:
    params = _params(label, ctx, event, at)
    for attempt in range(_TRIES):
        try:
            conn = await psycopg.AsyncConnection.connect(
                _url(), autocommit=True, application_name="fault_runs"
            )
            async with conn:
                await conn.execute(_INSERT, params)
            return
        except psycopg.OperationalError:
            if attempt == _TRIES - 1:
                raise
            await asyncio.sleep(_RETRY_EVERY)


@app.job(name="faults.innocent")
def innocent(seconds: float, ctx: JobContext) -> None:
    _record("innocent", ctx, "start", time.time())
    time.sleep(seconds)
    _record("innocent", ctx, "end", time.time())


@app.job(name="faults.ainnocent")
async def ainnocent(seconds: float, ctx: JobContext) -> None:
    await _arecord("ainnocent", ctx, "start", time.time())
    await asyncio.sleep(seconds)
    await _arecord("ainnocent", ctx, "end", time.time())


@app.job(name="faults.poison_exit")
def poison_exit(ctx: JobContext) -> None:
    _record("poison_exit", ctx, "start", time.time())
    os._exit(1)


@app.job(name="faults.poison_sigkill")
def poison_sigkill(delay: float, ctx: JobContext) -> None:
    _record("poison_sigkill", ctx, "start", time.time())
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="faults.poison_segfault")
def poison_segfault(delay: float, ctx: JobContext) -> None:
    _record("poison_segfault", ctx, "start", time.time())
    time.sleep(delay)
    ctypes.string_at(0)  # reads address 0: SIGSEGV


@app.job(name="faults.short")
async def short(n: int, ctx: JobContext) -> None:
    await _arecord("short", ctx, "start", time.time())
    await asyncio.sleep(0.005)
    await _arecord("short", ctx, "end", time.time())
